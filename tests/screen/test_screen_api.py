"""The guard screen's pages and actions over HTTP (in-process client)."""

from __future__ import annotations

import json
import re

import pytest


def initial_snapshot(html: str) -> dict:
    return json.loads(re.search(r"window\.INITIAL = (.*);\n", html).group(1))


def post(client, action, data):
    return client.post(f"/api/{action}", json=data)


# --- pages and access ------------------------------------------------------------------


def test_page_is_chinese_by_default_and_switches_to_english(local):
    page = local.get("/")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text and "等待通行" in page.text and "公示" in page.text
    english = local.get("/?lang=en")
    assert '<html lang="en">' in english.text and "Waiting" in english.text
    assert local.get("/").text.count('lang="en"') == 1  # the choice is remembered (cookie)


def test_lan_access_needs_the_pin_and_locks_out_guessing(lan):
    assert lan.get("/").status_code == 303 and lan.get("/").headers["location"] == "/login"
    assert lan.get("/api/state").status_code == 401
    assert lan.get("/camera.jpg").status_code == 401
    assert lan.post("/api/signin", json={"name": "x"}).status_code == 401
    bad = lan.post("/login", data={"pin": "000000"})
    assert bad.headers["location"] == "/login?error=bad"
    for _ in range(5):
        lan.post("/login", data={"pin": "111111"})
    locked = lan.post("/login", data={"pin": "246810"})  # even the right PIN, while locked out
    assert locked.headers["location"] == "/login?error=locked"


