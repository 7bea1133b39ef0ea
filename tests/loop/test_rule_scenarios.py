"""Every gate rule of issue 12 shown by a scenario file in examples/rules/, run
through `checkpoint simulate --json` exactly as an operator would: each arrival's
decision and reason codes as printed, and the same record in the journal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kiosk_fakes import SIM_CONFIG

from gateway.journal import Journal, decision_record
from gateway.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "examples" / "rules").glob("*.yaml"))


def simulate(tmp_path, scenario: Path) -> list[dict]:
    config = tmp_path / "gate.toml"
    config.write_text(SIM_CONFIG, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "simulate", "--config", str(config), "--scenario", str(scenario),
         "--json", "--speed", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.stem)
def test_rule_scenario_decisions_reasons_and_journal(tmp_path, path):
    scenario = load_scenario(path)
    printed = simulate(tmp_path, path)
    assert [(r["decision"], r["reasons"]) for r in printed] == [
        (a.expect.decision, a.expect.reasons) for a in scenario.arrivals]

    journal = Journal.open(tmp_path / "journal.db")
    try:
        stored = {e["seq"]: e for e in journal.events()}
        for record, arrival in zip(printed, scenario.arrivals):
            row = stored[record["seq"]]
            assert decision_record(row) == record  # what was printed is what was logged
            if arrival.guard:
                assert row["operator"] == "simulator" and row["detail"]["guard_refusal"] == arrival.guard
            if "one_at_a_time" in record["reasons"]:
                assert row["kind"] == "one_at_a_time" and row["pass_id"] is None
            elif arrival.vehicle:
                assert row["kind"] == "vehicle" and row["operator"] == "simulator"
                assert row["detail"]["plate"] == arrival.vehicle.plate
                assert [o["body_c"] for o in row["detail"]["occupants"]] == arrival.vehicle.occupants
                assert row["flagged"] is arrival.expect.flagged
            else:
                assert row["kind"] == "decision"
        if path.stem == "unstaffed":
            (alarm,) = journal.events(kind="unstaffed")
            assert alarm["detail"]["unattended"] == "refuse" and alarm["seq"] < printed[0]["seq"]
        if path.stem == "vehicles":
            first, _, outside, exception = printed
            assert first["pass_id"] == "BJ-A12345" and first["person_id"] == "h-8-1-401"
            assert stored[exception["seq"]]["detail"]["exception"]["reason"] == "救护车接送病人"
            assert stored[outside["seq"]]["detail"]["household"] is None
        if path.stem == "people":
            policy_version = {r["detail"]["policy_version"] for r in stored.values() if r["kind"] == "decision"}
            assert policy_version == {50}  # the pushed level-2 policy decided every arrival
    finally:
        journal.close()
