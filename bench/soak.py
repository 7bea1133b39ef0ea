"""Kiosk memory and CPU over time: RSS slope at 30 fps with people arriving.

Runs the whole kiosk on fake hardware (30 fps FakeCamera, emulated MLX90614,
MockFactory relay) with a looping scenario of residents, a fever, bad passes
and people without a pass, the guard screen served and polled for state and
camera frames by a separate process, like an open browser. Samples RSS and CPU every few seconds and
prints the RSS slope (least squares, after a warm-up) in MB per 10 minutes.
The slope is signed: a process that shrinks after warm-up shows a negative
slope, not a large ratio. Targets: RSS slope below 1 MB / 10 min (ratio =
slope / 1 MB per 10 min; a short run fails only when the slope less two
standard errors is above it), and the loop keeps up with the camera: its
mean scan time per frame (decoded or skipped as unchanged) at most half the
frame interval at the configured rate. Frames delivered and scanned are
printed too (a starved fake camera delivers fewer, which says nothing about
the loop).

    .venv/bin/python -m bench.soak [--minutes 10] [--fps 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

from bench.common import Row, finish, slowed
from bench.kiosk import bench_settings

TARGET_MB_PER_10MIN = 1.0
KEEP_UP_SHARE = 0.5  # of the frame interval

SCENARIO = [
    {"at": 0, "qr": {"pass": {"person": "r-1"}}, "object_c": 36.3},
    {"at": 2, "qr": {"pass": {"person": "r-2"}}, "object_c": 36.6},
    {"at": 4, "qr": {"pass": {"person": "r-3"}}, "object_c": 37.2},
    {"at": 6, "qr": {"pass": {"person": "r-4", "issuer": "forged"}}, "object_c": 36.1},
    {"at": 8, "qr": "not a pass at all", "object_c": 36.2},
    {"at": 10, "qr": {"pass": {"person": "r-1"}}, "object_c": 36.3},
    {"at": 12, "qr": {"pass": {"person": "c-1", "kind": "courier"}}, "object_c": 36.0},
]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20  # MiB, like ru_maxrss / 1024


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    return fit(points)[0]


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of y over x and its standard error."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if not sxx:
        return 0.0, 0.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    if n < 3:
        return b, 0.0
    residual = sum((y - my - b * (x - mx)) ** 2 for x, y in points)
    return b, (residual / (n - 2) / sxx) ** 0.5


POLLER = """
import sys, time, httpx
with httpx.Client(base_url=sys.argv[1], timeout=5) as client:
    while True:
        for path in ("/api/state", "/camera.jpg"):
            try:
                client.get(path)
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
"""


def poll_screen(url: str):
    """An open guard screen, as a separate process like the browser: state and a camera frame twice a second."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", POLLER, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-min", type=float, help="minutes left out of the slope (default: 20 %%, at most 1)")
    parser.add_argument("--no-screen", action="store_true", help="do not serve and poll the guard screen")
    args = parser.parse_args(argv)

    from gateway.loop import build_app
    from gateway.scenario import ScenarioPlayer, parse_scenario, pass_texts

    settings = bench_settings(fps=args.fps)
    scenario = parse_scenario(SCENARIO, "soak")
    texts = pass_texts(scenario, settings)
    app = build_app(settings)
    # The bench's test hook (off by default): slows every frame the loop scans.
    scanner = app.checkpoint.scanner
    scan_time = [0.0, 0]  # seconds, calls: running totals, so the bench itself does not grow
    scan = slowed(scanner.scan)

    def timed_scan(image):
        start = time.perf_counter()
        try:
            return scan(image)
        finally:
            scan_time[0] += time.perf_counter() - start
            scan_time[1] += 1

    scanner.scan = timed_scan
    player = ScenarioPlayer(app, scenario, repeat=True, texts=texts)
    app.start()
    stop = threading.Event()
    threading.Thread(target=player.run, args=(stop,), daemon=True).start()
    poller = None
    if not args.no_screen:
        port = 18000 + os.getpid() % 1000
        threading.Thread(target=app.serve, args=("127.0.0.1", port), kwargs={"until": stop}, daemon=True).start()
        poller = poll_screen(f"http://127.0.0.1:{port}")

    duration = args.minutes * 60
    start = time.monotonic()
    cpu_start = time.process_time()
    samples: list[tuple[float, float]] = []
    try:
        while (elapsed := time.monotonic() - start) < duration:
            samples.append((elapsed / 60, rss_mb()))
            time.sleep(min(args.sample_s, max(0.0, duration - elapsed)))
        samples.append(((time.monotonic() - start) / 60, rss_mb()))
    finally:
        cpu = time.process_time() - cpu_start
        wall = time.monotonic() - start
        frames, decisions = app.hardware.camera.frames, app.checkpoint.decisions
        decoded, skipped = scanner.decoded, scanner.skipped
        scanned = decoded + skipped
        if poller is not None:
            poller.terminate()
            poller.wait(5)
        stop.set()
        time.sleep(0.5)
        app.stop()

    warmup = args.warmup_min if args.warmup_min is not None else min(1.0, args.minutes * 0.2)
    warm = [p for p in samples if p[0] >= warmup]
    if len(warm) < 3:
        warm = samples
    b, se = fit(warm)
    mb_per_10min, margin = b * 10, 2 * se * 10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    screen = "no guard screen" if args.no_screen else "guard screen polled twice a second"
    print(f"soak: {wall / 60:.1f} min at {args.fps:g} fps, {frames} frames, {decisions} decisions, {screen}")
    print(f"  RSS start {samples[0][1]:.1f} MB, after warm-up {warm[0][1]:.1f} MB, end {samples[-1][1]:.1f} MB, "
          f"peak {peak:.1f} MB")
    print(f"  RSS slope after warm-up: {mb_per_10min:+.3f} +/- {margin:.3f} (2 standard errors) MB / 10 min  "
          f"(ratio to the 1 MB / 10 min target: {mb_per_10min / TARGET_MB_PER_10MIN:+.2f})")
    mean_scan_ms = 1000 * scan_time[0] / max(1, scan_time[1])
    print(f"  loop scan time per frame: mean {mean_scan_ms:.2f} ms over {scan_time[1]} frames "
          f"(frame interval {1000 / args.fps:.1f} ms)")
    print(f"  frames: {frames} delivered by the camera, {scanned} scanned by the loop "
          f"({decoded} decoded, {skipped} skipped as unchanged)")
    print(f"  CPU: {100 * cpu / wall:.0f} % of one core on average (all threads)")
    return finish([
        # A short run cannot pin the slope down (RSS moves in steps of whole
        # frames): it fails only when the growth is clearly above the target.
        Row("soak", f"RSS slope over {wall / 60:.1f} min", mb_per_10min, "MB/10 min", "(none: the target)", None,
            f"< {TARGET_MB_PER_10MIN:g} MB/10 min (less 2 s.e.)", mb_per_10min - margin < TARGET_MB_PER_10MIN,
            note=f"+/- {margin:.2f}"),
        Row("soak", f"loop scan time per frame at {args.fps:g} fps", mean_scan_ms, "ms", "frame interval",
            1000 / args.fps, f"<= {KEEP_UP_SHARE}x anchor", mean_scan_ms <= KEEP_UP_SHARE * 1000 / args.fps),
    ])


if __name__ == "__main__":
    sys.exit(main())
