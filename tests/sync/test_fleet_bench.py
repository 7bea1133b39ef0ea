"""bench/fleet.py runs end to end at a tiny size (the figures themselves are
the bench's business, not a test's): every section prints, and nothing the
gates saw acknowledged is lost or stored twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sync.sync_harness import postgres_problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_fleet_bench_runs_at_tiny_size():
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    run = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--gates", "60", "--seconds", "1", "--processes", "1,2",
         "--anchor-rate", "20"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    out = run.stdout
    assert run.returncode in (0, 1), run.stderr[-2000:]
    assert "server CPU per 2-event request" in out and "ratio" in out
    assert "    1 " in out and "    2 " in out  # a row per process count
    assert ", 0 lost, 0 duplicated" in out
    # Exit status and verdict agree: 0 with "all targets met", 1 with the misses named.
    assert ("[MISS]" in out) == (run.returncode == 1)
    assert ("MISSED" in run.stderr) == (run.returncode == 1)
