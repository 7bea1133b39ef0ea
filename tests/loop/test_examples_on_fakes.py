"""Every example scenario through the real loop on fake hardware.

Fakes only at the edges: the FakeCamera renders each pass into frames that the
real QR decoder reads, the real Adafruit MLX90614 driver reads the emulated
I2C chip, and the relay is gpiozero's MockFactory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.journal import Journal, decision_record
from gateway.scenario import load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHECKED = sorted(p for p in EXAMPLES.glob("*.yaml") if p.stem != "demo")


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def test_every_issue_example_is_shipped():
    names = {p.stem for p in CHECKED}
    assert {"morning-rush", "fever", "visitor", "courier", "returnee", "forged-pass", "dead-sensor"} <= names


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.stem)
def test_example_gives_expected_decisions_rows_and_relay(path, play, sim_settings):
    scenario = load_scenario(path)
    assert all(a.expect for a in scenario.arrivals), "every example arrival states what it expects"
    relay_pin = {}

    def grab_pin(app):
        relay_pin["pin"] = app.hardware.outputs.relay.pin

    decisions, app = play(scenario, before_start=grab_pin)

    got = [(d["decision"], d["reasons"], d["flagged"]) for d in decisions]
    want = [(a.expect.decision, a.expect.reasons, a.expect.flagged) for a in scenario.arrivals]
    assert got == want

    # The journal holds the same decisions, in order, as committed rows.
    journal = Journal.open(sim_settings.journal.path)
    try:
        rows = journal.events(kind="decision")
        assert [decision_record(r) for r in rows] == [decision_record(d) for d in decisions]
        assert all(r["gate"] == "sim-1" and r["threshold_c"] == 37.3 for r in rows)
        assert journal.get_meta("in_flight_seq") is None  # every decision was acted on
    finally:
        journal.close()

    # The relay opened once per admit and nothing else; closed at start and at the end.
    pin = relay_pin["pin"]
    admits = sum(1 for d in decisions if d["decision"] == "admit")
    assert pin.states[0].state is False
    assert rising_edges(pin) == admits
    assert pin.state is False


def test_readings_are_logged_raw_offset_and_body(play):
    from gateway.scenario import parse_scenario

    scenario = parse_scenario([{"at": 0, "qr": {"pass": {"person": "r-1"}}, "object_c": 36.5, "ambient_c": 20.0}])
    decisions, app = play(scenario)
    (event,) = decisions
    assert event["object_c"] == pytest.approx(36.5, abs=0.02)
    assert event["ambient_c"] == pytest.approx(20.0, abs=0.02)
    assert event["offset_c"] == 0.5
    assert event["body_c"] == pytest.approx(event["object_c"] + 0.5, abs=0.001)
