"""Realistic camera frames of a gate scene, with or without a QR pass in it.

Used by `FakeCamera` (simulation), the decoder tests and `bench/scan.py`. It
is seeded, so a corpus is reproducible. What makes a frame hard, as at a real
gate: the code held at 25-35 % of the frame width (about 3 px per module at
640x480), tilted in 3D, blurred (focus or motion), under uneven and coloured
light, with sensor noise and JPEG artefacts, in front of a cluttered background
(signage, barrier-tape stripes, edges).

    image = render_frame("CP1.abc...", 640, 480, seed=7)            # BGR uint8
    image, params = render_frame_with_params(None, 640, 480, seed=7, hard=True)
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np
import segno


@dataclass(frozen=True)
class RenderParams:
    """The random choices behind one frame (kept for diagnosing misses)."""

    code_fraction: float  # code width incl. quiet zone / frame width
    rotation_deg: float
    jitter: float  # perspective corner jitter, fraction of code size
    bezel: bool
    dark: int
    light: int
    gain_low: float
    gain_high: float
    hotspot: bool
    blur_sigma: float
    motion_px: int  # 0 = focus blur instead
    noise_sigma: float
    jpeg_quality: int

    def as_dict(self) -> dict:
        return asdict(self)


def draw_params(rng: np.random.Generator, hard: bool = True) -> RenderParams:
    """Hard: the full range seen at gates. Not hard: a cooperative person
    holding still (used by the simulator so passes scan reliably)."""
    motion = hard and rng.random() < 0.25
    return RenderParams(
        code_fraction=float(rng.uniform(0.25, 0.35) if hard else rng.uniform(0.30, 0.35)),
        rotation_deg=float(rng.uniform(-15, 15) if hard else rng.uniform(-6, 6)),
        jitter=float(rng.uniform(0, 0.06) if hard else rng.uniform(0, 0.02)),
        bezel=bool(rng.random() < 0.5),
        dark=int(rng.integers(20, 61)),
        light=int(rng.integers(185, 246)),
        gain_low=float(rng.uniform(0.55, 0.8) if hard else rng.uniform(0.8, 0.9)),
        gain_high=float(rng.uniform(0.95, 1.15)),
        hotspot=bool(rng.random() < 0.4),
        blur_sigma=float(rng.uniform(0.4, 1.4) if hard else rng.uniform(0.3, 0.6)),
        motion_px=int(rng.integers(3, 8)) if motion else 0,
        noise_sigma=float(rng.uniform(2, 7) if hard else rng.uniform(1.5, 3)),
        jpeg_quality=int(rng.integers(60, 91) if hard else rng.integers(80, 93)),
    )


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    small = rng.uniform(50, 200, size=(max(2, height // 48), max(2, width // 48), 3))
    img = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 12))):  # doors, posters, boxes
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(width // 20, width // 3))
        y1 = y0 + int(rng.integers(height // 20, height // 3))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), color, -1 if rng.random() < 0.6 else 2)
    for _ in range(int(rng.integers(4, 10))):  # railings, cables, door frames
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(img, p0, p1, tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 5)))
    # barrier tape: diagonal yellow/black stripes, a classic false-edge source
    tw, th = int(rng.integers(width // 6, width // 3)), int(rng.integers(height // 14, height // 8))
    tx, ty = int(rng.integers(0, width - tw)), int(rng.integers(0, height - th))
    yy, xx = np.mgrid[0:th, 0:tw]
    stripes = ((xx + yy) // max(3, th // 3)) % 2 == 0
    patch = img[ty : ty + th, tx : tx + tw]
    patch[stripes] = (20, 200, 230)
    patch[~stripes] = (25, 25, 25)
    for _ in range(int(rng.integers(1, 4))):  # signage text
        org = (int(rng.integers(0, width * 3 // 4)), int(rng.integers(20, height)))
        scale = float(rng.uniform(0.5, 1.5)) * width / 640
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(4, 10))))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.putText(img, word, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, max(1, int(scale * 2)))
    return img


@functools.lru_cache(maxsize=64)
def qr_modules(text: str) -> np.ndarray:
    """The code's module matrix (1 = dark) with its 4-module quiet zone.

    Error level M and never Micro QR, like a printed pass. Cached: the
    simulator shows the same pass for many frames, and segno's mask scoring
    is the slowest step of rendering.
    """
    qr = segno.make(text, error="m", micro=False)
    modules = np.array(list(qr.matrix_iter(scale=1, border=4)), dtype=np.uint8)
    modules.setflags(write=False)
    return modules


def _code_image(text: str, params: RenderParams, px_per_module: int) -> np.ndarray:
    modules = qr_modules(text)
    grey = np.where(modules == 1, params.dark, params.light).astype(np.uint8)
    grey = cv2.resize(grey, None, fx=px_per_module, fy=px_per_module, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _place_code(frame: np.ndarray, code: np.ndarray, params: RenderParams, rng) -> None:
    height, width = frame.shape[:2]
    size = params.code_fraction * width
    cx = rng.uniform(size * 0.75, width - size * 0.75)
    cy = rng.uniform(min(size * 0.75, height / 2), max(height - size * 0.75, height / 2))
    angle = math.radians(params.rotation_deg)
    half = size / 2
    corners = np.array([(-half, -half), (half, -half), (half, half), (-half, half)])
    corners += rng.uniform(-params.jitter, params.jitter, size=(4, 2)) * size
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = (corners @ rot.T + (cx, cy)).astype(np.float32)
    if params.bezel:  # a phone around the code: dark rim, a bit bigger than the code
        rim = (corners * rng.uniform(1.15, 1.35)) @ rot.T + (cx, cy)
        cv2.fillConvexPoly(frame, rim.astype(np.int32), tuple(int(c) for c in rng.integers(10, 45, 3)))
    side = code.shape[0]
    src = np.array([(0, 0), (side, 0), (side, side), (0, side)], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(code, matrix, (width, height), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full(code.shape[:2], 255, np.uint8), matrix, (width, height))
    cv2.copyTo(warped, cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)[1], frame)


def _light_and_camera(frame: np.ndarray, params: RenderParams, rng, noise_rng) -> np.ndarray:
    height, width = frame.shape[:2]
    # Light varies smoothly: compute the gain on a coarse grid and upscale it.
    gh, gw = max(2, height // 8), max(2, width // 8)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    yy, xx = yy * (height / gh), xx * (width / gw)
    ramp = (xx / width - 0.5) * math.cos(theta) + (yy / height - 0.5) * math.sin(theta)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    gain = params.gain_low + (params.gain_high - params.gain_low) * ramp
    if params.hotspot:  # a lamp or the sun reflecting off the phone
        hx, hy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.1, 0.3) * width
        gain += 0.5 * np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * radius**2))
    gain = cv2.resize(gain.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    cast = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    img = cv2.multiply(frame.astype(np.float32), cv2.merge([gain * c for c in cast]))
    if params.motion_px:
        k = np.zeros((params.motion_px, params.motion_px), np.float32)
        k[params.motion_px // 2, :] = 1.0 / params.motion_px
        rot = cv2.getRotationMatrix2D(((params.motion_px - 1) / 2,) * 2, rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, k.shape)
        img = cv2.filter2D(img, -1, k / max(1e-6, float(k.sum())))
    else:
        img = cv2.GaussianBlur(img, (0, 0), params.blur_sigma)
    return add_sensor_noise(img, params, noise_rng)


def add_sensor_noise(img: np.ndarray, params: RenderParams, noise_rng) -> np.ndarray:
    """Gaussian sensor noise and a JPEG round trip (MJPG webcams), as uint8 BGR."""
    # OpenCV's generator is 3x faster than numpy's here; it is per-thread and
    # re-seeded from noise_rng each call, so frames stay reproducible.
    noise = np.empty(img.shape, np.float32)
    cv2.setRNGSeed(int(noise_rng.integers(2**31 - 1)))
    channels = img.shape[2] if img.ndim == 3 else 1
    cv2.randn(noise, (0.0,) * channels, (float(params.noise_sigma),) * channels)
    img = cv2.add(img.astype(np.float32, copy=False), noise)
    img = np.clip(img, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def render_frame_with_params(
    text: str | None,
    width: int = 640,
    height: int = 480,
    *,
    seed: int = 0,
    hard: bool = True,
    scene_seed: int | None = None,
    noise_seed: int | None = None,
    overrides: dict | None = None,
) -> tuple[np.ndarray, RenderParams]:
    """A BGR frame of the gate scene, with `text` as a QR code unless None.

    `scene_seed` (default: `seed`) fixes the background, the light and the
    camera; `seed` places the code; `noise_seed` (default: `seed`) draws the
    sensor noise. Same scene, different noise = what a still camera sees.
    `overrides` replaces drawn RenderParams fields (bench.scan's hard frames:
    heavier blur, smaller codes, steeper tilt, less light).
    """
    scene_rng = np.random.default_rng([seed if scene_seed is None else scene_seed, 0])
    code_rng = np.random.default_rng([seed, 1])
    noise_rng = np.random.default_rng([seed if noise_seed is None else noise_seed, 2])
    params = draw_params(scene_rng, hard)
    frame = _background(scene_rng, width, height)
    if overrides:
        params = replace(params, **overrides)
    if text is not None:
        code_params = draw_params(code_rng, hard)
        params = replace(
            params,
            **{k: getattr(code_params, k) for k in ("code_fraction", "rotation_deg", "jitter", "bezel", "dark", "light", "motion_px")},
        )
        if overrides:
            params = replace(params, **overrides)
        modules = qr_modules(text).shape[0]
        # Render at about twice the final scale, then area-resample in the warp.
        target_ppm = params.code_fraction * width / modules
        code = _code_image(text, params, max(2, math.ceil(target_ppm * 2)))
        _place_code(frame, code, params, code_rng)
    return _light_and_camera(frame, params, scene_rng, noise_rng), params


def render_frame(text: str | None, width: int = 640, height: int = 480, **kwargs) -> np.ndarray:
    """Like render_frame_with_params, without the params."""
    return render_frame_with_params(text, width, height, **kwargs)[0]


def sample_pass_text(seed: int, length: int = 150) -> str:
    """A pass-shaped string ("CP1:" + base64url, like gateway.passes) for tests.

    Unsigned: it has the size and alphabet of a real pass, which is what
    decoding depends on; real passes come from gateway.passes.
    """
    import base64

    rng = np.random.default_rng(seed)
    body = base64.urlsafe_b64encode(rng.bytes(length)).decode().rstrip("=")
    return f"CP1:{body}"[:length]
