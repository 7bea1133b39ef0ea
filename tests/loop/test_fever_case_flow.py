"""One fever, one case: scenarios through the running loop on fake hardware.

The person stands at the fake MLX90614 (object temperature + the configured
0.5 offset = body), holds up a really signed pass to the fake camera, and
the guard acts through the same GuardActions the screen posts to.
"""

from __future__ import annotations



import pytest
from kiosk_fakes import wait_for, pause

from gateway.screen.actions import ActionError
from gateway.screen.history import counts_today


def decisions(app):
    return app.journal.events(kind="decision")


def cases_opened(app):
    return app.journal.events(kind="fever_case.opened")


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def fever_signals(app) -> list:
    """Spy on the gate's fever signal (lights and buzzer): one per case, not per reading."""
    seen = []
    real = app.hardware.outputs.signal

    def spy(kind, seconds=None):
        seen.append(kind)
        real(kind, seconds)

    app.hardware.outputs.signal = spy
    return seen


def measure(app, issue_or_text, object_c, *, n_before):
    """A person steps up with their pass; returns their decision once committed."""
    app.hardware.thermometer.set(object_c, 22.0)
    pause(0.3)
    app.hardware.camera.show(issue_or_text)
    return wait_for(lambda: decisions(app)[n_before:])[0]


def leave(app):
    app.hardware.camera.show(None)
    app.hardware.thermometer.set(21.0, 22.0)
    pause(0.4)


def remeasure(app, for_seq, object_c):
    n = len(decisions(app))
    app.hardware.thermometer.set(21.0, 22.0)
    app.actions.remeasure({"for_seq": for_seq})
    assert app.state.prompt == "prompt.remeasure"
    app.hardware.thermometer.set(object_c, 22.0)
    return wait_for(lambda: decisions(app)[n:])[0]


def test_a_normal_infrared_remeasure_stays_flagged_until_the_clinical_reading(kiosk, issue):
    signals = fever_signals(kiosk)
    kiosk.actions.sign_in({"name": "赵保安"})
    first = measure(kiosk, issue("r-61"), 37.1, n_before=0)  # 37.6 body
    assert first["flagged"] and first["decision"] == "deny"
    (case,) = wait_for(lambda: kiosk.state.alerts)
    assert case["max_c"] == pytest.approx(37.6, abs=0.02) and case["alarm"]

    second = remeasure(kiosk, first["seq"], 36.3)  # 36.8 body: normal
    assert second["decision"] == "deny" and second["reasons"] == ["fever_case_open"]
    assert not second["flagged"]  # the reading itself was normal...
    assert kiosk.state.current["held"] and kiosk.state.current["case_id"] == case["case_id"]  # ...the person is not
    assert "请复测" not in kiosk.state.current["guard_text"]["zh"]  # the screen asks for the clinical reading now
    assert rising_edges(kiosk.relay_pin) == 0
    wait_for(lambda: kiosk.state.alerts[0]["readings"] == 2)  # the case event follows the decision

    # Admission without a clinical reading is refused; with a normal one the gate opens.
    with pytest.raises(ActionError) as refused:
        kiosk.actions.fever_case({"case_id": case["case_id"], "outcome": "admitted"})
    assert refused.value.errors["clinical_c"][0] == "err.case_needs_clinical"
    result = kiosk.actions.fever_case({"case_id": case["case_id"], "clinical_c": "36.6", "outcome": "admitted",
                                       "note": "水银体温计 36.6"})
    assert result["closed"] and result["outcome"] == "admitted"
    wait_for(lambda: rising_edges(kiosk.relay_pin) == 1)
    (opened,) = kiosk.journal.events(kind="override")
    assert opened["detail"]["case_id"] == case["case_id"] and opened["detail"]["override_reason"] == "remeasured_ok"
    assert opened["person_id"] == "r-61" and opened["operator"] == "赵保安"
    assert kiosk.state.alerts == []
    assert kiosk.state.current["kind"] == "override"  # shown as opened by the guard, not a red FEVER
    assert [e["kind"] for e in kiosk.journal.events() if e["kind"].startswith("fever_case.")] == [
        "fever_case.opened", "fever_case.reading", "fever_case.clinical", "fever_case.closed"]
    assert signals.count("fever") == 1


def test_one_case_per_person_however_many_remeasures(kiosk, issue):
    signals = fever_signals(kiosk)
    kiosk.actions.sign_in({"name": "赵保安"})
    text = issue("r-62")
    first = measure(kiosk, text, 37.2, n_before=0)
    seq = first["seq"]
    for object_c in (36.9, 36.2, 37.3):  # flagged, normal, flagged
        seq = remeasure(kiosk, seq, object_c)["seq"]
    leave(kiosk)
    again = measure(kiosk, text, 36.2, n_before=len(decisions(kiosk)))  # walks off and shows the pass again
    assert again["decision"] == "deny" and again["reasons"] == ["fever_case_open"]
    wait_for(lambda: len(kiosk.journal.events(kind="fever_case.reading")) == 4)  # follows the decision
    (opened,) = cases_opened(kiosk)
    (case,) = kiosk.state.alerts
    assert case["readings"] == 5 and case["case_id"] == opened["detail"]["case_id"]
    assert kiosk.state.snapshot()["counts"]["flagged"] == 1
    assert signals.count("fever") == 1  # one alarm per case
    assert {d["detail"]["case_id"] for d in decisions(kiosk)} == {case["case_id"]}
    assert rising_edges(kiosk.relay_pin) == 0


