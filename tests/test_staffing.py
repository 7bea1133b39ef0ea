"""Staffing (L607): shifts end, the hand-over is asked for, an unstaffed gate alarms once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.journal import Journal
from gateway.policy import Policy, StaffingRules
from gateway.screen.state import ScreenState
from gateway.staffing import StaffingWatch, staffing_status

T0 = datetime(2026, 2, 10, 0, 0, tzinfo=timezone.utc)
RULES = StaffingRules(shift_h=12, handover_warning_min=30, unstaffed_grace_min=5)


@pytest.mark.parametrize("operator, since, now, expect", [
    ({"name": "王", "since": T0.isoformat()}, None, T0 + timedelta(hours=1),
     dict(operator="王", handover_due=False, alarm=False, shift_over=False)),
    ({"name": "王", "since": T0.isoformat()}, None, T0 + timedelta(hours=11, minutes=31),
     dict(operator="王", handover_due=True, alarm=False)),
    ({"name": "王", "since": T0.isoformat()}, None, T0 + timedelta(hours=12, minutes=1),
     dict(operator=None, shift_over=True, alarm=False)),  # over, but within the grace
    ({"name": "王", "since": T0.isoformat()}, None, T0 + timedelta(hours=12, minutes=5),
     dict(operator=None, shift_over=True, alarm=True)),
    (None, T0, T0 + timedelta(minutes=4, seconds=59), dict(operator=None, alarm=False)),
    (None, T0, T0 + timedelta(minutes=5), dict(operator=None, alarm=True, refusing=False)),
])
def test_staffing_status_table(operator, since, now, expect):
    status = staffing_status(operator, since, now, RULES)
    for key, value in expect.items():
        assert getattr(status, key) == value, key


def test_refuse_mode_refuses_only_once_the_alarm_is_on():
    rules = StaffingRules(unstaffed_grace_min=5, unattended="refuse")
    assert not staffing_status(None, T0, T0 + timedelta(minutes=1), rules).refusing
    assert staffing_status(None, T0, T0 + timedelta(minutes=6), rules).refusing


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_watch_raises_one_alarm_then_a_staffed_event_and_ends_a_lapsed_shift(tmp_path):
    journal = Journal.open(tmp_path / "j.db")
    state = ScreenState(gate={}, rules=[], policy={})
    clock = Clock(T0)
    seen = []
    policy = Policy(staffing={"unstaffed_grace_min": 5, "unattended": "refuse"})
    watch = StaffingWatch(journal=journal, state=state, actions=None, gate_id="east-1", policy=lambda: policy,
                          now=clock, on_status=seen.append)
    watch.tick()
    clock.now += timedelta(minutes=6)
    watch.tick()
    watch.tick()  # still unstaffed: no second alarm
    (alarm,) = journal.events(kind="unstaffed")
    assert alarm["gate"] == "east-1" and alarm["reasons"] == ["unstaffed"]
    assert alarm["detail"] == {"since": T0.isoformat(), "unattended": "refuse"}
    assert seen[-1].refusing
    # A restart does not repeat the alarm.
    journal.close()
    journal = Journal.open(tmp_path / "j.db")
    watch.journal = journal
    watch.tick()
    assert len(journal.events(kind="unstaffed")) == 1
    # A guard signs in: a staffed event ends the spell.
    state.set_operator({"name": "王师傅", "since": clock.now.isoformat()})
    watch.tick()
    (staffed,) = journal.events(kind="staffed")
    assert staffed["operator"] == "王师傅" and staffed["detail"]["alarm_seq"] == alarm["seq"]
    assert not seen[-1].alarm
    # 12 h later nobody took over: the sign-in lapses, logged in the shift ledger.
    clock.now += timedelta(hours=12, minutes=1)
    watch.tick()
    assert state.operator is None
    assert journal.ledger("shifts")[0]["action"] == "shift_ended"
    clock.now += timedelta(minutes=5)
    watch.tick()
    assert len(journal.events(kind="unstaffed")) == 2
    journal.close()
