"""What every bench shares: its verdict rows, the slowdown hook, the machine.

A bench measures one or more figures, each next to an anchor measured in the
same run (what a user would pick instead, or the physical floor), and checks
each against a target. `finish()` prints the rows and returns the exit code:
non-zero when any target is missed, so a regression cannot pass silently.

`python -m bench` runs each bench in its own process and collects the rows
through the file named by CHECKPOINT_BENCH_ROWS (JSON lines).

CHECKPOINT_BENCH_SLOWDOWN_MS: a deliberately slowed build for testing the
benches themselves. Each bench calls `slowdown()` once per operation in the
path it measures (never in its anchors), so setting it must make the bench
fail. It is read from the environment only here and is off by default.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

SLOWDOWN_ENV = "CHECKPOINT_BENCH_SLOWDOWN_MS"
ROWS_ENV = "CHECKPOINT_BENCH_ROWS"


def slowdown_s() -> float:
    value = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not value:
        return 0.0
    try:
        return max(0.0, float(value)) / 1000
    except ValueError:
        raise SystemExit(f"{SLOWDOWN_ENV}={value!r}: expected a number of milliseconds") from None


_SLOWDOWN = slowdown_s()


def slowdown() -> None:
    """The test hook: sleep CHECKPOINT_BENCH_SLOWDOWN_MS in the measured path (0 by default)."""
    if _SLOWDOWN:
        time.sleep(_SLOWDOWN)


def slowed(fn):
    """`fn` with `slowdown()` before each call (returns fn itself when the hook is off)."""
    if not _SLOWDOWN:
        return fn

    def wrapper(*args, **kwargs):
        slowdown()
        return fn(*args, **kwargs)

    return wrapper


@dataclass
class Row:
    """One measured figure, its anchor from the same run, and its target.

    `ratio` is value / anchor. `ok` is the verdict; `target` says in words
    what was required (e.g. ">= 0.50x anchor").
    """

    bench: str
    figure: str
    value: float
    unit: str
    anchor_name: str
    anchor: float | None
    target: str
    ok: bool
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.anchor is None or not self.anchor:
            return None
        return self.value / self.anchor

    def line(self) -> str:
        ratio = "" if self.ratio is None else f"  ratio {self.ratio:.2f}"
        anchor = "" if self.anchor is None else f"  anchor {self.anchor_name} {fmt(self.anchor)} {self.unit}"
        verdict = "ok" if self.ok else "MISS"
        note = f"  ({self.note})" if self.note else ""
        return f"[{verdict}] {self.figure}: {fmt(self.value)} {self.unit}{anchor}{ratio}  target {self.target}{note}"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def finish(rows: list[Row]) -> int:
    """Print the verdict rows, hand them to `python -m bench`, return the exit code."""
    print("\nverdict")
    for row in rows:
        print("  " + row.line())
    if _SLOWDOWN:
        print(f"  ({SLOWDOWN_ENV}={_SLOWDOWN * 1000:g} ms: a deliberately slowed build)")
    path = os.environ.get(ROWS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({**asdict(row), "ratio": row.ratio}) + "\n")
    missed = [r for r in rows if not r.ok]
    if not rows:
        print("  no figures were measured", file=sys.stderr)
        return 1
    if missed:
        print(f"  {len(missed)} of {len(rows)} target(s) MISSED", file=sys.stderr)
        return 1
    return 0


def machine() -> dict:
    """The machine a run happened on, and how busy it was."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/device-tree/model", encoding="utf-8") as f:
            model = f.read().strip("\x00\n ") + f" ({model})"
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_1min": round(load[0], 2) if load else None,
    }
