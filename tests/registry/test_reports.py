"""The daily report (日报告/零报告): counts match the journal events they
came from; re-measures of one person make one case; a hand-written 37.3 is a
case; a day with none is the zero report. Events go through the real kiosk
journal and sync client into a server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from gateway.cli import main as cli_main
from sync.server import daily, registry
from sync.server.sites import add_site
from tests.registry.kiosk_day import KioskDay, passage
from tests.sync.sync_harness import ServerThread

DAY = date(2026, 2, 1)


@pytest.fixture
def server(db_url):
    srv = ServerThread(db_url).start()
    add_site(srv.db, "site-a", name="阳光小区", street_office="east-office", by="setup")
    add_site(srv.db, "site-b", name="和平小区", street_office="east-office", by="setup")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def kiosk(server, tmp_path):
    day = KioskDay(server, tmp_path / "kiosk")
    yield day
    day.close()


def test_counts_match_the_journal_and_remeasures_make_one_case(server, kiosk):
    registry.add_person(server.db, "site-a", "p-7", name="赵六", unit="3-2-101", by="tester")
    k = kiosk
    k.ledger("shifts", {"operator_id": "老李", "action": "sign_in"})
    for _ in range(5):
        k.append(passage("in", "admit", ["ok"], person="p-1"))
    for _ in range(3):
        k.append(passage("out", "admit", ["ok"], person="p-2"))
    k.append(passage("in", "deny", ["expired"], person="p-3"))
    k.append(passage("in", "deny", ["revoked", "wrong_site"], person="p-4"))
    first = k.append(passage("in", "deny", ["fever"], person="p-7", body_c=38.2, flagged=True))
    k.append(passage("in", "deny", ["fever"], person="p-7", body_c=38.0, flagged=True))  # re-measured
    k.append({"kind": "fever_ack", "gate": "east-1", "operator": "老李", "detail": {"seq": first["seq"], "note": "已送医"}})
    k.append({"kind": "override", "gate": "east-1", "direction": "in", "decision": "admit", "operator": "老李",
              "reasons": ["no_credential", "guard_override"], "detail": {"override_reason": "resident_fault", "note": "忘带"}})
    k.ledger("visitors", {"name": "访客甲", "origin": "本市", "phone": "13800000000", "address": "x", "reason": "探亲",
                          "visiting": "1-101", "temperature_c": 36.6, "special_case": 0, "filed_ref": None})
    k.ledger("visitors", {"name": "访客乙", "origin": "外省", "phone": "13800000001", "address": "y", "reason": "送货",
                          "visiting": "2-202", "temperature_c": 37.3, "special_case": 0, "filed_ref": None})
    k.ledger("staff_temperatures", {"person": "老李", "period": "morning", "temperature_c": 37.29})
    k.ledger("staff_temperatures", {"person": "小王", "period": "morning", "temperature_c": 37.4})
    assert k.sync()["pending"] == 0

    report = daily.site_daily(server.db, "site-a", DAY)
    events = k.journal.events()
    admitted = [e for e in events if e["kind"] in ("decision", "override") and e["decision"] == "admit"]
    assert report["entries"] == sum(1 for e in admitted if e["direction"] == "in") == 6
    assert report["exits"] == sum(1 for e in admitted if e["direction"] == "out") == 3
    expected_refusals = Counter(r for e in events if e["kind"] == "decision" and e["decision"] == "deny"
                                for r in e["reasons"])
    assert {r["reason"]: r["count"] for r in report["refusals"]} == dict(expected_refusals)
    assert report["refusals_total"] == sum(expected_refusals.values()) == 5
    assert next(r for r in report["refusals"] if r["reason"] == "fever")["label"] == "体温异常"
    # Two flagged readings of one person: one case, both readings, the gate's note.
    assert len(report["fever_cases"]) == 1
    case = report["fever_cases"][0]
    assert (case["person_id"], case["name"], case["unit"]) == ("p-7", "赵六", "3-2-101")
    assert sorted(case["readings"]) == [38.0, 38.2]
    assert case["gate_ack"]["operator"] == "老李" and case["gate_ack"]["note"] == "已送医"
    # 37.3 written by hand counts; 37.29 and 36.6 do not.
    assert [(h["who"], h["temperature_c"]) for h in report["hand_recorded_fevers"]] == [("访客乙", 37.3), ("小王", 37.4)]
    assert report["visitors"] == sum(1 for e in events if e["kind"] == "ledger.visitors") == 2
    assert report["zero_report"] is False

    # The next day has none of it: the explicit zero report.
    empty = daily.site_daily(server.db, "site-a", DAY + timedelta(days=1))
    assert empty["zero_report"] is True and empty["fever_cases"] == [] and empty["entries"] == 0

    summary = daily.office_daily(server.db, "east-office", DAY)
    rows = {r["site"]: r for r in summary["communities"]}
    assert rows["site-a"]["fever_cases"] == 1 and rows["site-a"]["zero_report"] is False
    assert rows["site-b"]["zero_report"] is True and rows["site-b"]["entries"] == 0
    assert summary["totals"]["entries"] == 6 and summary["zero_reports"] == 1


def test_a_hand_written_fever_alone_is_not_a_zero_report(server, kiosk):
    kiosk.ledger("visitors", {"name": "访客丙", "origin": "本市", "phone": "13800000002", "address": "z",
                              "reason": "x", "visiting": "3-303", "temperature_c": 37.3, "special_case": 0,
                              "filed_ref": None})
    kiosk.sync()
    report = daily.site_daily(server.db, "site-a", DAY)
    assert report["fever_cases"] == [] and len(report["hand_recorded_fevers"]) == 1
    assert report["zero_report"] is False


def test_returnees_and_observation_come_from_the_registry(server):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    registry.add_person(server.db, "site-a", "p-1", name="甲", by="tester")
    registry.add_person(server.db, "site-a", "p-2", name="乙", returnee=True,
                        observation_until=today + timedelta(days=13), by="tester")
    registry.set_observation(server.db, "site-a", "p-1", today + timedelta(days=13), returnee=True, by="tester")
    registry.add_person(server.db, "site-a", "p-3", name="丙", observation_until=today - timedelta(days=1), by="tester")
    report = daily.site_daily(server.db, "site-a", today)
    assert report["returnees_registered"] == ["p-1", "p-2"]
    assert [p["person_id"] for p in report["under_observation"]] == ["p-1", "p-2"]
    assert daily.site_daily(server.db, "site-a", today - timedelta(days=1))["returnees_registered"] == []


def test_cli_report_refuses_unknown_sites_and_missing_databases(server, kiosk, tmp_path, capsys):
    kiosk.append(passage("in", "admit", ["ok"], person="p-1"))
    kiosk.sync()
    db = ["--db", server.db_url]
    missing = tmp_path / "nowhere" / "registry.db"
    code = _cli(["registry", "report", "daily", "--db", f"sqlite:///{missing}", "--site", "site-a", "--date",
                 "2026-02-01"])
    assert code == 2 and "no such database file" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()
    # An SQLite file that is not a registry (a kiosk journal) is refused, unchanged.
    journal = kiosk.settings.journal.path
    before = journal.read_bytes()
    code = _cli(["registry", "report", "daily", "--db", f"sqlite:///{journal}", "--site", "site-a", "--date",
                 "2026-02-01"])
    assert code == 2 and "not a registry database" in capsys.readouterr().err
    assert journal.read_bytes() == before
    code = _cli(["registry", "report", "daily", *db, "--site", "site-zz", "--date", "2026-02-01"])
    assert code == 1 and "unknown site 'site-zz'" in capsys.readouterr().err
    out = tmp_path / "day.xlsx"
    assert _cli(["registry", "report", "daily", *db, "--site", "site-a", "--date", "2026-02-01",
                 "--format", "xlsx", "--out", str(out)]) == 0
    from openpyxl import load_workbook

    sheet = load_workbook(out)["日报告"]
    values = {row[0]: row[1] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert values["进入人次"] == 1 and values["零报告"] == "是"
    assert values["日期"].date() == DAY  # a real Excel date


def _cli(argv):
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return exc.code


def test_gate_rule_refusals_vehicles_disinfection_and_hand_fevers_match_the_journal(server, kiosk):
    """Issue 12's "counted in the report": the new reason codes with Chinese labels,
    vehicles, disinfection done and missed against the policy's times, and a
    hand-written fever that opened a case at the gate counted once."""
    from gateway.fever_flow import FeverFlow
    from gateway.screen.state import ScreenState
    from sync.server import gate_rules, site_policy

    _, errors = site_policy.publish(server.db, "site-a", {"disinfection_times": "09:00 14:00"}, by="tester")
    assert errors == {}
    k = kiosk
    for reasons in (["no_mask"], ["refused_measurement"], ["unstaffed"], ["gate_closed"], ["no_mask"]):
        k.append(passage("in", "deny", reasons, person="p-9"))
    k.append({"kind": "one_at_a_time", "gate": "east-1", "direction": "in", "decision": "deny",
              "reasons": ["one_at_a_time"]})
    k.append({"kind": "tailgate", "gate": "east-1", "direction": "in", "decision": "deny", "reasons": ["tailgate"]})
    k.append({"kind": "vehicle", "gate": "east-1", "direction": "in", "decision": "deny", "reasons": ["vehicle_outside"],
              "operator": "老李", "detail": {"plate": "京A12345", "household": None, "driver": "陌生人",
                                            "occupants": [{"name": "陌生人", "body_c": 36.5, "source": "guard"}]}})
    k.append({"kind": "vehicle", "gate": "east-1", "direction": "in", "decision": "admit", "reasons": ["ok"],
              "operator": "老李", "detail": {"plate": "京B54321", "household": "h-1", "driver": "张三",
                                            "occupants": [{"name": "张三", "body_c": 36.6, "source": "guard"},
                                                          {"name": "李四", "body_c": 36.8, "source": "guard"}]}})
    # An outside vehicle the guard let through: a gate-rule reason, but no refusal.
    k.append({"kind": "vehicle", "gate": "east-1", "direction": "out", "decision": "admit",
              "reasons": ["vehicle_exception"], "operator": "老李", "detail": {"plate": "沪C11111", "occupants": []}})
    k.ledger("disinfections", {"note": "酒精擦拭"})  # 09:0x: the 09:00 slot is done, 14:00 is missed
    # A visitor written down at 37.6: the kiosk (gateway/fever_flow.py) opens a case for it.
    row = k.ledger("visitors", {"name": "访客丁", "origin": "外省", "phone": "13800000003", "address": "w",
                                "reason": "探亲", "visiting": "1-101", "temperature_c": 37.6, "special_case": 0,
                                "filed_ref": None})
    flow = FeverFlow(k.journal, ScreenState(gate={}, rules=[], policy={}), "east-1", 37.3)
    case = flow.hand_recorded(source="visitor_form", body_c=37.6, operator="老李", name="访客丁",
                              subject=f"visitor:{row['event_seq']}", trigger_seq=row["event_seq"])
    assert case is not None
    assert k.sync()["pending"] == 0

    report = daily.site_daily(server.db, "site-a", DAY)
    events = k.journal.events()
    expected = Counter(r for e in events if e["kind"] in daily.REFUSAL_KINDS and e["decision"] == "deny"
                       for r in e["reasons"])
    assert {r["reason"]: r["count"] for r in report["refusals"]} == dict(expected)
    assert expected["no_mask"] == 2 and expected["one_at_a_time"] == 1 and expected["vehicle_outside"] == 1
    labels = {r["reason"]: r["label"] for r in report["refusals"]}
    assert labels["no_mask"] == "未佩戴口罩" and labels["refused_measurement"] == "拒绝测温"
    assert all(label != code for code, label in labels.items())  # every code has a Chinese label
    assert report["tailgates"] == 1
    assert report["vehicles"] == {"admitted_in": 1, "admitted_out": 1, "refused": 1}
    # gate_rules.gate_rule_counts is the report's refusal count, from one source (failed before:
    # it counted the admitted exception as a refusal).
    refused = {r["reason"]: r["count"] for r in report["refusals"]}
    assert gate_rules.gate_rule_counts(server.db, "site-a", DAY) == {
        **{code: refused.get(code, 0) for code in gate_rules.RULE_REASONS}, "tailgate": report["tailgates"]}
    assert report["entries"] == 0  # vehicles are counted apart from people
    assert (report["disinfection"]["done"], report["disinfection"]["missed"]) == (1, 1)
    # The visitor's fever: one case (source visitor_form), listed by hand with that case; one person.
    (fever,) = report["fever_cases"]
    assert fever["source"] == "visitor_form"
    (hand,) = report["hand_recorded_fevers"]
    assert hand["who"] == "访客丁" and hand["case_id"] == case.case_id
    assert report["fever_people"] == 1 and report["zero_report"] is False

    sheets = {title: rows for title, _headers, rows in daily.site_daily_sheets(report)}
    summary = dict(sheets["日报告"])
    assert summary["发热病例（人）"] == 1 and summary["发热人数（不重复）"] == 1 and summary["其中手工登记发热立案"] == 1
    assert (summary["消毒已完成（次）"], summary["消毒未完成（次）"]) == (1, 1)
    assert [r[2] for r in sheets["定时消毒"]] == ["已完成", "未完成"]
    assert sheets["发热病例"][0][6] == "来访登记"
    office = {r["site"]: r for r in daily.office_daily(server.db, "east-office", DAY)["communities"]}
    assert (office["site-a"]["fever_people"], office["site-a"]["disinfection_missed"]) == (1, 1)
