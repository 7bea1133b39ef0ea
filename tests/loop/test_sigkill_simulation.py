"""kill -9 in the middle of a busy simulation loses no decision that was printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kiosk_fakes import SIM_CONFIG

from gateway.journal import Journal

ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_loses_no_printed_decision(tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(SIM_CONFIG, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--config", str(config),
         "--scenario", str(ROOT / "examples" / "morning-rush.yaml"), "--json", "--speed", "50", "--loop"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed = []
    try:
        deadline = time.monotonic() + 60
        while len(printed) < 5 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(json.loads(line))
        # Kill it while the next person is being handled, without any warning.
        time.sleep(0.35)
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    printed += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert len(printed) >= 5, err
    assert proc.returncode == -signal.SIGKILL

    journal = Journal.open(tmp_path / "journal.db")
    try:
        stored = {e["seq"]: e for e in journal.events(kind="decision")}
    finally:
        journal.close()
    for record in printed:
        row = stored.get(record["seq"])
        assert row is not None, f"printed decision {record['seq']} is not in the journal"
        assert (row["decision"], row["reasons"], row["person_id"]) == (
            record["decision"], record["reasons"], record["person_id"])
    assert [r["seq"] for r in printed] == sorted(r["seq"] for r in printed)
