"""The loop's rules, on fake hardware: commit before acting, timeouts, lingering
passes, faults failing closed, the guard's override and re-measure."""

from __future__ import annotations

import time

from kiosk_fakes import wait_for

from gateway.journal import Journal


def decisions(app):
    return app.journal.events(kind="decision")


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def test_decision_is_committed_before_the_relay_moves(kiosk, issue):
    seen = []
    real_open = kiosk.hardware.outputs.open_for

    def spy(seconds=None):
        # At the moment the gate is told to open, the admit is already on disk.
        seen.append((kiosk.journal.events(kind="decision"), kiosk.journal.get_meta("in_flight_seq")))
        real_open(seconds)

    kiosk.hardware.outputs.open_for = spy
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show(issue("r-1"))
    wait_for(lambda: seen)
    rows, in_flight = seen[0]
    assert rows[-1]["decision"] == "admit" and str(rows[-1]["seq"]) == in_flight
    wait_for(lambda: kiosk.journal.get_meta("in_flight_seq") is None)  # then marked as acted on


def test_a_pass_left_in_view_is_not_decided_again_nor_passback(kiosk, issue):
    text = issue("r-2")
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show(text)
    wait_for(lambda: len(decisions(kiosk)) == 1)
    time.sleep(1.5)  # the person lingers with the pass held up
    assert [d["reasons"] for d in decisions(kiosk)] == [["ok"]]
    kiosk.hardware.camera.show(None)
    time.sleep(0.6)
    kiosk.hardware.camera.show(text)  # shown again after leaving the view: a new scan
    wait_for(lambda: len(decisions(kiosk)) == 2)
    assert decisions(kiosk)[1]["reasons"] == ["passback"]
    assert rising_edges(kiosk.relay_pin) == 1


def test_no_stable_reading_prompts_hold_still_then_no_reading(kiosk, issue):
    kiosk.hardware.thermometer.set(26.0, 22.0)  # too far away: reads the room
    kiosk.hardware.camera.show(issue("r-3"))
    wait_for(lambda: kiosk.state.prompt == "prompt.hold_still", timeout=3)
    assert not decisions(kiosk)
    (row,) = wait_for(lambda: decisions(kiosk), timeout=3)
    assert row["decision"] == "deny" and row["reasons"] == ["no_reading"]
    assert row["object_c"] is not None  # what it did see is logged
    assert rising_edges(kiosk.relay_pin) == 0


def test_unplugged_camera_pauses_automatic_entry_on_screen(kiosk):
    kiosk.hardware.camera.unplug()
    wait_for(lambda: kiosk.state.health.get("camera", {}).get("status") == "fault", timeout=6)
    assert kiosk.state.paused
    assert kiosk.state.snapshot()["health"]["camera"]["key"] == "health.camera.fault"
    kiosk.hardware.camera.replug()
    wait_for(lambda: kiosk.state.health["camera"]["status"] == "ok", timeout=12)
    assert not kiosk.state.paused


def test_dead_thermometer_fails_closed_and_the_guard_override_is_logged(kiosk, issue):
    kiosk.hardware.thermometer.set_absent(True)
    kiosk.hardware.camera.show(issue("r-4"))
    (row,) = wait_for(lambda: decisions(kiosk))
    assert row["decision"] == "deny" and row["reasons"] == ["sensor_fault"]
    wait_for(lambda: kiosk.state.health["thermometer"]["status"] == "fault")
    assert kiosk.state.paused and rising_edges(kiosk.relay_pin) == 0

    kiosk.actions.sign_in({"name": "李保安"})
    result = kiosk.actions.override({"reason": "resident_fault", "note": "本楼住户", "for_seq": row["seq"]})
    (override,) = kiosk.journal.events(kind="override")
    assert override["seq"] == result["seq"]
    assert override["operator"] == "李保安" and override["decision"] == "admit"
    assert override["reasons"] == ["sensor_fault", "guard_override"]
    assert override["person_id"] == "r-4" and override["detail"]["for_seq"] == row["seq"]
    assert override["detail"]["override_reason"] == "resident_fault"
    wait_for(lambda: rising_edges(kiosk.relay_pin) == 1)


def test_unwritable_journal_fails_closed_but_the_guard_can_still_open(kiosk, issue):
    kiosk.actions.sign_in({"name": "王保安"})
    kiosk.journal._conn.execute("PRAGMA query_only = 1")  # SQLite now refuses every write
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show(issue("r-5"))
    wait_for(lambda: kiosk.state.current and kiosk.state.current["reasons"] == ["journal_fault"])
    assert kiosk.state.current["decision"] == "deny" and rising_edges(kiosk.relay_pin) == 0
    wait_for(lambda: kiosk.state.health["disk"]["status"] == "fault")
    assert kiosk.state.paused

    result = kiosk.actions.override({"reason": "resident_fault"})
    assert result["logged"] is False  # the guard is told the log is missing...
    wait_for(lambda: rising_edges(kiosk.relay_pin) == 1)  # ...but no resident is locked out
    kiosk.journal._conn.execute("PRAGMA query_only = 0")  # the disk is writable again
    kiosk.probe_journal()  # (housekeeping does this every 10 s)
    wait_for(lambda: kiosk.state.health["disk"]["status"] == "ok")


def test_a_normal_remeasure_is_logged_but_never_clears_a_fever_by_itself(kiosk, issue):
    kiosk.hardware.thermometer.set(37.2, 22.0)
    kiosk.hardware.camera.show(issue("r-6"))
    (first,) = wait_for(lambda: decisions(kiosk))
    assert first["flagged"] and first["decision"] == "deny"
    wait_for(lambda: kiosk.state.alerts)

    kiosk.actions.sign_in({"name": "赵保安"})
    kiosk.hardware.thermometer.set(21.0, 22.0)  # steps back...
    kiosk.actions.remeasure({"for_seq": first["seq"]})
    assert kiosk.state.prompt == "prompt.remeasure"
    kiosk.hardware.thermometer.set(36.5, 22.0)  # ...and is measured again
    second = wait_for(lambda: decisions(kiosk)[1:])[0]
    # The infrared re-measure was normal, but the fever case holds the gate until the guard decides.
    assert second["decision"] == "deny" and not second["flagged"]
    assert second["reasons"] == ["fever_case_open"]
    assert second["detail"]["remeasure_of"] == first["seq"]
    assert second["detail"]["remeasure"]["outcome"] == "cleared"
    assert second["detail"]["case_id"] == first["detail"]["case_id"]
    assert rising_edges(kiosk.relay_pin) == 0
    (request,) = kiosk.journal.events(kind="remeasure")
    assert request["operator"] == "赵保安" and request["detail"]["for_seq"] == first["seq"]


def test_start_closes_the_relay_and_marks_an_interrupted_decision(sim_settings, issue):
    from gateway.loop import build_app

    journal = Journal.open(sim_settings.journal.path)
    crashed = journal.append({"kind": "decision", "decision": "admit", "reasons": ["ok"]}, in_flight=True)
    journal.close()  # the process died before the relay moved

    app = build_app(sim_settings)
    try:
        (event,) = app.journal.events(kind="interrupted")
        assert event["detail"]["seq"] == crashed["seq"]
        pin = app.hardware.outputs.relay.pin
        app.start()
        assert pin.state is False
    finally:
        app.stop()
    assert [s.state for s in pin.states][-1] is False
