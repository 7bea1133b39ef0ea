"""Decision latency on the whole kiosk: a person arriving -> gate relay energised.

The whole kiosk runs on fake hardware: a FakeCamera rendering frames at the
resolution given (640x480 by default), the real Adafruit MLX90614 driver on
the emulated I2C chip sampled at the configured rate, the real QR decoder,
decide(), a durable journal commit (WAL, synchronous=FULL) and gpiozero's
MockFactory relay. Two cases, each timed to the relay pin's rising edge:

- whole arrival: nobody there (the thermometer reads the room), then at one
  moment a person steps up showing a pass; the kiosk must see the pass, wait
  for a steady reading (the configured window of samples), decide and open.
  Anchor, measured in the same trial: the moment the thermometer's samples
  first form a steady window (the physical floor: no kiosk can decide sooner).
  Target: p95 of (relay - arrival) <= p95 of (steady - arrival) + 2 frame
  intervals.
- best case: the person already stands at the thermometer (a steady reading
  is available); from the first frame showing the pass. Anchor: the camera's
  frame interval measured in the run. Target (DESIGN.md #2): p95 <= 2 frame
  intervals (the measured or the nominal 1/fps, whichever is shorter).

    .venv/bin/python -m bench.latency [--trials 12] [--fps 30] [--width 640 --height 480]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from bench.common import Row, finish, slowed
from bench.kiosk import bench_settings, signer
from drivers.qr import decode
from gateway.thermometry import stable_reading

ROOM_C = 22.0
FOREHEAD_C = 36.4


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


def wait_rise(pin, cleared_at: float, timeout: float = 1.0) -> float | None:
    deadline = time.monotonic() + timeout
    rise = relay_rise_time(pin, cleared_at)
    while rise is None and time.monotonic() < deadline:
        time.sleep(0.005)
        rise = relay_rise_time(pin, cleared_at)
    return rise


def steady_at(sampler, since: float, settings) -> float | None:
    """When the samples taken after `since` first formed a steady window."""
    samples = [s for s in sampler.samples(since) if s.mono_s >= since]
    for end in range(settings.min_samples, len(samples) + 1):
        reading = stable_reading(samples[:end], settings)
        if reading is not None and reading.ok:
            return samples[end - 1].mono_s
    return None


def frame_interval(camera, frames: int = 20) -> float:
    """The camera's real frame interval (s), measured now."""
    first = camera.wait_frame(camera.frames, timeout=2)
    last = first
    for _ in range(frames):
        last = camera.wait_frame(last.seq, timeout=2) or last
    return (last.mono_s - first.mono_s) / max(1, last.seq - first.seq)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12, help="trials of each case")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args(argv)

    from gateway.loop import build_app

    settings = bench_settings(width=args.width, height=args.height, fps=args.fps)
    sign = signer(settings)
    app = build_app(settings)
    pin = app.hardware.outputs.relay.pin
    decided = threading.Event()
    app.checkpoint.listeners.append(lambda event, decision: decided.set())
    # The bench's test hook (off by default): slows the step from decision to relay.
    app.checkpoint._actuate = slowed(app.checkpoint._actuate)
    thermometer, camera, sampler = app.hardware.thermometer, app.hardware.camera, app.sampler
    leave_s = max(app.checkpoint.view_gone_s, app.checkpoint.presence_gone_s) + 0.4
    arrival, floor, best, misses = [], [], [], 0
    app.start()
    try:
        first = camera.wait_frame(0, timeout=5)
        height, width = first.image.shape[:2]
        interval = frame_interval(camera)
        for trial in range(args.trials):
            # Whole arrival: the scene and the thermometer are empty, then a person steps up.
            thermometer.set(ROOM_C, ROOM_C)
            camera.show(None)
            time.sleep(leave_s)
            text = sign(f"a-{trial}")
            decided.clear()
            pin.clear_states()
            cleared_at = time.monotonic()
            arrived = time.monotonic()
            thermometer.set(FOREHEAD_C, ROOM_C)
            camera.show(text)
            rise = wait_rise(pin, cleared_at, timeout=5.0) if decided.wait(5.0) else None
            steady = steady_at(sampler, arrived, settings.temperature)
            if rise is None or steady is None:
                misses += 1
            else:
                arrival.append(rise - arrived)
                floor.append(steady - arrived)

            # Best case: the person is already at the thermometer when the pass appears.
            camera.show(None)
            time.sleep(leave_s)
            thermometer.set(FOREHEAD_C, ROOM_C)
            time.sleep(0.3)
            text = sign(f"b-{trial}")
            decided.clear()
            seq = camera.frames
            pin.clear_states()
            cleared_at = time.monotonic()
            camera.show(text)
            frame = first_frame_with(camera, text, seq)
            rise = wait_rise(pin, cleared_at) if decided.wait(3.0) else None
            if rise is None:
                misses += 1
            else:
                best.append(rise - frame.mono_s)
    finally:
        app.stop()

    if not arrival or not best:
        print("no trial completed", file=sys.stderr)
        return 1
    frame_ms = interval * 1000
    where = f"{args.fps:g} fps fake camera, {width}x{height} frames, thermometer at {settings.temperature.sample_hz:g} Hz"
    print(f"decision latency ({where}; {args.trials} trials per case, {misses} missed)")
    rows = []
    a_ms, f_ms, b_ms = ([x * 1000 for x in xs] for xs in (arrival, floor, best))
    print(f"  whole arrival, person steps up showing a pass -> relay: p50 {percentile(a_ms, 0.5):7.1f} ms   "
          f"p95 {percentile(a_ms, 0.95):7.1f} ms   max {max(a_ms):7.1f} ms")
    print(f"    anchor: steady thermometer window after arrival:   p50 {percentile(f_ms, 0.5):7.1f} ms   "
          f"p95 {percentile(f_ms, 0.95):7.1f} ms")
    print(f"  best case, first frame with the pass -> relay:       p50 {percentile(b_ms, 0.5):7.1f} ms   "
          f"p95 {percentile(b_ms, 0.95):7.1f} ms   max {max(b_ms):7.1f} ms   mean {statistics.mean(b_ms):6.1f} ms")
    print(f"    anchor: measured frame interval {frame_ms:.1f} ms")
    # A fake camera that cannot keep up (a loaded machine, 1280x720) must not
    # loosen the target: it never allows more than the nominal frame interval.
    target_ms = min(frame_ms, 1000 / args.fps)
    allowed = percentile(f_ms, 0.95) + 2 * target_ms
    rows.append(Row("latency", f"whole arrival p95 ({width}x{height})", percentile(a_ms, 0.95), "ms",
                    "steady reading p95", percentile(f_ms, 0.95), f"<= anchor + 2 frames ({allowed:.0f} ms)",
                    percentile(a_ms, 0.95) <= allowed))
    rows.append(Row("latency", f"best case p95 ({width}x{height})", percentile(b_ms, 0.95), "ms",
                    "frame interval", frame_ms, f"<= 2 frames ({2 * target_ms:.0f} ms)",
                    percentile(b_ms, 0.95) <= 2 * target_ms))
    if misses:
        rows.append(Row("latency", "trials without a decision or relay edge", misses, "trials", "", None, "0", False))
    return finish(rows)


if __name__ == "__main__":
    sys.exit(main())
