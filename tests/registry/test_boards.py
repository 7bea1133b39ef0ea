"""The boards show what the gates uploaded: gates (online, duty, the
unattended alarm), fever cases (the gate's acknowledgement, staff
follow-up), ledgers by day with CSV and XLSX exports; and the API docs load
with no outside address."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from sync.server import auth, boards, registry
from sync.server.labels import REASONS
from sync.server.sites import add_site
from tests.registry.conftest import PASSWORD, csrf_of
from tests.registry.kiosk_day import KioskDay, passage
from tests.sync.sync_harness import ServerThread


@pytest.fixture
def server(db_url):
    srv = ServerThread(db_url).start()
    add_site(srv.db, "site-a", name="阳光小区", street_office="east-office", by="setup")
    auth.add_staff(srv.db, "worker-a", role="worker", sites=["site-a"], password=PASSWORD, by="setup")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def kiosk(server, tmp_path):
    day = KioskDay(server, tmp_path / "kiosk", start=datetime.now(timezone.utc) - timedelta(hours=1))
    yield day
    day.close()


@pytest.fixture
def browser_like(server):
    import httpx

    client = httpx.Client(base_url=server.url, follow_redirects=True)
    form = client.get("/registry/login")
    r = client.post("/registry/login", data={"name": "worker-a", "password": PASSWORD,
                                             "csrf_token": csrf_of(form.text), "next": "/registry/"})
    assert r.status_code == 200
    yield client
    client.close()


def test_gate_board_shows_duty_then_the_unattended_alarm(server, kiosk, browser_like):
    auth.add_gate(server.db, "site-a", "west-2")  # enrolled, never synced
    kiosk.ledger("shifts", {"operator_id": "老李", "action": "sign_in"})
    kiosk.sync()
    rows = {g.name: g for g in boards.gate_board(server.db, "site-a")}
    assert rows["east-1"].online and rows["east-1"].on_duty == "老李" and not rows["east-1"].unattended
    assert not rows["west-2"].online and rows["west-2"].last_contact is None
    page = browser_like.get("/registry/sites/site-a/gates").text
    assert "老李" in page and "在线" in page and "离线" in page and "从未" in page
    assert '<meta http-equiv="refresh" content="60">' in page  # a board left open stays current
    kiosk.append({"kind": "unstaffed", "gate": "east-1", "detail": {"since_s": 300}})
    kiosk.sync()
    page = browser_like.get("/registry/sites/site-a/gates").text
    assert re.search(r'class="alarm" role="alert">无人值守', page)
    # Signing in again clears it.
    kiosk.ledger("shifts", {"operator_id": "小王", "action": "sign_in"})
    kiosk.sync()
    assert boards.gate_board(server.db, "site-a")[0].on_duty == "小王"
    assert not boards.gate_board(server.db, "site-a")[0].unattended
    # A gate with nothing to upload still reads the registry: it stays online.
    import httpx

    _, token = auth.add_gate(server.db, "site-a", "north-3")
    httpx.get(f"{server.url}/api/v1/sites/site-a/registry", headers={"Authorization": f"Bearer {token}"})
    server.app.state.contacts.flush(server.db)  # the notify worker's job every few seconds
    north = {g.name: g for g in boards.gate_board(server.db, "site-a")}["north-3"]
    assert north.online and north.last_upload is None and north.last_contact is not None
    # A gate that has not been heard from for a while is offline.
    later = datetime.now(timezone.utc) + boards.ONLINE_WITHIN + timedelta(seconds=5)
    assert not boards.gate_board(server.db, "site-a", now=later)[0].online



def test_gate_board_shows_the_kiosks_device_health_and_backlog(server, kiosk, browser_like):
    """The kiosk's `health` event (gateway/health_report.py) reaches the board after a sync."""
    from gateway import health as healthmod
    from gateway.health_report import HealthReporter

    page = browser_like.get("/registry/sites/site-a/gates").text
    assert "未上报" in page  # nothing reported yet
    for _ in range(3):
        kiosk.append(passage("in", "admit", []))
    clock = {"t": 100.0}
    reporter = HealthReporter(kiosk.journal, "east-1", start_after_s=0, monotonic=lambda: clock["t"])
    reporter.tick({"thermometer": healthmod.device(True, "", "health.thermometer.fault"),
                   "camera": healthmod.device(False, "no frame for 5 s", "health.camera.fault"),
                   "sync": healthmod.sync(True, 3, None)})
    assert kiosk.sync()["pending"] == 0
    (row,) = boards.gate_board(server.db, "site-a")
    assert row.health == {"thermometer": "ok", "camera": "fault", "sync": "ok"}
    assert row.backlog == 3  # the three passages were waiting when the kiosk reported
    page = browser_like.get("/registry/sites/site-a/gates").text
    assert re.search(r'class="problem" data-device="camera">摄像头: 故障', page)
    assert re.search(r'data-device="thermometer">测温仪: 正常', page)
    assert re.search(r'class="num backlog">3 条', page)
    browser_like.cookies.set("ck_lang", "en")
    english = browser_like.get("/registry/sites/site-a/gates").text
    assert "camera: fault" in english and "3 events" in english