def test_lan_access_with_the_right_pin(kiosk_app):
    from fastapi.testclient import TestClient

    with TestClient(kiosk_app.screen, client=("10.0.0.7", 40000), follow_redirects=False) as lan:
        ok = lan.post("/login", data={"pin": "246810"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        assert lan.get("/").status_code == 200
        assert lan.get("/api/state").json()["gate"]["id"] == "east-1"


def test_lan_access_is_refused_when_no_pin_is_configured(screen_settings, issue, tmp_path):
    from fastapi.testclient import TestClient

    from gateway.config import load_config
    from gateway.loop import build_app

    path = tmp_path / "nopin.toml"
    path.write_text(screen_settings.source.read_text().replace('pin = "246810"', ""), encoding="utf-8")
    app = build_app(load_config(path))
    try:
        with TestClient(app.screen, client=("192.168.1.20", 1), follow_redirects=False) as lan:
            assert lan.get("/").status_code == 303
            login = lan.get("/login")
            assert "此设备未设置 PIN 码" in login.text
            assert lan.get("/api/state").status_code == 401
    finally:
        app.stop()


def test_public_side_never_shows_readings_names_or_reasons(kiosk_app, local):
    kiosk_app.state.show_decision({
        "seq": 9, "time": "2026-11-30T08:00:00+00:00", "kind": "decision", "decision": "deny", "flagged": True,
        "reasons": ["fever"], "person_id": "r-1", "person": {"name": "孙强", "unit": "5-1-201"},
        "reading": {"body_c": 37.8}, "guard_text": {"zh": "体温异常：请复测", "en": "x"},
        "public_text": {"zh": "请到工作人员处", "en": "Please see the staff"},
    })
    public = local.get("/api/state?view=public").json()
    text = json.dumps(public, ensure_ascii=False)
    assert public["current"]["public_text"]["zh"] == "请到工作人员处"
    for secret in ("37.8", "孙强", "5-1-201", "r-1", "fever", "体温异常"):
        assert secret not in text
    page = local.get("/public").text
    assert "37.8" not in page and "孙强" not in page


def test_names_cannot_break_out_of_the_page_script(local):
    post(local, "signin", {"name": "</script><script>alert(1)</script>", "pin": "246810"})
    page = local.get("/").text
    assert "</script><script>alert(1)" not in page
    assert initial_snapshot(page)["operator"]["name"] == "</script><script>alert(1)</script>"


def test_camera_jpeg_is_the_newest_frame(kiosk_app, local):
    assert local.get("/camera.jpg").status_code == 204  # camera not started yet: no picture
    kiosk_app.hardware.camera.start()
    kiosk_app.hardware.camera.wait_frame(0, timeout=5)
    image = local.get("/camera.jpg")
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"


def test_actions_need_json(local):
    assert local.post("/api/signin", data={"name": "a"}).status_code == 415
    assert local.post("/api/nothing", json={}).status_code == 404


# --- guard actions ---------------------------------------------------------------------


def test_actions_need_a_guard_signed_in_with_the_pin(kiosk_app, local):
    refused = post(local, "disinfection", {})
    assert refused.status_code == 403 and refused.json()["errors"]["form"]["key"] == "shift.need"
    wrong = post(local, "signin", {"name": "李四", "pin": "1"})
    assert wrong.status_code == 422 and wrong.json()["errors"]["pin"]["key"] == "err.pin"
    missing = post(local, "signin", {"name": " ", "pin": "246810"})
    assert missing.json()["errors"]["name"]["key"] == "err.required"
    assert post(local, "signin", {"name": "李四", "pin": "246810"}).json()["ok"]
    (row,) = kiosk_app.journal.ledger("shifts")
    assert (row["operator_id"], row["action"], row["operator"]) == ("李四", "sign_in", "李四")
    assert kiosk_app.state.snapshot()["operator"]["name"] == "李四"


def test_the_next_guard_signing_in_signs_the_last_one_out(kiosk_app, local):
    post(local, "signin", {"name": "早班张", "pin": "246810"})
    post(local, "signin", {"name": "晚班王", "pin": "246810"})
    rows = [(r["operator_id"], r["action"]) for r in reversed(kiosk_app.journal.ledger("shifts"))]
    assert rows == [("早班张", "sign_in"), ("早班张", "sign_out"), ("晚班王", "sign_in")]


@pytest.fixture
def guard(local):
    assert post(local, "signin", {"name": "王保安", "pin": "246810"}).json()["ok"]
    return local


GOOD_VISITOR = {
    "name": "刘晓明", "origin": "河北保定", "phone": "13812345678", "address": "朝阳区幸福里 3 号",
    "reason": "探望父母", "visiting": "3-2-601", "temperature_c": "36.5",
}


@pytest.mark.parametrize("field, value, key", [
    ("name", "", "err.required"),
    ("name", "刘123", "err.name"),
    ("phone", "12345", "err.phone"),
    ("phone", "23812345678", "err.phone"),
    ("temperature_c", "hot", "err.temperature"),
    ("temperature_c", "45", "err.temperature"),
    ("origin", "x" * 41, "err.too_long"),
    ("visiting", "", "err.required"),
])
def test_visitor_form_rejects_bad_input_with_a_message_per_field(kiosk_app, guard, field, value, key):
    reply = post(guard, "visitor", {**GOOD_VISITOR, field: value})
    assert reply.status_code == 422
    errors = reply.json()["errors"]
    assert errors[field]["key"] == key and errors["form"]["key"] == "err.form"
    assert kiosk_app.journal.ledger("visitors") == []


def test_visitor_registration_is_recorded_with_the_operator(kiosk_app, guard):
    reply = post(guard, "visitor", {**GOOD_VISITOR, "phone": "138 1234 5678"})
    assert reply.json()["ok"]
    (row,) = kiosk_app.journal.ledger("visitors")
    assert row["name"] == "刘晓明" and row["phone"] == "13812345678" and row["operator"] == "王保安"
    assert row["temperature_c"] == 36.5 and row["time"]
    (event,) = kiosk_app.journal.events(kind="ledger.visitors")
    assert event["operator"] == "王保安" and event["detail"]["origin"] == "河北保定"
    assert kiosk_app.journal.events(kind="decision") == []  # registered, not admitted


def test_admitting_a_visitor_needs_a_filed_case_under_the_deny_rule(kiosk_app, guard):
    refused = post(guard, "visitor", {**GOOD_VISITOR, "admit": True})
    assert refused.json()["errors"]["filed_ref"]["key"] == "err.filed_ref"
    feverish = post(guard, "visitor", {**GOOD_VISITOR, "admit": True, "special_case": True,
                                       "filed_ref": "JD-2026-017", "temperature_c": "37.4"})
    assert feverish.json()["errors"]["temperature_c"]["key"] == "err.fever_no_admit"
    ok = post(guard, "visitor", {**GOOD_VISITOR, "admit": True, "special_case": True, "filed_ref": "JD-2026-017"})
    assert ok.json()["ok"]
    (decision,) = kiosk_app.journal.events(kind="decision")
    assert decision["decision"] == "admit" and decision["operator"] == "王保安"
    assert decision["body_c"] == 36.5


def test_override_asks_for_a_reason_and_logs_the_operator(kiosk_app, guard):
    assert post(guard, "override", {}).json()["errors"]["reason"]["key"] == "err.reason"
    assert post(guard, "override", {"reason": "other"}).json()["errors"]["note"]["key"] == "err.note_other"
    assert post(guard, "override", {"reason": "emergency", "note": "120 急救车"}).json()["ok"]
    (event,) = kiosk_app.journal.events(kind="override")
    assert event["operator"] == "王保安" and event["decision"] == "admit"
    assert "guard_override" in event["reasons"]
    assert event["detail"]["override_reason"] == "emergency" and event["detail"]["note"] == "120 急救车"
    assert any(s.state for s in kiosk_app.relay_pin.states)


def test_staff_temperature_and_disinfection_are_recorded(kiosk_app, guard):
    assert post(guard, "staff-temperature", {"period": "noon", "temperature_c": "36.4"}).json()["errors"]["period"]
    assert post(guard, "staff-temperature", {"period": "morning", "temperature_c": "36.4"}).json()["ok"]
    (temp,) = kiosk_app.journal.ledger("staff_temperatures")
    assert (temp["person"], temp["period"], temp["temperature_c"], temp["operator"]) == ("王保安", "morning", 36.4, "王保安")
    assert post(guard, "disinfection", {"note": "酒精擦拭测温窗口"}).json()["ok"]
    (dis,) = kiosk_app.journal.ledger("disinfections")
    assert dis["note"] == "酒精擦拭测温窗口" and dis["operator"] == "王保安"


def open_case(app, person="r-41", body_c=37.8):
    """A fever case as the loop opens it (the decision, then the case event)."""
    from gateway.fever_case import subject_of

    flow = app.checkpoint.fever
    subject = subject_of(person_id=person)
    case_id, new = flow.book.plan_reading(subject, body_c, True)
    event = app.journal.append({"kind": "decision", "decision": "deny", "flagged": True, "reasons": ["fever"],
                                "person_id": person, "body_c": body_c, "detail": {"case_id": case_id}})
    fields = flow.book.reading_event(case_id, new, subject=subject, source="infrared", trigger_seq=event["seq"],
                                     body_c=body_c, flagged=True, person_id=person)
    flow._append(fields)
    return case_id


def test_the_case_dialog_records_the_clinical_reading_and_the_decision(kiosk_app, guard):
    case_id = open_case(kiosk_app)
    (alert,) = guard.get("/api/state").json()["alerts"]
    assert alert["case_id"] == case_id and alert["alarm"] and alert["max_c"] == 37.8
    assert post(guard, "fever-case", {"case_id": case_id}).json()["errors"]["clinical_c"]["key"] == "err.case_nothing"
    assert post(guard, "fever-case", {"case_id": "nope", "clinical_c": "36.5"}).json()["errors"]["form"]["key"] == \
        "err.unknown_case"
    # Admission needs a normal clinical reading; referral needs a note.
    errors = post(guard, "fever-case", {"case_id": case_id, "outcome": "admitted"}).json()["errors"]
    assert errors["clinical_c"]["key"] == "err.case_needs_clinical"
    errors = post(guard, "fever-case", {"case_id": case_id, "outcome": "referred"}).json()["errors"]
    assert errors["note"]["key"] == "err.required"
    assert post(guard, "fever-case", {"case_id": case_id, "clinical_c": "37.9"}).json()["ok"]
    (alert,) = guard.get("/api/state").json()["alerts"]
    assert alert["clinical_c"] == 37.9 and not alert["alarm"]  # the clinical reading silences the alarm
    errors = post(guard, "fever-case", {"case_id": case_id, "outcome": "admitted"}).json()["errors"]
    assert errors["clinical_c"]["key"] == "err.case_clinical_fever"
    assert post(guard, "fever-case", {"case_id": case_id, "outcome": "referred",
                                      "note": "已引导至发热门诊"}).json()["ok"]
    assert guard.get("/api/state").json()["alerts"] == []
    (clinical,) = kiosk_app.journal.events(kind="fever_case.clinical")
    (closed,) = kiosk_app.journal.events(kind="fever_case.closed")
    assert clinical["operator"] == closed["operator"] == "王保安"
    assert closed["detail"]["outcome"] == "referred" and closed["detail"]["clinical_c"] == 37.9
    assert closed["detail"]["note"] == "已引导至发热门诊" and closed["detail"]["case_id"] == case_id


def test_open_fever_cases_survive_a_restart(screen_settings, issue):
    from gateway.loop import build_app

    app = build_app(screen_settings)
    try:
        app.checkpoint.view_gone_s = 0.25
        app.hardware.thermometer.set(37.3, 22.0)
        app.start()
        app.hardware.camera.show(issue("r-9"))
        import time
        deadline = time.monotonic() + 5
        while not app.state.alerts and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        app.stop()
    restarted = build_app(screen_settings)
    try:
        (alert,) = restarted.state.snapshot()["alerts"]
        assert alert["person_id"] == "r-9" and alert["max_c"] == pytest.approx(37.8, abs=0.02) and alert["alarm"]
        assert restarted.state.snapshot()["counts"]["flagged"] == 1
    finally:
        restarted.stop()


def test_a_flagged_decision_on_screen_is_no_alert_of_its_own(kiosk_app):
    """Alerts and the fever count come from the cases, so an override or a re-measure adds neither."""
    state = kiosk_app.state
    state.show_decision({"seq": 7, "time": "t", "kind": "decision", "decision": "deny", "flagged": True,
                         "reasons": ["fever"]})
    state.show_decision({"seq": 8, "time": "t", "kind": "override", "decision": "admit", "flagged": True,
                         "reasons": ["fever", "guard_override"], "operator": "王保安"})
    assert state.snapshot()["alerts"] == []
    assert state.snapshot()["counts"] == {"admit": 0, "deny": 1, "flagged": 0}
