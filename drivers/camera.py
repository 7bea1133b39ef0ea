"""Cameras: a capture thread that keeps only the newest frame, with a watchdog.

`Camera` runs one `FrameSource` on a thread:

- only the newest frame is kept; frames nobody took are counted in `dropped`
  (a slow decoder sees fresh frames, never a queue of old ones);
- a stale-frame watchdog: no *new* frame for `stale_after_s` (read failures,
  or OpenCV returning the very same frame after the camera was unplugged)
  makes the camera unavailable. It is logged once, `latest()` returns None so
  a stale frame is never decoded, and the source is reopened with backoff. The
  recovery is logged once too.

Sources: `OpenCVSource` (USB/UVC device index, file, or stream URL),
`Picamera2Source` (Pi camera modules, where picamera2 is installed) and the
fake twin's `FakeSource` (renders a scene with a given pass, or replays files).

    camera = FakeCamera(640, 480, fps=30)
    camera.start(); camera.show("CP1...."); frame = camera.latest()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from drivers.errors import CameraUnavailable, DriverError
from drivers.render import render_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One captured frame. `image` is BGR uint8; treat it as read-only."""

    seq: int
    mono_s: float
    image: np.ndarray


class FrameSource(Protocol):
    name: str

    def open(self) -> None:
        """Open the device; raise (CameraUnavailable, OSError, ...) if it cannot be."""

    def read(self) -> np.ndarray | None:
        """Block until the next frame; None when the read failed."""

    def close(self) -> None: ...