def test_fever_board_shows_the_gate_ack_and_takes_a_follow_up(server, kiosk, browser_like):
    registry.add_person(server.db, "site-a", "p-7", name="赵六", unit="3-2-101", by="tester")
    flagged = kiosk.append(passage("in", "deny", ["fever"], person="p-7", body_c=38.3, flagged=True))
    kiosk.append({"kind": "fever_ack", "gate": "east-1", "operator": "老李", "detail": {"seq": flagged["seq"],
                                                                                         "note": "已引导至发热门诊"}})
    kiosk.sync()
    page = browser_like.get("/registry/sites/site-a/fevers").text
    assert "赵六" in page and "3-2-101" in page and "38.3" in page and "老李: 已引导至发热门诊" in page
    assert "待处理" in page
    alert_id = int(re.search(r'data-alert="(\d+)"', page).group(1))
    token = csrf_of(page)
    browser_like.post(f"/registry/sites/site-a/fevers/{alert_id}/followup",
                      data={"note": "社区医生已电话随访", "csrf_token": token})
    page = browser_like.post(f"/registry/sites/site-a/fevers/{alert_id}/ack", data={"csrf_token": token}).text
    assert "worker-a: 社区医生已电话随访" in page and "已处理：worker-a" in page
    assert registry.open_alerts(server.db, "site-a") == []


def test_ledgers_filter_by_day_and_export_csv_and_xlsx(server, kiosk, browser_like):
    kiosk.ledger("visitors", {"name": "访客乙", "origin": "外省", "phone": "13800000001", "address": "y",
                              "reason": "送货", "visiting": "2-202", "temperature_c": 36.8, "special_case": 0,
                              "filed_ref": None})
    kiosk.ledger("disinfections", {"note": "东门喷洒"})
    kiosk.sync()
    from zoneinfo import ZoneInfo

    day = kiosk.clock.wall.astimezone(ZoneInfo("Asia/Shanghai")).date()
    page = browser_like.get(f"/registry/sites/site-a/ledgers?ledger=visitors&day={day}").text
    assert "访客乙" in page and "送货" in page
    other = browser_like.get(f"/registry/sites/site-a/ledgers?ledger=visitors&day={day - timedelta(days=1)}").text
    assert "访客乙" not in other and "当天没有记录" in other
    r = browser_like.get(f"/registry/sites/site-a/ledgers/visitors.csv?day={day}")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["时间", "闸机", "姓名"] and rows[1][2] == "访客乙"
    r = browser_like.get(f"/registry/sites/site-a/ledgers/disinfections.xlsx?day={day}")
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert [c.value for c in sheet[1]] == ["时间", "闸机", "备注", "登记人"]
    assert isinstance(sheet["A2"].value, datetime) and sheet["C2"].value == "东门喷洒" and sheet["D2"].value == "老李"


