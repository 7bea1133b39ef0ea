"""Gate rules in the running loop on fake hardware (issue 12): one person at
a time, legitimate returns, the pass-through beam, the guard's one-tap refusals."""

from __future__ import annotations



import pytest
from kiosk_fakes import SIM_CONFIG, wait_for, pause

from gateway.config import load_config


def events(app, kind="decision"):
    return app.journal.events(kind=kind)


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def leave(app):
    app.hardware.camera.show(None)
    pause(0.6)


def test_two_passes_in_one_frame_decide_nobody_and_open_nothing(kiosk, issue):
    a, b = issue("r-11"), issue("r-12")
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show((a, b))
    (crowd,) = wait_for(lambda: events(kiosk, "one_at_a_time"), timeout=5)
    assert (crowd["decision"], crowd["reasons"], crowd["pass_id"]) == ("deny", ["one_at_a_time"], None)
    assert kiosk.state.current["public_text"]["zh"] == "请逐一通过"
    pause(1.0)  # still both in view: logged once, nobody decided
    assert len(events(kiosk, "one_at_a_time")) == 1 and events(kiosk) == []
    assert rising_edges(kiosk.relay_pin) == 0
    kiosk.hardware.camera.show(a)  # the second person steps back: the first is decided
    (row,) = wait_for(lambda: events(kiosk))
    assert row["person_id"] == "r-11" and row["decision"] == "admit"


def test_a_frame_that_misses_one_code_of_a_crowd_opens_nothing(kiosk, issue):
    """One frame in which only one of two codes decodes must not decide that person."""
    a, b = issue("r-21"), issue("r-22")
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show((a, b))
    wait_for(lambda: events(kiosk, "one_at_a_time"), timeout=5)
    kiosk.hardware.camera.show(a)  # b not decoded for a moment
    pause(0.2)
    kiosk.hardware.camera.show((a, b))
    pause(1.0)
    assert events(kiosk) == [] and rising_edges(kiosk.relay_pin) == 0
    assert len(events(kiosk, "one_at_a_time")) == 1


def test_in_out_in_within_30_s_is_a_return_not_passback(kiosk, issue):
    text = issue("r-13")
    kiosk.hardware.thermometer.set(36.4, 22.0)
    for direction in ("in", "out", "in"):
        kiosk.checkpoint.set_direction(direction)
        count = len(events(kiosk))
        kiosk.hardware.camera.show(text)
        wait_for(lambda: len(events(kiosk)) == count + 1)
        leave(kiosk)
    assert [(r["direction"], r["reasons"]) for r in events(kiosk)] == [("in", ["ok"]), ("out", ["ok"]), ("in", ["ok"])]
    kiosk.hardware.camera.show(text)  # in again with no exit in between: passback
    wait_for(lambda: len(events(kiosk)) == 4)
    assert events(kiosk)[-1]["reasons"] == ["passback"]


def test_guard_taps_refused_measurement_while_the_person_is_measured(kiosk, issue):
    kiosk.hardware.thermometer.set(25.0, 22.0)  # keeps away from the thermometer
    kiosk.hardware.camera.show(issue("r-14"))
    wait_for(lambda: kiosk.checkpoint._pending is not None)
    event = kiosk.checkpoint.guard_refuse("王师傅", "refused_measurement", None)
    (row,) = events(kiosk)
    assert row["seq"] == event["seq"] and row["person_id"] == "r-14"
    assert (row["decision"], row["reasons"], row["operator"]) == ("deny", ["refused_measurement", "no_reading"], "王师傅")
    assert row["detail"]["guard_refusal"] == "refused_measurement"
    pause(2.0)  # the pass still in view is not decided again
    assert len(events(kiosk)) == 1 and rising_edges(kiosk.relay_pin) == 0


@pytest.fixture
def beam_kiosk(tmp_path):
    from gateway.loop import build_app
    from gateway.scenario import DemoIssuer

    path = tmp_path / "gate.toml"
    path.write_text(SIM_CONFIG.replace("open_s = 0.2", "open_s = 5.0\nbeam_pin = 23"), encoding="utf-8")
    settings = load_config(path)
    issuer = DemoIssuer.for_settings(settings)  # before the app loads its keys
    app = build_app(settings)
    app.issuer = issuer
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.hardware.thermometer.set(21.0, 22.0)
    app.start()
    yield app
    app.stop()


def test_beam_closes_after_one_person_and_logs_a_tailgate(beam_kiosk, tmp_path):
    from gateway.scenario import PassTemplate

    app = beam_kiosk
    issuer = app.issuer
    beam_pin = app.checkpoint.beam.device.pin
    relay = app.hardware.outputs.relay
    app.hardware.thermometer.set(36.4, 22.0)
    app.hardware.camera.show(issuer.sign(PassTemplate(person="r-15")))
    wait_for(lambda: events(app) and relay.value)
    beam_pin.drive_low()  # the person crosses the beam
    wait_for(lambda: not relay.value, timeout=1.0)  # closed at once, not after open_s = 5 s
    beam_pin.drive_high()
    assert events(app, "tailgate") == []
    beam_pin.drive_low()  # a second body in the same opening
    beam_pin.drive_high()
    (tail,) = wait_for(lambda: events(app, "tailgate"))
    assert tail["reasons"] == ["tailgate"] and tail["detail"]["breaks"] == 2
    assert app.state.current["guard_text"]["zh"].startswith("尾随")


def test_the_queue_sees_the_rules_of_the_policy_in_force(kiosk):
    kiosk.journal.apply_registry_page([{"entity": "policy", "entity_id": "site-1", "op": "upsert", "change_seq": 1,
                                        "payload": {"version": 9, "preset": "level-2", "duty_person": "李主任",
                                                    "duty_phone": "010-12345678"}}], "c1")
    kiosk._refresh_registry()
    kiosk.gate_watch.tick()
    rules = [r["zh"] for r in kiosk.state.snapshot("public")["rules"]]
    assert "进入须佩戴口罩" in rules and "访客须测温正常并登记后进入" in rules
    assert "责任人：李主任　值守电话：010-12345678" in rules
    assert kiosk.state.snapshot()["gate_rules"]["mask_required"] is True