class Camera:
    """A capture thread over one `FrameSource`: newest frame only, watchdog, reopen."""

    def __init__(
        self,
        source: FrameSource,
        *,
        stale_after_s: float = 2.0,
        reopen_backoff_s: tuple[float, float] = (0.25, 8.0),
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.stale_after_s = stale_after_s
        self.backoff_min_s, self.backoff_max_s = reopen_backoff_s
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: Frame | None = None
        self._taken = True
        self._seq = 0
        self.dropped = 0
        self.reopens = 0
        self.error: CameraUnavailable | None = CameraUnavailable(f"{source.name}: not started")
        self._in_outage = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source.name} seq={self._seq} dropped={self.dropped}>"

    # -- life cycle -------------------------------------------------------------
    def start(self) -> "Camera":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"camera:{self.source.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        try:
            self.source.close()
        except Exception:  # closing a dead device must not hide the real problem
            log.debug("closing %s failed", self.source.name, exc_info=True)

    def __enter__(self) -> "Camera":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- consumers ----------------------------------------------------------------
    def latest(self) -> Frame | None:
        """The newest frame, or None while the camera is unavailable or before the first frame."""
        with self._cond:
            if self.error is not None:
                return None
            self._taken = True
            return self._latest

    def wait_frame(self, after_seq: int = 0, timeout: float = 2.0) -> Frame | None:
        """Block until a frame newer than `after_seq` exists (or timeout); None if none came."""
        deadline = self._clock() + timeout
        with self._cond:
            while self.error is not None or self._latest is None or self._latest.seq <= after_seq:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.05))
            self._taken = True
            return self._latest

    def health(self) -> tuple[bool, str]:
        """(ok, reason) for the guard screen and selftest."""
        error = self.error
        return (True, "ok") if error is None else (False, str(error))

    def check(self) -> None:
        """Raise CameraUnavailable (with its cause) if the camera is not delivering frames."""
        if self.error is not None:
            raise self.error

    @property
    def frames(self) -> int:
        return self._seq

    # -- the capture thread -------------------------------------------------------
    def _set_error(self, message: str, cause: BaseException | None = None) -> None:
        with self._cond:
            if not self._in_outage:  # logged once per outage, not per retry
                log.warning("camera unavailable: %s: %s%s", self.source.name, message, f" ({cause})" if cause else "")
                self._in_outage = True
            self.error = CameraUnavailable(f"{self.source.name}: {message}", cause)
            self._cond.notify_all()

    def _publish(self, image: np.ndarray, now: float) -> None:
        with self._cond:
            if not self._taken:
                self.dropped += 1
            self._seq += 1
            self._latest = Frame(self._seq, now, image)
            self._taken = False
            if self.error is not None:
                if self._in_outage:
                    log.warning("camera recovered: %s", self.source.name)
                    self._in_outage = False
                self.error = None
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = self.backoff_min_s
        while not self._stop.is_set():
            try:
                self.source.open()
            except Exception as exc:  # noqa: BLE001 - any open failure is "camera unavailable"
                self._set_error(f"cannot open ({type(exc).__name__})", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            reason, cause, delivered = self._capture_until_stale()
            try:
                self.source.close()
            except Exception:  # noqa: BLE001
                log.debug("closing %s failed", self.source.name, exc_info=True)
            if self._stop.is_set():
                break
            if delivered:
                backoff = self.backoff_min_s
            self.reopens += 1
            self._set_error(reason, cause)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    def _capture_until_stale(self) -> tuple[str, BaseException | None, bool]:
        last_new = self._clock()
        previous: np.ndarray | None = None
        cause: BaseException | None = None
        delivered = False
        while not self._stop.is_set():
            try:
                image = self.source.read()
            except Exception as exc:  # noqa: BLE001 - a driver error is a failed read
                image, cause = None, exc
            now = self._clock()
            fresh = image is not None and not (
                previous is not None and previous.shape == image.shape and np.array_equal(previous, image)
            )
            if fresh:
                previous, last_new, delivered = image, now, True
                self._publish(image, now)
                continue
            if now - last_new > self.stale_after_s:
                if image is None:
                    return f"no frames for {self.stale_after_s:g} s (unplugged?)", cause, delivered
                return f"the same frame for {self.stale_after_s:g} s (unplugged?)", cause, delivered
            if image is None:
                self._stop.wait(0.01)  # a failing read returns at once: do not spin
        return "stopped", None, delivered


class OpenCVSource:
    """cv2.VideoCapture over a device index ("0"), a file path or a stream URL.

    Files loop at their own frame rate, so a recorded clip stands in for a
    camera. Devices get the requested size and rate and a 1-frame buffer.
    """

    def __init__(self, source: str | int, width: int = 1280, height: int = 720, fps: float = 30.0):
        self.spec = str(source)
        self.width, self.height, self.fps = width, height, fps
        self.is_device = self.spec.isdigit()
        self.is_file = not self.is_device and "://" not in self.spec
        self.name = f"camera {self.spec}" if self.is_device else os.path.basename(self.spec) or self.spec
        self._cap: cv2.VideoCapture | None = None
        self._period = 0.0
        self._next_at = 0.0

    def open(self) -> None:
        if self.is_file and not Path(self.spec).exists():
            raise CameraUnavailable(f"no such video file: {self.spec}")
        cap = cv2.VideoCapture(int(self.spec) if self.is_device else self.spec)
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"OpenCV cannot open {self.spec}")
        if self.is_device:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        file_fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self._period = 1.0 / (file_fps if 0 < file_fps <= 240 else self.fps) if self.is_file else 0.0
        self._next_at = time.monotonic()
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        if self._period:  # pace a file like a live camera
            delay = self._next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_at = max(self._next_at + self._period, time.monotonic() - self._period)
        ok, image = self._cap.read()
        if not ok and self.is_file:  # end of the clip: loop
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        return image if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Picamera2Source:
    """A Pi camera module through picamera2 (libcamera); pip OpenCV cannot reach it."""

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0):
        self.width, self.height, self.fps = width, height, fps
        self.name = "picamera2"
        self._cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise DriverError(
                "camera.source = 'picamera2' but picamera2 is not importable: install "
                "python3-picamera2 (apt) and create the venv with --system-site-packages",
                exc,
            ) from exc
        cam = Picamera2()
        # "RGB888" is libcamera's name for 24-bit pixels stored B, G, R: OpenCV order.
        config = cam.create_video_configuration(
            main={"size": (self.width, self.height), "format": "RGB888"},
            controls={"FrameRate": self.fps},
            buffer_count=2,
        )
        cam.configure(config)
        cam.start()
        self._cam = cam

    def read(self) -> np.ndarray | None:
        return None if self._cam is None else self._cam.capture_array("main")

    def close(self) -> None:
        if self._cam is not None:
            cam, self._cam = self._cam, None
            cam.stop()
            cam.close()