def test_a_visitor_written_down_at_37_6_opens_a_case(kiosk):
    kiosk.actions.sign_in({"name": "赵保安"})
    result = kiosk.actions.register_visitor({
        "name": "刘晓明", "origin": "河北保定", "phone": "13812345678", "address": "朝阳区幸福里 3 号",
        "reason": "探望父母", "visiting": "3-2-601", "temperature_c": "37.6"})
    (opened,) = cases_opened(kiosk)
    assert opened["detail"]["source"] == "visitor_form" and opened["detail"]["body_c"] == 37.6
    assert opened["detail"]["name"] == "刘晓明" and opened["operator"] == "赵保安"
    assert result["case_id"] == opened["detail"]["case_id"]
    (case,) = kiosk.state.alerts
    assert case["source"] == "visitor_form" and case["alarm"]
    assert kiosk.state.snapshot()["counts"]["flagged"] == 1


def test_a_guards_own_37_6_opens_a_case_signs_them_out_and_asks_for_relief(kiosk):
    kiosk.actions.sign_in({"name": "钱保安"})
    result = kiosk.actions.staff_temperature({"period": "morning", "temperature_c": "37.6"})
    assert result["relief"]
    (opened,) = cases_opened(kiosk)
    assert opened["detail"]["source"] == "staff_form" and opened["detail"]["subject"] == "staff:钱保安"
    assert kiosk.state.operator is None  # stops work at once
    assert kiosk.state.relief == {"name": "钱保安", "case_id": opened["detail"]["case_id"]}
    shifts = [row["action"] for row in reversed(kiosk.journal.ledger("shifts"))]
    assert shifts == ["sign_in", "sign_out"]
    with pytest.raises(ActionError) as refused:  # not back on duty while the case is open
        kiosk.actions.sign_in({"name": "钱保安"})
    assert refused.value.errors["name"][0] == "err.guard_fever"
    kiosk.actions.sign_in({"name": "孙保安"})  # the relief guard
    assert kiosk.state.relief is None
    kiosk.actions.fever_case({"case_id": opened["detail"]["case_id"], "outcome": "referred",
                              "note": "已送发热门诊，已上报社区"})
    (closed,) = kiosk.journal.events(kind="fever_case.closed")
    assert closed["operator"] == "孙保安" and kiosk.state.alerts == []


def test_the_fever_count_on_screen_equals_the_cases_in_the_journal(kiosk, issue):
    """Three people with fevers, re-measured again and again: the count says 3 between and
    after the half-minute refreshes (it used to fall back to 1)."""
    kiosk.actions.sign_in({"name": "赵保安"})
    n = 0
    for person in ("r-71", "r-72", "r-73"):
        first = measure(kiosk, issue(person), 37.3, n_before=n)
        second = remeasure(kiosk, first["seq"], 37.4)
        remeasure(kiosk, second["seq"], 36.3)
        leave(kiosk)
        n = len(decisions(kiosk))
        assert kiosk.state.snapshot()["counts"]["flagged"] == len(cases_opened(kiosk))
        kiosk.state.set_counts(counts_today(kiosk.journal))  # what housekeeping does every 30 s
        assert kiosk.state.snapshot()["counts"]["flagged"] == len(cases_opened(kiosk))
    assert len(cases_opened(kiosk)) == 3 and len(decisions(kiosk)) == 9
    for _ in range(6):  # several refreshes later
        kiosk.state.set_counts(counts_today(kiosk.journal))
        assert kiosk.state.snapshot()["counts"]["flagged"] == 3


def test_the_manual_open_cannot_log_a_resident_fault_against_a_visitor(kiosk, issue):
    kiosk.actions.sign_in({"name": "赵保安"})
    visitor = measure(kiosk, issue("v-81", kind="visitor"), 36.2, n_before=0)
    assert visitor["decision"] == "deny" and visitor["reasons"] == ["visitor_policy"]
    with pytest.raises(ActionError) as refused:
        kiosk.actions.override({"reason": "resident_fault", "for_seq": visitor["seq"]})
    assert refused.value.errors["form"][0] == "err.reason_kind"
    assert kiosk.journal.events(kind="override") == [] and rising_edges(kiosk.relay_pin) == 0
    kiosk.actions.override({"reason": "registered_visitor", "note": "已登记", "for_seq": visitor["seq"]})
    (opened,) = kiosk.journal.events(kind="override")
    assert opened["detail"]["for_seq"] == visitor["seq"] and opened["person_id"] == "v-81"


def test_the_manual_open_refuses_a_decision_that_is_no_longer_the_person_at_the_gate(kiosk, issue, monkeypatch):
    from gateway import override_target

    kiosk.actions.sign_in({"name": "赵保安"})
    resident = measure(kiosk, issue("r-91"), 36.2, n_before=0)
    leave(kiosk)
    monkeypatch.setattr(override_target, "WINDOW_S", 0.3)
    pause(0.4)
    with pytest.raises(ActionError) as refused:
        kiosk.actions.override({"reason": "resident_fault", "for_seq": resident["seq"]})
    assert refused.value.errors["form"][0] == "err.decision_stale"
    # Without a decision (e.g. the camera is down) the guard can always open.
    kiosk.actions.override({"reason": "resident_fault", "note": "3号楼住户"})
    (opened,) = kiosk.journal.events(kind="override")
    assert opened["detail"]["for_seq"] is None


def test_the_previous_decision_leaves_the_screen_when_the_next_person_is_measured(kiosk, issue):
    first = measure(kiosk, issue("r-95"), 37.2, n_before=0)
    assert kiosk.state.current["seq"] == first["seq"] and kiosk.state.current["flagged"]
    leave(kiosk)
    kiosk.hardware.thermometer.set(26.0, 22.0)  # the next person, not yet close enough
    kiosk.hardware.camera.show(issue("r-96"))
    wait_for(lambda: kiosk.state.phase == "measuring")
    assert kiosk.state.snapshot()["current"] is None  # no red 37.7 of someone else