def test_the_vehicle_ledger_is_on_the_ledgers_board_and_exports(server, kiosk, browser_like):
    """车辆台账 (L424): plate, driver, occupants with temperatures, direction, time, operator."""
    from zoneinfo import ZoneInfo

    from gateway.decision import GateMoment
    from gateway.policy import Policy
    from gateway.vehicles import Occupant, VehicleException, decide_vehicle

    moment = GateMoment(site_id="site-a", direction="in", now=kiosk.clock.wall, mono_s=0.0, gate_id="east-1")
    decision, detail = decide_vehicle(None, "京A12345", [Occupant(36.6, "王五"), Occupant(37.5, "赵六")], Policy(),
                                      moment, threshold_c=37.3, exception=VehicleException("老李", "送医"))
    kiosk.append({"kind": "vehicle", "gate": "east-1", "direction": "in", "decision": decision.decision,
                  "reasons": decision.reasons, "operator": "老李", "detail": detail})
    kiosk.sync()
    day = kiosk.clock.wall.astimezone(ZoneInfo("Asia/Shanghai")).date()
    (row,) = boards.ledger_rows(server.db, "site-a", "vehicles", day)
    assert (row["plate"], row["driver"], row["occupants"]) == ("京A12345", "王五", "王五 36.6; 赵六 37.5")
    assert (row["max_body_c"], row["direction"], row["operator"], row["decision"]) == (37.5, "in", "老李", "deny")
    page = browser_like.get(f"/registry/sites/site-a/ledgers?ledger=vehicles&day={day}").text
    assert "车辆台账" in page and "京A12345" in page and "赵六 37.5" in page
    rows = list(csv.reader(io.StringIO(browser_like.get(
        f"/registry/sites/site-a/ledgers/vehicles.csv?day={day}").content.decode("utf-8-sig"))))
    assert rows[0][:6] == ["时间", "闸机", "车牌号", "户", "驾驶人", "车内人员及体温(°C)"] and rows[1][2] == "京A12345"
    sheet = load_workbook(io.BytesIO(browser_like.get(
        f"/registry/sites/site-a/ledgers/vehicles.xlsx?day={day}").content)).active
    assert isinstance(sheet["A2"].value, datetime) and sheet["F2"].value == "王五 36.6; 赵六 37.5"
    # Words, not codes, in the page's language (failed before: "in", "deny", "fever" in every export).
    codes = {"direction": row["direction"], "decision": row["decision"], "reasons": row["reasons"]}
    assert codes["reasons"] and all(code in REASONS for code in codes["reasons"].split(", "))
    zh_words = dict(zip(rows[0][7:10], rows[1][7:10]))
    assert zh_words["方向"] == "进入" and zh_words["结果"] == "拒绝"
    assert zh_words["原因"] == "、".join(REASONS[c][0] for c in codes["reasons"].split(", "))
    assert sheet["I2"].value == "拒绝" and "拒绝" in browser_like.get(
        f"/registry/sites/site-a/ledgers?ledger=vehicles&day={day}").text
    browser_like.cookies.set("ck_lang", "en")
    english = list(csv.reader(io.StringIO(browser_like.get(
        f"/registry/sites/site-a/ledgers/vehicles.csv?day={day}").content.decode("utf-8-sig"))))
    en_words = dict(zip(english[0], english[1]))
    assert (en_words["Direction"], en_words["Decision"]) == ("In", "Refused")
    assert en_words["Reasons"] == ", ".join(REASONS[c][1] for c in codes["reasons"].split(", "))


def test_api_docs_load_with_no_outside_address(server):
    import httpx

    page = httpx.get(f"{server.url}/api/docs").text
    assert "swagger-ui-bundle.js" in page
    assert not re.search(r'(src|href)="https?://', page)
    assert httpx.get(f"{server.url}/api/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(f"{server.url}/api/docs/assets/swagger-ui.css").status_code == 200
    # The staff pages' own assets are served from the package too.
    assert "body" in httpx.get(f"{server.url}/registry/static/registry.css").text


@pytest.mark.parametrize("row, readings, count, ack", [
    # An alert from a kiosk without fever cases: one flagged reading.
    ({"body_c": 38.2}, [38.2], 1, None),
    # A fever case: first reading, the highest of 3, closed at the gate.
    ({"body_c": 37.6, "max_c": 38.4, "readings": 3, "status": "closed", "outcome": "referred",
      "gate_operator": "老李", "note": "送发热门诊", "clinical_c": 38.1, "closed_at": None},
     [37.6, 38.4], 3, {"operator": "老李", "note": "送发热门诊", "outcome": "referred", "clinical_c": 38.1,
                       "time": None}),
    # An open case with one reading: no acknowledgement from the gate yet.
    ({"body_c": 37.5, "max_c": 37.5, "readings": 1, "status": "open", "outcome": None, "gate_operator": None,
      "note": None}, [37.5], 1, None),
])
def test_fever_board_reads_alert_rows_and_fever_case_rows(row, readings, count, ack):
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from sync.server import case_list

    columns = dict.fromkeys(("max_c", "readings", "status", "outcome", "gate_operator", "note", "clinical_c",
                             "closed_at", "acknowledged_at", "acknowledged_by", "case_id", "person_id", "pass_id"))
    alert = SimpleNamespace(**{**columns, "id": 1, "gate": "east-1", **row})
    case = case_list.new_case(alert, datetime(2026, 2, 1, tzinfo=timezone.utc), {})
    case_list.add_row(case, alert, ZoneInfo("Asia/Shanghai"), [])
    case = case_list.finish(case)
    assert (case["readings"], case["reading_count"], case["gate_ack"]) == (readings, count, ack)