def open_camera(settings_camera) -> Camera:
    """A real camera from `[camera]` settings (source, size, fps, stale_after_s)."""
    c = settings_camera
    if c.source == "picamera2":
        source: FrameSource = Picamera2Source(c.width, c.height, c.fps)
    else:
        source = OpenCVSource(c.source, c.width, c.height, c.fps)
    return Camera(source, stale_after_s=c.stale_after_s)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class FakeSource:
    """The fake camera device: a rendered gate scene, or replayed files.

    A still scene is rendered in a few noise variants and cycled, so frames
    differ by sensor noise only, like a real still camera. `unplug()` makes
    reads fail; `freeze()` reproduces OpenCV after an unplug (the same last
    frame forever, and the device cannot be reopened); `replug()` heals both.
    """

    VARIANTS = 4

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, seed: int = 0, hard: bool = False):
        self.width, self.height, self.fps, self.seed, self.hard = width, height, fps, seed, hard
        self.name = "fake camera"
        self._lock = threading.Lock()
        self._text: str | None = None
        self._arrival = 0
        self._cache: dict[int, np.ndarray] = {}
        self._files: list[Path] = []
        self._video: cv2.VideoCapture | None = None
        self._file_index = 0
        self._file_frames = 0
        self._still: np.ndarray | None = None
        self._image_frames = max(1, round(fps))  # a still image is shown for 1 s
        self._unplugged = False
        self._frozen = False
        self._last: np.ndarray | None = None
        self._count = 0
        self._next_at = 0.0
        self.opened = False

    # -- scripting -----------------------------------------------------------------
    def show(self, text: str | Sequence[str] | None) -> None:
        """Show a pass (or several side by side: a crowd at the gate), or nobody."""
        with self._lock:
            self._files = []
            self._text = text if text is None or isinstance(text, str) else tuple(text)
            self._arrival += 1
            self._cache = {}

    def replay(self, paths: Sequence[str | Path]) -> None:
        paths = [Path(p) for p in paths]
        for path in paths:
            if not path.is_file():
                raise CameraUnavailable(f"cannot replay {path}: no such file")
        with self._lock:
            self._files, self._file_index, self._file_frames = paths, 0, 0
            self._cache = {}
            self._release_video()

    def unplug(self) -> None:
        with self._lock:
            self._unplugged = True

    def freeze(self) -> None:
        with self._lock:
            self._frozen = True

    def replug(self) -> None:
        with self._lock:
            self._unplugged = self._frozen = False

    # -- FrameSource ---------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            if self._unplugged or self._frozen:
                raise CameraUnavailable("fake camera: no device (unplugged)")
            self.opened = True
            self._next_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self.opened = False
            self._release_video()

    def read(self) -> np.ndarray | None:
        delay = self._next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_at = max(self._next_at + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
        with self._lock:
            if self._frozen and self._last is not None:
                return self._last  # exactly what OpenCV hands back after an unplug
            if self._unplugged or not self.opened:
                return None
            image = self._next_file_frame() if self._files else self._scene_frame()
            self._count += 1
            self._last = image
            return image

    def _scene_frame(self) -> np.ndarray:
        k = self._count % self.VARIANTS
        if k not in self._cache:
            texts = self._text if isinstance(self._text, tuple) else (self._text,)
            width = self.width // len(texts)
            image = np.hstack([
                render_frame(
                    text, width, self.height, seed=self.seed * 1000 + self._arrival + 7919 * i,
                    scene_seed=self.seed, noise_seed=k, hard=self.hard,
                ) for i, text in enumerate(texts)
            ]) if len(texts) > 1 else render_frame(
                self._text, self.width, self.height,
                seed=self.seed * 1000 + self._arrival, scene_seed=self.seed, noise_seed=k, hard=self.hard,
            )
            image.setflags(write=False)
            self._cache[k] = image
        return self._cache[k]

    def _noisy(self, image: np.ndarray, k: int) -> np.ndarray:
        """A still image with a little noise, so a replayed photo is not a stale frame."""
        if k not in self._cache:
            rng = np.random.default_rng(k)
            noisy = np.clip(image.astype(np.int16) + rng.integers(-2, 3, image.shape), 0, 255).astype(np.uint8)
            noisy.setflags(write=False)
            self._cache[k] = noisy
        return self._cache[k]

    def _next_file_frame(self) -> np.ndarray | None:
        for _ in range(len(self._files) + 1):  # skip files with no frames, but never loop forever
            path = self._files[self._file_index]
            if path.suffix.lower() in IMAGE_SUFFIXES:
                if self._file_frames == 0:
                    self._still = cv2.imread(str(path), cv2.IMREAD_COLOR)
                    self._cache = {}
                if self._still is None:
                    self._advance_file()
                    continue
                image = self._noisy(self._still, self._file_frames % self.VARIANTS)
                self._file_frames += 1
                if self._file_frames >= self._image_frames:
                    self._advance_file()
                return image
            if self._video is None:
                self._video = cv2.VideoCapture(str(path))
            ok, image = self._video.read()
            if ok:
                return image
            self._advance_file()
        return None

    def _advance_file(self) -> None:
        self._release_video()
        self._file_index = (self._file_index + 1) % len(self._files)
        self._file_frames = 0
        self._cache = {}

    def _release_video(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None


class FakeCamera(Camera):
    """The fake twin: a `Camera` (same thread, same watchdog) over a `FakeSource`.

    `show(text)` puts a pass in front of it from now on (None = empty scene);
    `replay(paths)` plays image files (1 s each) and videos in a loop;
    `unplug()` / `freeze()` / `replug()` exercise the watchdog.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        seed: int = 0,
        *,
        hard: bool = False,
        stale_after_s: float = 2.0,
        reopen_backoff_s: tuple[float, float] = (0.25, 8.0),
    ):
        self.fake = FakeSource(width, height, fps, seed, hard)
        super().__init__(self.fake, stale_after_s=stale_after_s, reopen_backoff_s=reopen_backoff_s)

    def show(self, text: str | Sequence[str] | None) -> None:
        self.fake.show(text)

    def replay(self, paths: Sequence[str | Path]) -> None:
        self.fake.replay(paths)

    def unplug(self) -> None:
        self.fake.unplug()

    def freeze(self) -> None:
        self.fake.freeze()

    def replug(self) -> None:
        self.fake.replug()
