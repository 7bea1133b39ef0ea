"""Disinfection at set times (L613) and the rules posted at the gate (L605, L422)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from gateway.disinfection import BEIJING, disinfection_report, disinfection_slots, reminder
from gateway.policy import Policy, parse_policy
from gateway.posted import posted_rules

DAY = date(2026, 2, 10)
TIMES = ["08:00", "14:00", "20:00"]


def bj(hh, mm=0):
    return datetime(2026, 2, 10, hh, mm, tzinfo=BEIJING)


@pytest.mark.parametrize("now, done, statuses", [
    (bj(7, 0), [], ["upcoming", "upcoming", "upcoming"]),
    (bj(8, 10), [], ["due", "upcoming", "upcoming"]),
    (bj(8, 30), [], ["overdue", "upcoming", "upcoming"]),
    (bj(8, 30), [bj(8, 20)], ["done", "upcoming", "upcoming"]),
    (bj(8, 30), [bj(7, 45)], ["done", "upcoming", "upcoming"]),  # a little early counts
    (bj(14, 5), [], ["missed", "due", "upcoming"]),
    (bj(23, 0), [bj(8, 5), bj(20, 40)], ["done", "missed", "done"]),
    (bj(23, 0), [bj(8, 5), bj(8, 10)], ["done", "missed", "overdue"]),  # two wipes count once
])
def test_slots(now, done, statuses):
    assert [s["status"] for s in disinfection_slots(TIMES, done, DAY, now, 30)] == statuses


def test_report_counts_done_and_missed_and_the_reminder_is_the_most_urgent():
    report = disinfection_report(TIMES, [bj(8, 5).astimezone(timezone.utc)], DAY, bj(23, 59) + timedelta(minutes=1), 30)
    assert (report["done"], report["missed"]) == (1, 2)
    slots = disinfection_slots(TIMES, [], DAY, bj(14, 40), 30)
    assert reminder(slots) == {"status": "overdue", "time": "14:00"}
    assert reminder(disinfection_slots(TIMES, [bj(14, 1)], DAY, bj(14, 40), 30)) is None


def test_posted_rules_follow_the_policy_in_force():
    feb9 = Policy(duty_person="李主任", duty_phone="010-12345678", courier_dropoff={"zh": "东门快递架"})
    zh = [r["zh"] for r in posted_rules(feb9, threshold_c=37.3, gate_id="east-1")]
    assert "出入请出示通行证，配合测温；体温≥37.3℃不得进入" in zh
    assert "谢绝访客；特殊情况须登记报备" in zh and "快递外卖不得入内，请放至东门快递架" in zh
    assert "责任人：李主任　值守电话：010-12345678" in zh
    assert not any("口罩" in line for line in zh)
    level2 = parse_policy({"preset": "level-2", "closed_gates": ["east-1"], "open_entrance": {"zh": "南门"}})
    zh = [r["zh"] for r in posted_rules(level2, threshold_c=37.5, gate_id="east-1", extra=["夜间22点后请走南门"])]
    assert zh[0] == "本出入口已关闭，请走南门"
    assert "进入须佩戴口罩" in zh and "访客须测温正常并登记后进入" in zh and "体温≥37.5℃" in zh[1]
    assert zh[-1] == "夜间22点后请走南门"
    assert all(r["en"] for r in posted_rules(level2, threshold_c=37.3))
