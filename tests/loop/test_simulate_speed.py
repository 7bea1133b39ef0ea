"""`checkpoint simulate --speed X` runs on a simulated clock (issue 11): faster
than real time, with the same decisions at every speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kiosk_fakes import SIM_CONFIG

ROOT = Path(__file__).resolve().parents[2]
RUSH = ROOT / "examples" / "morning-rush.yaml"
VARYING = {"seq", "time"}  # the journal's own numbering and (real) wall time


def rush(tmp_path: Path, count: int) -> Path:
    """morning-rush.yaml repeated (every 20 s, like the original's spacing) to `count` arrivals."""
    doc = yaml.safe_load(RUSH.read_text(encoding="utf-8"))
    base = doc["arrivals"]
    doc["arrivals"] = [{**a, "at": a["at"] + 20 * (i // len(base))}
                       for i, a in enumerate((base * (count // len(base) + 1))[:count])]
    path = tmp_path / f"rush-{count}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def simulate(tmp_path: Path, scenario: Path, speed: float, name: str) -> tuple[list[dict], float]:
    """Run the CLI; returns (decisions without seq/time, wall seconds)."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "gate.toml").write_text(SIM_CONFIG, encoding="utf-8")
    # One demo issuer for every run: the same pass texts, so the same decisions can be compared.
    (run_dir / "keys").symlink_to(tmp_path / "keys", target_is_directory=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "simulate", "--config", str(run_dir / "gate.toml"),
         "--scenario", str(scenario), "--json", "--speed", str(speed)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return [{k: v for k, v in row.items() if k not in VARYING} for row in rows], wall


@pytest.fixture
def keys(tmp_path):
    (tmp_path / "keys").mkdir()


def test_speed_changes_the_pace_not_the_decisions(tmp_path, keys):
    scenario = rush(tmp_path, 2)  # small: --speed 1 takes the scenario's own length in real time
    slow, slow_wall = simulate(tmp_path, scenario, 1, "speed-1")
    fast, _ = simulate(tmp_path, scenario, 100, "speed-100")
    assert [d["decision"] for d in slow] == ["admit", "admit"]
    assert fast == slow  # every field but seq and time, the readings included
    # At --speed 1 the simulated clock keeps pace with the wall clock: each
    # person takes at least a 1 s walk and 1.3 s of nobody in view.
    assert slow_wall > 2 * 2.3


@pytest.mark.slow  # about 20-40 s on a quiet machine, plus 50 s at --speed 1
def test_a_500_person_morning_at_speed_100(tmp_path, keys):
    scenario = rush(tmp_path, 500)
    fast, fast_wall = simulate(tmp_path, scenario, 100, "speed-100")
    print(f"500 arrivals at --speed 100: {fast_wall:.1f} s wall")
    assert len(fast) == 500
    assert fast_wall < 30
    # The same scenario's first 20 people at --speed 1: the same decisions.
    slow, _ = simulate(tmp_path, rush(tmp_path, 20), 1, "speed-1")
    assert fast[:20] == slow
