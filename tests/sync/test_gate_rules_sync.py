"""Gate rules reach the registry (SQLite and PostgreSQL): an unstaffed gate is
an alarm on the gates board after a sync, and clears when a guard signs in;
the day's gate-rule refusals and disinfections are countable there."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.config import load_config
from gateway.journal import Journal
from gateway.policy import Policy
from gateway.screen.state import ScreenState
from gateway.staffing import StaffingWatch
from sync.client import SyncClient
from sync.server import auth
from sync.server.gate_rules import disinfection_day, disinfections_logged, gate_rule_counts, gate_staffing
from tests.sync.sync_harness import write_kiosk_config


@pytest.fixture
def kiosk(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    auth.add_gate(server.db, "site-1", "west-2")
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", server.url, token))
    journal = Journal.open(settings.journal.path)
    yield settings, journal
    journal.close()


def sync(journal, settings):
    client = SyncClient(journal, settings)
    try:
        assert client.sync_once()["pending"] == 0
    finally:
        client.close()


def test_an_unstaffed_gate_is_an_alarm_on_the_board_after_a_sync(server, kiosk):
    settings, journal = kiosk
    state = ScreenState(gate={}, rules=[], policy={})
    clock = {"now": datetime.now(timezone.utc) - timedelta(minutes=10)}
    policy = Policy(staffing={"unstaffed_grace_min": 5, "unattended": "refuse"})
    watch = StaffingWatch(journal=journal, state=state, actions=None, gate_id=settings.gate.id,
                          policy=lambda: policy, now=lambda: clock["now"], on_status=lambda s: None)
    watch.tick()  # nobody signed in: the clock starts
    clock["now"] += timedelta(minutes=6)
    watch.tick()  # past the grace: the alarm
    sync(journal, settings)
    board = {g["gate"]: g for g in gate_staffing(server.db, "site-1")}
    assert board["east-1"]["unstaffed"] is True and board["east-1"]["unattended"] == "refuse"
    assert board["east-1"]["since"] is not None
    assert board["west-2"]["unstaffed"] is False  # a gate that never reported is not an alarm
    assert gate_staffing(server.db, "site-9") == []  # another site sees nothing

    state.set_operator({"name": "王师傅", "since": clock["now"].isoformat()})
    clock["now"] += timedelta(minutes=1)
    watch.tick()
    sync(journal, settings)
    board = {g["gate"]: g for g in gate_staffing(server.db, "site-1")}
    assert board["east-1"]["unstaffed"] is False


def test_gate_rule_refusals_and_disinfections_are_counted_for_the_day(server, kiosk):
    settings, journal = kiosk
    for reasons in (["no_mask"], ["refused_measurement", "no_reading"], ["no_mask", "fever"]):
        journal.append({"kind": "decision", "gate": settings.gate.id, "decision": "deny", "reasons": reasons,
                        "operator": "王师傅"})
    journal.append({"kind": "one_at_a_time", "gate": settings.gate.id, "decision": "deny", "reasons": ["one_at_a_time"]})
    journal.add_ledger_entry("disinfections", {"note": "酒精擦拭"}, operator="王师傅", gate=settings.gate.id)
    sync(journal, settings)
    today = datetime.now(timezone(timedelta(hours=8))).date()
    counts = gate_rule_counts(server.db, "site-1", today)
    assert (counts["no_mask"], counts["refused_measurement"], counts["one_at_a_time"]) == (2, 1, 1)
    logged = disinfections_logged(server.db, "site-1", today)
    assert list(logged) == ["east-1"] and len(logged["east-1"]) == 1

    # The report side: done and missed per gate against the policy's set times.
    now = datetime.now(timezone(timedelta(hours=8)))
    if now.hour >= 1:  # one set time just before the wipe above, one already missed on the other gate
        slot = (now - timedelta(minutes=10)).strftime("%H:%M")
        day_over = datetime.combine(today + timedelta(days=1), datetime.min.time(), now.tzinfo)
        day = disinfection_day(server.db, "site-1", today, [slot], 30, now=day_over)
        assert (day["east-1"]["done"], day["east-1"]["missed"]) == (1, 0)
        assert (day["west-2"]["done"], day["west-2"]["missed"]) == (0, 1)
