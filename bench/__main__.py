"""Run every bench and print one Markdown table of verdicts, with the machine it ran on.

    .venv/bin/python -m bench                   # quick sizes: a few minutes
    .venv/bin/python -m bench --full            # DESIGN.md sizes (10 min soak, 100,000-event drain, ...)
    .venv/bin/python -m bench --only scan,sync  # some of them
    .venv/bin/python -m bench --tiny            # smoke sizes: checks the benches run, figures mean little

Each bench runs in its own process (the soak measures its own memory) and
prints its full report; the table collects their verdict rows. The exit
code is non-zero when any bench missed a target or failed to run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import ROWS_ENV, SLOWDOWN_ENV, fmt, machine

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("journal", "passes", "scan", "latency", "soak", "sync", "registry", "fleet")
SIZES = {
    "tiny": {
        "journal": ["--events", "60", "--rounds", "2"],
        "passes": ["--seconds", "0.1"],
        "scan": ["--scenes", "1", "--codes", "1", "--sizes", "640x480"],
        "latency": ["--trials", "1"],
        "soak": ["--minutes", "0.1", "--sample-s", "1", "--no-screen"],
        "sync": ["--events", "1000", "--gates", "0", "--engines", "sqlite"],
        "registry": ["--rows", "300", "--cli-sample", "2", "--sheet", "20"],
        "fleet": ["--gates", "200", "--seconds", "1", "--step-seconds", "0.5", "--processes", "1,2"],
    },
    "quick": {  # each bench's own defaults, except the soak
        "journal": [],
        "passes": ["--seconds", "1"],
        "scan": [],
        "latency": [],
        "soak": ["--minutes", "3", "--warmup-min", "1.5", "--sample-s", "2"],
        "sync": [],
        "registry": [],
        "fleet": [],  # 2,000 gates, 3 s runs, 1.5 s capacity steps, 1/2/4 processes: about 90 s
    },
    "full": {
        "journal": ["--events", "6000"],
        "passes": ["--seconds", "2"],
        "scan": ["--scenes", "30", "--codes", "40"],
        "latency": ["--trials", "40"],
        "soak": ["--minutes", "10"],
        "sync": ["--events", "100000", "--gates", "200"],
        "registry": ["--cli-sample", "10"],
        "fleet": ["--full"],
    },
}


def run_bench(name: str, extra: list[str], rows_file: Path, quiet: bool) -> tuple[int, float]:
    start = time.perf_counter()
    env = {**os.environ, ROWS_ENV: str(rows_file), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
                          text=True)
    if quiet and proc.returncode not in (0, 1):
        print(proc.stdout, file=sys.stderr)
    return proc.returncode, time.perf_counter() - start


def table(rows: list[dict], failed: list[str]) -> str:
    lines = ["| bench | figure | value | anchor (same run) | ratio | target | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        anchor = f"{r['anchor_name']}: {fmt(r['anchor'])}" if r["anchor"] is not None else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        value = f"{fmt(r['value'])} {r['unit']}"
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"| {r['bench']} | {r['figure']}{note} | {value} | {anchor} | {ratio} | {r['target']} | "
                     f"{'ok' if r['ok'] else '**MISS**'} |")
    for name in failed:
        lines.append(f"| {name} | (did not run to the end) | - | - | - | - | **FAILED** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the DESIGN.md sizes (about half an hour)")
    size.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds each)")
    parser.add_argument("--only", help="comma-separated benches (default: all): " + ",".join(ORDER))
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(unknown)}")
    sizes = SIZES["full" if args.full else "tiny" if args.tiny else "quick"]

    before = machine()
    started = datetime.now(timezone.utc)
    rows: list[dict] = []
    failed, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows_file = Path(tmp) / f"{name}.jsonl"
            if not args.quiet:
                print(f"\n##### bench.{name} {' '.join(sizes[name])}", flush=True)
            code, seconds[name] = run_bench(name, sizes[name], rows_file, args.quiet)
            got = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
            rows += got
            if code not in (0, 1) or not got or (code == 1 and all(r["ok"] for r in got)):
                failed.append(name)
    after = machine()
    size_name = "full" if args.full else "tiny" if args.tiny else "quick"
    print(f"\n### Benchmarks ({size_name} sizes, `python -m bench{' --full' if args.full else ''}`), "
          f"{started:%Y-%m-%d %H:%M} UTC\n")
    print(f"Machine: {before['cpu']}, {before['cores']} cores, {before['memory_gb']} GB, {before['system']}, "
          f"Python {before['python']}; load average {before['load_1min']} at the start, "
          f"{after['load_1min']} at the end.")
    if os.environ.get(SLOWDOWN_ENV):
        print(f"\n{SLOWDOWN_ENV}={os.environ[SLOWDOWN_ENV]}: a deliberately slowed build.")
    print()
    print(table(rows, failed))
    print(f"\nRun time: {sum(seconds.values()):.0f} s ("
          + ", ".join(f"{n} {s:.0f} s" for n, s in seconds.items()) + ")")
    missed = [r for r in rows if not r["ok"]]
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
