"""`checkpoint scan IMAGE...` and `checkpoint selftest --config FILE [--yes]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SELFTEST_TEXT = "CP1.SELFTEST.fake-camera-shows-this-code-to-check-the-decoder"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="decode the QR codes in image files",
        description="Decode the QR codes in image files: one line per file, the file name and "
        "the texts found, separated by tabs (control characters escaped). A file with no code "
        "gives a line with no texts; an unreadable file is reported on stderr (exit 1).",
        epilog="example: checkpoint scan pass-0042.png photo-of-printed-pass.jpg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--backend", choices=("zxing", "pyzbar"), default="zxing", help="QR decoder (default zxing)")
    p.add_argument("--json", action="store_true", help='one JSON object per line: {"file", "texts"[, "error"]}')
    p.set_defaults(handler=run_scan)

    p = sub.add_parser(
        "selftest",
        help="check the thermometer, camera, decoder and relay",
        description="Read the thermometer, grab and decode one camera frame, and click the gate "
        "relay; print PASS, FAIL or SKIP per part with the reason. On real hardware it asks "
        "before clicking the relay (the gate opens for half a second) unless --yes is given. "
        "Exits 0 when nothing failed.",
        epilog="example: checkpoint selftest --config /etc/checkpoint/gate.toml --yes",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the kiosk config file")
    p.add_argument("--yes", action="store_true", help="click the relay without asking")
    p.set_defaults(handler=run_selftest)


# -- scan ----------------------------------------------------------------------------
def _escape(text: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _scan_image(image):
    """Decode a still image; small renders (1-2 px per module) are enlarged first."""
    import cv2

    height, width = image.shape[:2]
    if min(height, width) < 400:
        factor = -(-400 // min(height, width))
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    # A code cropped to its edge has no quiet zone; a white margin costs nothing.
    pad = max(8, min(image.shape[:2]) // 10)
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def run_scan(args: argparse.Namespace) -> int:
    import cv2

    from drivers.errors import DriverError
    from drivers.qr import check_backend, decode
    from gateway.cli import CliError

    try:
        check_backend(args.backend)
    except DriverError as exc:
        raise CliError(str(exc)) from exc
    failed = False
    for name in args.images:
        image = cv2.imread(name, cv2.IMREAD_COLOR) if Path(name).is_file() else None
        if image is None:
            failed = True
            error = "not an image OpenCV can read" if Path(name).is_file() else "no such file"
            print(f"checkpoint: error: {name}: {error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "texts": [], "error": error}, ensure_ascii=False))
            continue
        texts = decode(_scan_image(image), args.backend)
        if args.json:
            print(json.dumps({"file": name, "texts": texts}, ensure_ascii=False))
        else:
            print("\t".join([name, *(_escape(t) for t in texts)]))
    return 1 if failed else 0


# -- selftest ------------------------------------------------------------------------
def _report(part: str, verdict: str, reason: str) -> str:
    print(f"{verdict:<4}  {part:<11}  {reason}", flush=True)
    return verdict


def _check_thermometer(hw, settings) -> str:
    from drivers.errors import DriverError

    try:
        object_c, ambient_c = hw.thermometer.read()
    except DriverError as exc:
        return _report("thermometer", "FAIL", str(exc))
    note = ""
    t = settings.temperature
    if not t.ambient_min_c <= ambient_c <= t.ambient_max_c:
        note = f" (ambient outside {t.ambient_min_c:g}-{t.ambient_max_c:g} °C: readings are less accurate)"
    return _report("thermometer", "PASS", f"object {object_c:.2f} °C, ambient {ambient_c:.2f} °C{note}")


def _check_camera(hw, settings) -> str:
    from drivers.errors import DriverError
    from drivers.qr import check_backend, decode

    backend = settings.qr.backend
    try:
        check_backend(backend)
    except DriverError as exc:
        return _report("camera", "FAIL", f"QR backend {backend}: {exc}")
    if hw.is_fake:
        hw.camera.show(SELFTEST_TEXT)
    hw.camera.start()
    frame = hw.camera.wait_frame(0, timeout=settings.camera.stale_after_s + 3.0)
    if frame is None:
        return _report("camera", "FAIL", hw.camera.health()[1])
    started = time.perf_counter()
    texts = decode(frame.image, backend)
    took_ms = (time.perf_counter() - started) * 1000
    size = f"frame {frame.image.shape[1]}x{frame.image.shape[0]}, {backend} decode {took_ms:.1f} ms"
    if hw.is_fake and texts != [SELFTEST_TEXT]:
        return _report("camera", "FAIL", f"{size}: the decoder did not read the fake camera's test pass")
    found = f"read {len(texts)} code(s): {', '.join(_escape(t)[:40] for t in texts)}" if texts else "no code in view"
    return _report("camera", "PASS", f"{size}; {found}")


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _check_relay(hw, settings, yes: bool) -> str:
    from drivers.errors import DriverError

    pin = settings.outputs.relay_pin
    if not hw.is_fake and not yes and not _confirm(f"Click the gate relay on GPIO{pin} (the gate opens for 0.5 s)?"):
        return _report("relay", "SKIP", "not confirmed (run with --yes to click it)")
    try:
        hw.outputs.open_for(0.5)
        opened = hw.outputs.is_open
        hw.outputs.signal("admit", seconds=0.5)
        time.sleep(0.8)
        closed_again = not hw.outputs.is_open
    except DriverError as exc:
        return _report("relay", "FAIL", str(exc))
    if not opened or not closed_again:
        return _report("relay", "FAIL", f"GPIO{pin} did not {'open' if not opened else 'close again'}")
    o = settings.outputs
    extras = [name for name, p in (("buzzer", o.buzzer_pin), ("green light", o.green_pin)) if p is not None]
    also = f"; {' and '.join(extras)} signalled" if extras else ""
    return _report("relay", "PASS", f"GPIO{pin} opened for 0.5 s and closed{also}")


def run_selftest(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from drivers.hardware import build_hardware
    from gateway.cli import CliError
    from gateway.config import load_config

    settings = load_config(args.config)
    try:
        hw = build_hardware(settings)
    except DriverError as exc:
        raise CliError(f"hardware: {exc}") from exc
    print(f"selftest of gate {settings.gate.id}, hardware {settings.hardware.kind}", flush=True)
    with hw:
        verdicts = [
            _check_thermometer(hw, settings),
            _check_camera(hw, settings),
            _check_relay(hw, settings, args.yes),
        ]
    return 1 if "FAIL" in verdicts else 0
