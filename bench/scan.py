"""Benchmark: QR scan cost per 640x480 frame and success on hard frames.

Baseline: naive pyzbar, i.e. `pyzbar.decode(frame)` on the full BGR frame with
every symbology (what a first attempt looks like). Against it: the project
pipeline (drivers.qr.Scanner: unchanged-frame skipping, then a grey, QR-only
decode) on each backend.

- "empty, still camera": the gate scene with nobody there; frames differ by
  sensor noise only (the common case at a gate), so the Scanner skips most.
- "empty, every frame new": worst case, a different scene each frame; nothing
  can be skipped, so this is the plain decode cost.
- "with a code": a pass arrives in the same scene (always decoded).
- success: hard frames (25-35 % width, tilt, blur, noise, JPEG) decoded
  exactly, at 640x480 and 1280x720; false reads on empty frames.

Run: .venv/bin/python bench/scan.py [--scenes 30] [--codes 120] [--json out.json]
Targets (DESIGN.md #1): empty frames >= 10x cheaper than naive; no fewer codes found.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyzbar import pyzbar  # noqa: E402

from drivers.qr import BACKENDS, Scanner, decode  # noqa: E402
from drivers.render import render_frame, sample_pass_text  # noqa: E402

NOISE_FRAMES = 30  # frames per still scene: 1 s at 30 fps
NOISE_VARIANTS = 6  # rendered noise variants, cycled (rendering is slow)


def naive(image) -> list[str]:
    return [s.data.decode("utf-8", "replace") for s in pyzbar.decode(image)]


def timed(fn, image):
    start = time.perf_counter()
    result = fn(image)
    return (time.perf_counter() - start) * 1000, result


def stats(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def bench_costs(scenes: int, codes: int) -> dict:
    """Per-frame cost at 640x480, each decoder interleaved on the same frames."""
    names = ["naive", *(f"pipeline-{b}" for b in BACKENDS)]
    still = {n: [] for n in names}
    changing = {n: [] for n in names}
    with_code = {n: [] for n in names}
    # warm up every decoder (library loading, first-call allocations)
    warm = render_frame(None, 640, 480, seed=1)
    for _ in range(3):
        naive(warm)
        for b in BACKENDS:
            decode(warm, b)
    for s in range(scenes):
        scanners = {b: Scanner(b, rescan_every=15) for b in BACKENDS}
        variants = [render_frame(None, 640, 480, seed=s, scene_seed=10_000 + s, noise_seed=k)
                    for k in range(NOISE_VARIANTS)]
        frames = [variants[k % NOISE_VARIANTS] for k in range(NOISE_FRAMES)]
        for image in frames:
            still["naive"].append(timed(naive, image)[0])
            for b in BACKENDS:
                still[f"pipeline-{b}"].append(timed(scanners[b].scan, image)[0])
        image = frames[0]
        changing["naive"].append(timed(naive, image)[0])
        for b in BACKENDS:
            changing[f"pipeline-{b}"].append(timed(lambda im: decode(im, b), image)[0])
    for i in range(codes):
        text = sample_pass_text(i)
        empty = render_frame(None, 640, 480, seed=i, scene_seed=20_000 + i, noise_seed=0)
        image = render_frame(text, 640, 480, seed=i, scene_seed=20_000 + i, noise_seed=1)
        with_code["naive"].append(timed(naive, image)[0])
        for b in BACKENDS:
            scanner = Scanner(b)
            scanner.scan(empty)  # the gate was empty; then the pass arrives
            with_code[f"pipeline-{b}"].append(timed(scanner.scan, image)[0])
    return {
        "empty_still": {n: stats(v) for n, v in still.items()},
        "empty_changing": {n: stats(v) for n, v in changing.items()},
        "with_code": {n: stats(v) for n, v in with_code.items()},
    }


def bench_success(codes: int, size: tuple[int, int], empties: int) -> dict:
    names = ["naive", *(f"pipeline-{b}" for b in BACKENDS)]
    found = {n: 0 for n in names}
    wrong = {n: 0 for n in names}
    false_reads = {n: 0 for n in names}
    for i in range(codes):
        text = sample_pass_text(10_000 + i)
        image = render_frame(text, *size, seed=10_000 + i)
        results = {"naive": naive(image), **{f"pipeline-{b}": decode(image, b) for b in BACKENDS}}
        for n, texts in results.items():
            found[n] += text in texts
            wrong[n] += any(t != text for t in texts)
    for i in range(empties):
        image = render_frame(None, *size, seed=50_000 + i)
        false_reads["naive"] += bool(naive(image))
        for b in BACKENDS:
            false_reads[f"pipeline-{b}"] += bool(decode(image, b))
    return {
        n: {"found": found[n], "of": codes, "rate": found[n] / codes, "wrong_texts": wrong[n],
            "false_reads_on_empty": false_reads[n], "empty_frames": empties}
        for n in names
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=30, help=f"still empty scenes ({NOISE_FRAMES} frames each)")
    parser.add_argument("--codes", type=int, default=120, help="hard code frames per resolution")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    print(f"QR scan benchmark: {args.scenes}x{NOISE_FRAMES} still empty frames, {args.codes} code frames per size")
    costs = bench_costs(args.scenes, args.codes)
    success = {f"{w}x{h}": bench_success(args.codes if w == 640 else args.codes // 2, (w, h), args.codes // 2)
               for w, h in ((640, 480), (1280, 720))}

    print("\nCost per 640x480 frame (ms: mean / median / p95; ratio = naive mean / this mean)")
    for case, label in (("empty_still", "empty, still camera"), ("empty_changing", "empty, every frame new"),
                        ("with_code", "with a code")):
        base = costs[case]["naive"]["mean_ms"]
        print(f"  {label}")
        for name, s in costs[case].items():
            ratio = base / s["mean_ms"] if s["mean_ms"] else float("inf")
            print(f"    {name:<17} {s['mean_ms']:7.2f} / {s['median_ms']:7.2f} / {s['p95_ms']:7.2f}   {ratio:6.1f}x")

    print("\nSuccess on hard frames (exact text; wrong texts; false reads on empty frames)")
    for size, rows in success.items():
        base = rows["naive"]["found"]
        print(f"  {size}")
        for name, r in rows.items():
            print(f"    {name:<17} {r['found']:4d}/{r['of']:<4d} {100 * r['rate']:5.1f}%   vs naive {r['found'] - base:+d}"
                  f"   wrong {r['wrong_texts']}   false {r['false_reads_on_empty']}/{r['empty_frames']}")

    print("\nTargets")
    ok = True
    for b in BACKENDS:
        name = f"pipeline-{b}"
        ratio = costs["empty_still"]["naive"]["mean_ms"] / costs["empty_still"][name]["mean_ms"]
        more = all(rows[name]["found"] >= rows["naive"]["found"] for rows in success.values())
        verdict = "met" if ratio >= 10 and more else "NOT met"
        ok &= verdict == "met"
        print(f"  {name}: empty frames {ratio:.1f}x cheaper than naive (goal >= 10x); "
              f"codes found >= naive at every size: {more} -> {verdict}")
    best = max(BACKENDS, key=lambda b: (sum(rows[f"pipeline-{b}"]["found"] for rows in success.values()),
                                        -costs["with_code"][f"pipeline-{b}"]["mean_ms"]))
    print(f"  best backend here (most codes, then cheapest): {best}")
    if args.json:
        args.json.write_text(json.dumps({"costs": costs, "success": success, "best": best}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
