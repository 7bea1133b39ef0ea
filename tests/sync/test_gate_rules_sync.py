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
from sync.server.boards import gate_board
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


def test_the_board_and_gate_staffing_are_one_rule(server, kiosk):
    """A guard's sign-in ends the alarm on both, before the kiosk's next tick writes `staffed`."""
    settings, journal = kiosk
    journal.append({"kind": "unstaffed", "gate": settings.gate.id, "reasons": ["unstaffed"],
                    "detail": {"since": "2026-02-10T08:00:00+08:00", "unattended": "screen"}})
    sync(journal, settings)
    assert [g.unattended for g in gate_board(server.db, "site-1")] == [True, False]
    assert [g["unstaffed"] for g in gate_staffing(server.db, "site-1")] == [True, False]
    journal.add_ledger_entry("shifts", {"operator_id": "王师傅", "action": "sign_in"}, operator="王师傅",
                             gate=settings.gate.id)
    sync(journal, settings)
    east_board = gate_board(server.db, "site-1")[0]
    east = gate_staffing(server.db, "site-1")[0]
    assert (east_board.unattended, east_board.on_duty) == (False, "王师傅")
    assert (east["unstaffed"], east["on_duty"]) == (False, "王师傅")
    journal.add_ledger_entry("shifts", {"operator_id": "王师傅", "action": "sign_out"}, operator="王师傅",
                             gate=settings.gate.id)
    sync(journal, settings)
    assert gate_board(server.db, "site-1")[0].on_duty is None and gate_staffing(server.db, "site-1")[0]["on_duty"] is None


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


def test_the_policy_page_saves_the_gate_rules_and_a_synced_gate_runs_them(server, kiosk):
    """The site policy page's gate-rule fields (issue 12), in Chinese, validated and
    published; after a sync the kiosk's policy in force has them."""
    import httpx

    from gateway.registry_copy import current_policy
    from tests.registry.conftest import PASSWORD, csrf_of

    settings, journal = kiosk
    auth.add_staff(server.db, "worker-1", role="worker", sites=["site-1"], password=PASSWORD, by="setup")
    with httpx.Client(base_url=server.url, follow_redirects=True) as browser:
        login = browser.get("/registry/login")
        browser.post("/registry/login", data={"name": "worker-1", "password": PASSWORD,
                                              "csrf_token": csrf_of(login.text), "next": "/registry/"})
        page = browser.get("/registry/sites/site-1/policy").text
        for label in ("防控等级", "必须佩戴口罩", "每班时长（小时）", "无人值守报警（分钟后）", "定时消毒时间",
                      "关闭的出入口", "开放的出入口（中文）", "车辆通道", "责任人", "值守电话"):
            assert label in page
        form = {"csrf_token": csrf_of(page), "version": "0", "visitor_mode": "register", "enforcement": "hard",
                "threshold_c": "", "offset_c": "", "posted_rules": "请出示通行证", "duty_person": "张主任",
                "duty_phone": "010-12345678", "preset": "", "mask_required": "true", "staffing_shift_h": "8",
                "staffing_handover_warning_min": "20", "staffing_unstaffed_grace_min": "3",
                "staffing_unattended": "refuse", "disinfection_times": "08:00 14:00", "disinfection_overdue_min": "45",
                "closed_gates": "west-2", "open_entrance_zh": "东门", "open_entrance_en": "the east gate",
                "vehicle_gates": "north-3"}
        bad = browser.post("/registry/sites/site-1/policy",
                           data={**form, "staffing_shift_h": "30", "disinfection_times": "8点"})
        assert bad.status_code == 422
        assert 'data-error="staffing_shift_h"' in bad.text and 'data-error="disinfection_times"' in bad.text
        assert 'value="8点"' in bad.text  # what the clerk typed stays in the form
        done = browser.post("/registry/sites/site-1/policy", data=form)
        assert done.status_code == 200 and "已发布第 1 版" in done.text
        # Choosing a level applies its settings (level 3: visitors refused, unit doors members only).
        page = browser.get("/registry/sites/site-1/policy").text
        assert browser.post("/registry/sites/site-1/policy",
                            data={**form, "csrf_token": csrf_of(page), "version": "1", "preset": "level-3",
                                  "mask_required": "false"}).status_code == 200
        browser.cookies.set("ck_lang", "en")
        english = browser.get("/registry/sites/site-1/policy").text
        assert "Shift length (hours)" in english and "Level 3: community transmission" in english
    sync(journal, settings)
    policy = current_policy(settings, journal)
    assert policy.version == 2 and policy.level == "level-3"
    assert policy.mask_required is True  # the level's, not the form's old value
    assert policy.visitor_mode == "deny" and policy.unit_doors == "members_only"
    assert policy.staffing.shift_h == 8 and policy.staffing.unstaffed_grace_min == 3
    assert policy.staffing.unattended == "refuse" and policy.staffing.handover_warning_min == 20
    assert policy.disinfection_times == ["08:00", "14:00", "20:00"]  # level 3's three a day
    assert policy.disinfection_overdue_min == 45
    assert policy.closed_gates == ["west-2"] and policy.open_entrance.zh == "东门"
    assert policy.vehicles.vehicle_gates == ["north-3"]
    assert (policy.duty_person, policy.duty_phone) == ("张主任", "010-12345678")
