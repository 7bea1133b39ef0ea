"""QR decoding: frames in, texts out.

Two backends, chosen by the config's `[qr] backend`:

- "zxing": zxing-cpp restricted to `BarcodeFormat.QRCodeModel2`. Plain
  `QRCode` is a family that includes Micro QR and rMQR and produced phantom
  reads ("508") next to real codes; a pass is always a Model 2 code.
- "pyzbar": zbar on a grey frame, QR symbology only. pyzbar given a BGR array
  silently reads only the blue channel, which fails under coloured light.

`decode()` is pure and never raises on an image: anything that is not a
decodable picture gives []. `Scanner` skips frames that have not changed
since the last decoded one, because most frames at a gate are empty and
identical but for sensor noise.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from drivers.errors import DriverError

log = logging.getLogger(__name__)

BACKENDS = ("zxing", "pyzbar")


def to_grey(image: Any) -> np.ndarray | None:
    """An 8-bit single-channel view of `image`, or None if it is not a picture."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        return None
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        elif channels not in (3, 4):
            return None
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
            return None
        image = np.clip(np.nan_to_num(image.astype(np.float64), nan=0.0), 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(image)
    if image.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    return image


def _zxing(grey: np.ndarray) -> list[str]:
    import zxingcpp

    results = zxingcpp.read_barcodes(
        grey,
        formats=zxingcpp.BarcodeFormat.QRCodeModel2,
        # A QR finder is rotation-invariant; the gate camera never sees
        # inverted codes on printed passes, but phones in dark mode can show one.
        try_rotate=False,
        try_invert=True,
        try_downscale=True,
    )
    return [r.text for r in results if r.valid]


def _pyzbar(grey: np.ndarray) -> list[str]:
    try:
        from pyzbar import pyzbar
    except ImportError as exc:  # libzbar0 missing: a set-up problem, not a bad frame
        raise DriverError(
            "pyzbar needs the zbar library: apt-get install --no-install-recommends libzbar0", exc
        ) from exc
    symbols = pyzbar.decode(grey, symbols=[pyzbar.ZBarSymbol.QRCODE])
    return [s.data.decode("utf-8", errors="replace") for s in symbols]


_DECODERS = {"zxing": _zxing, "pyzbar": _pyzbar}


def check_backend(backend: str) -> None:
    """Raise DriverError now if `backend` is unknown or its library is missing."""
    if backend not in _DECODERS:
        raise DriverError(f"unknown QR backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    _DECODERS[backend](np.full((21, 21), 255, np.uint8))


def decode(image: Any, backend: str = "zxing") -> list[str]:
    """The texts of the QR codes in `image` (BGR, BGRA or grey), each once.

    Never raises on image content. Raises DriverError only for an unknown
    backend or a missing decoder library.
    """
    if backend not in _DECODERS:
        raise DriverError(f"unknown QR backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    grey = to_grey(image)
    if grey is None or min(grey.shape) < 21:  # smaller than the smallest QR code
        return []
    try:
        texts = _DECODERS[backend](grey)
    except DriverError:
        raise
    except Exception:  # a decoder bug must not take the gate down
        log.exception("QR backend %s failed on a %s frame", backend, grey.shape)
        return []
    return list(dict.fromkeys(texts))


class Scanner:
    """Decodes frames, skipping those that did not change since the last decode.

    The comparison is against the last *decoded* frame, on an 80x60
    thumbnail of the green channel with the mean brightness taken out (so
    global flicker is not a change): a frame counts as changed when more than
    `changed_fraction` of the thumbnail moved by more than `pixel_delta` grey
    levels. Sensor noise averages out in the thumbnail; a pass (at 25 % of the
    width it covers about 6 % of the thumbnail) does not. Slow changes
    accumulate against the reference, and every `rescan_every`-th frame is
    decoded anyway, so a code that was missed once gets another try.

    `scan()` returns None for a skipped frame: nothing new since the last
    decode (whose result the caller already has).
    """

    THUMB_SIZE = (80, 60)

    def __init__(
        self,
        backend: str = "zxing",
        *,
        pixel_delta: int = 12,
        changed_fraction: float = 0.004,
        rescan_every: int = 15,
    ):
        check_backend(backend)
        self.backend = backend
        self.pixel_delta = pixel_delta
        self.changed_fraction = changed_fraction
        self.rescan_every = rescan_every
        self._reference: np.ndarray | None = None
        self._reference_mean = 0.0
        self._unchanged = 0
        self.decoded = 0
        self.skipped = 0

    def _thumbnail(self, image: Any) -> np.ndarray | None:
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
            return None
        # Subsample to about 320 px wide before averaging: 10x cheaper than
        # resizing the full frame, and each thumbnail pixel still averages
        # 12-16 samples, which keeps sensor noise well under pixel_delta.
        step = max(1, image.shape[1] // 320)
        if image.ndim == 3 and image.shape[2] >= 3 and image.dtype == np.uint8:
            sampled = np.ascontiguousarray(image[::step, ::step, 1])  # green ~ luminance
        else:
            sampled = to_grey(image[::step, ::step])
            if sampled is None:
                return None
        return cv2.resize(sampled, self.THUMB_SIZE, interpolation=cv2.INTER_AREA)

    def changed(self, thumb: np.ndarray) -> bool:
        if self._reference is None:
            return True
        # Compared after taking out each thumbnail's mean brightness: mains
        # flicker and auto-exposure shift the whole frame by a dozen grey
        # levels, which is not a change in the scene (a pass or a shadow
        # moves part of the frame against the rest, which stays visible).
        shift = int(round(float(thumb.mean()) - self._reference_mean))
        moved = np.abs(thumb.astype(np.int16) - self._reference.astype(np.int16) - shift) > self.pixel_delta
        return np.count_nonzero(moved) > self.changed_fraction * moved.size

    def reset(self) -> None:
        """Forget the reference: the next frame is decoded."""
        self._reference = None

    def scan(self, image: Any) -> list[str] | None:
        """Texts in `image`, or None when it was skipped as unchanged."""
        thumb = self._thumbnail(image)
        if thumb is None:
            return []
        if self._unchanged + 1 < self.rescan_every and not self.changed(thumb):
            self._unchanged += 1
            self.skipped += 1
            return None
        self._reference = thumb
        self._reference_mean = float(thumb.mean())
        self._unchanged = 0
        self.decoded += 1
        return decode(image, self.backend)
