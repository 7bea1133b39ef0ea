"""Decision latency: first camera frame showing a valid pass -> gate relay energised.

The whole kiosk runs on fake hardware: a 30 fps FakeCamera rendering 640x480
frames, the real Adafruit MLX90614 driver on the emulated I2C chip, the real
QR decoder, decide(), a durable journal commit (WAL, synchronous=FULL) and
gpiozero's MockFactory relay. The person already stands at the thermometer
(a stable reading is available), as the target in DESIGN.md says.

For each trial: the frame in which the pass first appears is found by
decoding frames in this thread (its capture time is the start), and the relay
pin's rising edge is the end. Target: p95 <= 2 frame intervals; the ratio to
the frame interval is printed.

    .venv/bin/python -m bench.latency [--trials 40] [--fps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from bench.kiosk import bench_settings, signer
from drivers.qr import decode


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def first_frame_with(camera, text: str, after_seq: int, timeout: float = 3.0):
    """The first frame published after `after_seq` whose image holds `text`."""
    deadline = time.monotonic() + timeout
    seq = after_seq
    while time.monotonic() < deadline:
        frame = camera.wait_frame(after_seq=seq, timeout=0.5)
        if frame is None:
            continue
        seq = frame.seq
        if text in decode(frame.image):
            return frame
    raise RuntimeError("the pass never appeared in a frame")


def relay_rise_time(pin, cleared_at: float) -> float | None:
    """Absolute monotonic time of the first rising edge since `clear_states()`."""
    t = cleared_at
    for state in pin.states[1:]:
        t += state.timestamp  # MockPin stores the time since the previous change
        if state.state:
            return t
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()

    from gateway.loop import build_app

    settings = bench_settings(fps=args.fps)
    sign = signer(settings)
    app = build_app(settings)
    pin = app.hardware.outputs.relay.pin
    decided = threading.Event()
    app.checkpoint.listeners.append(lambda event, decision: decided.set())
    thermometer, camera = app.hardware.thermometer, app.hardware.camera
    thermometer.set(36.4, 22.0)  # the person is at the thermometer before showing the pass
    app.start()
    interval = 1.0 / args.fps
    latencies, misses = [], 0
    try:
        camera.wait_frame(0, timeout=5)
        for trial in range(args.trials):
            text = sign(f"r-{trial}")
            camera.show(None)
            time.sleep(app.checkpoint.view_gone_s + 0.3)  # the previous pass has left the view
            decided.clear()
            seq = camera.frames
            before = time.monotonic()
            pin.clear_states()
            cleared_at = (before + time.monotonic()) / 2
            camera.show(text)
            frame = first_frame_with(camera, text, seq)
            if not decided.wait(3.0):
                misses += 1
                continue
            deadline = time.monotonic() + 1.0
            rise = relay_rise_time(pin, cleared_at)
            while rise is None and time.monotonic() < deadline:
                time.sleep(0.005)
                rise = relay_rise_time(pin, cleared_at)
            if rise is None:
                misses += 1
                continue
            latencies.append(rise - frame.mono_s)
    finally:
        app.stop()

    if not latencies:
        print("no trial completed", file=sys.stderr)
        return 1
    ms = [x * 1000 for x in latencies]
    p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
    frame_ms = interval * 1000
    print(f"decision latency, first frame with a valid pass -> relay energised "
          f"({len(ms)} trials, {args.fps:g} fps fake camera, 640x480)")
    print(f"  p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {max(ms):7.1f} ms   mean {statistics.mean(ms):6.1f} ms")
    print(f"  baseline: one frame interval = {frame_ms:.1f} ms")
    print(f"  ratio p95 / frame interval = {p95 / frame_ms:.2f}  (target <= 2.00: "
          f"{'met' if p95 <= 2 * frame_ms else 'NOT met'})")
    if misses:
        print(f"  {misses} trial(s) gave no decision or no relay edge", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
