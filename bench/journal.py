"""Durable journal appends per second: synchronous=FULL against NORMAL.

    .venv/bin/python -m bench.journal [--events 5000]

Each append is its own committed transaction, as at the gate. The target is
at least 2,000 events/s with FULL. This VM's disk acknowledges fsync almost
for free; an SD card on a Pi is far slower, so measure there before relying
on these figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gateway.journal import Journal

EVENT = {
    "kind": "decision",
    "gate": "east-1",
    "direction": "in",
    "pass_id": "P7Q2K9",
    "person_id": "r-101",
    "object_c": 36.1,
    "ambient_c": 21.4,
    "offset_c": 0.5,
    "body_c": 36.6,
    "threshold_c": 37.3,
    "decision": "admit",
    "flagged": False,
    "reasons": ["ok"],
    "operator": "guard-7",
}


def measure(directory: Path, synchronous: str, events: int) -> dict:
    journal = Journal.open(directory / f"bench-{synchronous}.db")
    journal._conn.execute(f"PRAGMA synchronous={synchronous}")
    latencies = []
    start = time.perf_counter()
    for _ in range(events):
        t = time.perf_counter()
        journal.append(EVENT)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    journal.close()
    latencies.sort()
    return {
        "rate": events / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        normal = measure(Path(tmp), "NORMAL", args.events)
        full = measure(Path(tmp), "FULL", args.events)
    for name, r in (("NORMAL (baseline)", normal), ("FULL", full)):
        print(f"{name:18} {r['rate']:8.0f} events/s   p50 {r['p50_ms']:.3f} ms   p99 {r['p99_ms']:.3f} ms")
    print(f"FULL / NORMAL throughput ratio: {full['rate'] / normal['rate']:.2f}")
    verdict = "meets" if full["rate"] >= 2000 else "MISSES"
    print(f"target >= 2000 events/s with FULL: {verdict} ({full['rate']:.0f})")


if __name__ == "__main__":
    main()
