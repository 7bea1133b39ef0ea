"""One fault boundary in the loop (issue 11): a fault in one person's path is
shown to the guard, refuses that person only, and the loop goes on; the
guard can still open by hand."""

from __future__ import annotations

from kiosk_fakes import wait_for


def decisions(app):
    return app.journal.events(kind="decision")


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def put_registry(app, entity, entity_id, payload, change_seq):
    app.journal.apply_registry_page(
        [{"entity": entity, "entity_id": entity_id, "op": "upsert", "payload": payload, "change_seq": change_seq}],
        str(change_seq))


def next_person(kiosk, body_c):
    """The pass leaves the view and the thermometer sees the room, then the next person."""
    kiosk.hardware.camera.show(None)
    kiosk.hardware.thermometer.set(21.0, 22.0)
    wait_for(lambda: kiosk.checkpoint._visible_text is None, timeout=3)
    kiosk.hardware.thermometer.set(body_c, 22.0)


def test_a_full_disk_after_the_commit_does_not_stop_the_kiosk(kiosk, issue):
    def disk_fills_up(event, decision):
        # Between the decision's commit and `actuated()`: SQLite now refuses every write.
        kiosk.journal._conn.execute("PRAGMA query_only = 1")

    kiosk.checkpoint.listeners.append(disk_fills_up)
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show(issue("r-1"))
    (first,) = wait_for(lambda: decisions(kiosk))
    assert first["decision"] == "admit"
    wait_for(lambda: kiosk.state.health.get("disk", {}).get("status") == "fault", timeout=4)
    assert kiosk.state.paused  # the guard sees why automatic entry stopped
    assert not kiosk.stop_event.is_set() and kiosk.failed is None
    assert wait_for(lambda: rising_edges(kiosk.relay_pin) == 1)

    kiosk.checkpoint.listeners.remove(disk_fills_up)
    result = kiosk.checkpoint.guard_open("王保安", "resident_fault", "", None)
    assert result.get("unlogged")  # opened by hand though the log is down
    wait_for(lambda: rising_edges(kiosk.relay_pin) == 2)

    kiosk.journal._conn.execute("PRAGMA query_only = 0")  # space again
    kiosk.probe_journal()
    assert kiosk.journal.get_meta("in_flight_seq") is None  # the act is marked done after all
    kiosk.hardware.camera.show(None)
    kiosk.hardware.thermometer.set(21.0, 22.0)
    wait_for(lambda: kiosk.checkpoint._visible_text is None, timeout=3)
    kiosk.hardware.thermometer.set(36.5, 22.0)
    kiosk.hardware.camera.show(issue("r-2"))
    second = wait_for(lambda: decisions(kiosk)[1:])[0]
    assert second["person_id"] == "r-2" and second["decision"] == "admit"


def test_a_bad_registry_record_refuses_that_person_only_and_the_loop_goes_on(kiosk, issue):
    put_registry(kiosk, "person", "r-bad", ["not", "a", "record"], 1)
    put_registry(kiosk, "visitor_case", "v-1", {"valid_until": "next week"}, 2)
    kiosk.hardware.thermometer.set(36.4, 22.0)
    kiosk.hardware.camera.show(issue("r-bad"))
    (bad,) = wait_for(lambda: decisions(kiosk))
    assert bad["decision"] == "deny" and bad["reasons"] == ["internal_error"]
    assert bad["person_id"] == "r-bad"
    health = wait_for(lambda: kiosk.state.health.get("checkpoint", {}).get("status") == "fault"
                      and kiosk.state.health["checkpoint"], timeout=3)
    assert "r-bad" in health["detail"]
    assert not health["blocks_entry"]  # others still go through automatically
    assert rising_edges(kiosk.relay_pin) == 0

    kiosk.actions.sign_in({"name": "李保安"})
    kiosk.actions.override({"reason": "resident_fault", "for_seq": bad["seq"]})
    (override,) = kiosk.journal.events(kind="override")
    assert override["person_id"] == "r-bad" and override["decision"] == "admit"
    wait_for(lambda: rising_edges(kiosk.relay_pin) == 1)

    next_person(kiosk, 36.5)
    kiosk.hardware.camera.show(issue("v-1", kind="visitor"))  # a visitor case dated "next week"
    visitor = wait_for(lambda: decisions(kiosk)[1:])[0]
    assert visitor["person_id"] == "v-1" and visitor["reasons"] != ["internal_error"]
    next_person(kiosk, 36.6)
    kiosk.hardware.camera.show(issue("r-3"))
    resident = wait_for(lambda: decisions(kiosk)[2:])[0]
    assert resident["person_id"] == "r-3" and resident["decision"] == "admit"
    assert not kiosk.stop_event.is_set() and kiosk.failed is None


def test_a_bug_in_every_step_pauses_automatic_entry_but_the_guard_can_open(kiosk):
    real_step = kiosk.checkpoint.step

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    kiosk.checkpoint.step = broken
    health = wait_for(lambda: kiosk.state.health.get("checkpoint", {}).get("status") == "fault"
                      and kiosk.state.health["checkpoint"], timeout=4)
    assert health["blocks_entry"] and "ZeroDivisionError" in health["detail"]
    assert kiosk.state.paused and not kiosk.stop_event.is_set()
    assert kiosk.relay_pin.state is False
    kiosk.actions.sign_in({"name": "赵保安"})
    kiosk.actions.override({"reason": "resident_fault"})
    wait_for(lambda: rising_edges(kiosk.relay_pin) == 1)
    kiosk.checkpoint.step = real_step  # the fault passes: so does the pause
    wait_for(lambda: kiosk.state.health.get("checkpoint", {}).get("status") == "ok", timeout=4)
    assert not kiosk.state.paused


def test_a_bad_registry_record_does_not_stop_the_kiosk_from_starting(sim_settings, issue):  # (issue: the demo key)
    from gateway.journal import Journal
    from gateway.loop import build_app

    journal = Journal.open(sim_settings.journal.path)
    journal.apply_registry_page([{"entity": "person", "entity_id": "r-bad", "op": "upsert",
                                  "payload": ["not", "a", "record"], "change_seq": 1}], "1")
    journal.append({"kind": "decision", "decision": "deny", "person_id": "r-bad", "reasons": ["internal_error"]})
    journal.close()
    app = build_app(sim_settings)  # the screen's history reads that person at start-up
    try:
        assert app.state.recent[0]["person"] is None
    finally:
        app.stop()


def test_a_fault_with_nobody_identified_pauses_without_flooding_the_journal(kiosk):
    def broken(now):
        raise RuntimeError("presence watch bug")

    kiosk.checkpoint._watch_presence = broken
    health = wait_for(lambda: kiosk.state.health.get("checkpoint", {}).get("status") == "fault"
                      and kiosk.state.health["checkpoint"], timeout=4)
    assert health["blocks_entry"] and kiosk.state.paused
    assert decisions(kiosk) == []  # no refusal logged every 0.1 s
    assert not kiosk.stop_event.is_set()
