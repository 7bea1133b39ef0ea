"""The guard's gate-rule actions in real headless Chromium at 800x480 (the
official 7-inch Pi display): no mask, refused measurement, a vehicle with two
occupants one at 37.5, the shift hand-over, disinfection due and overdue."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.screen.test_screen_browser import CHROMIUM, shot, sign_in
from tests.screen.test_screen_layout import assert_no_vertical_scroll, boxes_outside

pytestmark = pytest.mark.browser
BEIJING = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def browser():
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup --dev installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture
def small(browser, served):
    app, url = served
    context = browser.new_context(viewport={"width": 800, "height": 480}, locale="zh-CN")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/", wait_until="domcontentloaded")
    page.wait_for_selector("#live:not(.down)")
    yield app, page
    context.close()
    assert errors == [], errors


_version = [10]


def push_policy(app, **fields):
    """The registry pushes a newer policy for the site; the kiosk takes it at once."""
    _version[0] += 1
    payload = {"version": _version[0], "disinfection_times": [], **fields}
    app.journal.apply_registry_page([{"entity": "policy", "entity_id": "site-1", "op": "upsert",
                                      "change_seq": _version[0], "payload": payload}], f"c{_version[0]}")
    app._refresh_registry()
    app.gate_watch.tick()


def on_screen(page, *selectors):
    assert boxes_outside(page, list(selectors)) == {}
    assert_no_vertical_scroll(page)


def test_no_mask_and_refused_measurement_are_one_tap_refusals(small, issue):
    app, page = small
    assert page.is_hidden("#no-mask-btn")  # the default policy does not require masks
    push_policy(app, mask_required=True)
    page.wait_for_selector("#no-mask-btn:visible")
    sign_in(page)
    app.hardware.thermometer.set(25.0, 22.0)  # not at the thermometer yet
    app.hardware.camera.show(issue("r-501"))
    page.wait_for_selector("#decision.measuring")
    on_screen(page, "#no-mask-btn")
    page.click("#no-mask-btn")  # one tap
    page.wait_for_selector("#decision.deny")
    assert "未戴口罩" in page.inner_text("#decision") or "未佩戴口罩" in page.inner_text("#decision")
    (row,) = app.journal.events(kind="decision")
    assert (row["person_id"], row["decision"], row["operator"]) == ("r-501", "deny", "王保安")
    assert row["reasons"][0] == "no_mask" and row["detail"]["guard_refusal"] == "no_mask"
    shot(page, "rules-no-mask-800x480.png")

    app.hardware.camera.show(None)
    time.sleep(0.6)
    app.hardware.camera.show(issue("r-502"))
    page.wait_for_selector("#decision.measuring")
    page.click("nav.actions .more")  # on the small panel it is under "More"
    page.click("#more-modal [data-same=refuse-measure-btn]")
    page.wait_for_function("document.querySelectorAll('#recent li').length >= 2")
    rows = app.journal.events(kind="decision")
    assert rows[-1]["person_id"] == "r-502" and rows[-1]["reasons"] == ["refused_measurement", "no_reading"]
    assert "拒绝测温" in page.inner_text("#recent")


def test_vehicle_with_two_occupants_one_at_37_5_is_stopped(small, issue, screen_settings):
    from gateway.passes import load_private_key
    from gateway.vehicles import issue_vehicle_pass

    app, page = small
    sign_in(page)
    key = load_private_key(screen_settings.passes.issuer_keys[0].with_name("issuer.key"))
    now = datetime.now(timezone.utc)
    text = issue_vehicle_pass(key, plate="京A12345", household="h-8-1-401", site_id="site-1",
                              valid_from=now - timedelta(days=1), valid_to=now + timedelta(days=30))
    app.hardware.camera.show(text)  # the driver holds the vehicle pass up to the camera
    page.wait_for_function("document.getElementById('notice').textContent.includes('京A12345')")
    push_policy(app, vehicles={"vehicle_gates": ["east-1"]})  # this gate is a vehicle lane
    page.wait_for_selector("nav.actions [data-modal=vehicle-modal]:visible")  # in the bar: one tap
    on_screen(page, "nav.actions [data-modal=vehicle-modal]")
    assert page.is_hidden("nav.actions [data-modal=visitor-modal]")
    page.click("nav.actions [data-modal=vehicle-modal]")
    assert page.input_value("#vehicle-modal input[name=plate]") == "京A12345"  # from the scanned pass
    page.fill("#vehicle-modal input[name=occupant_0_name]", "张伟")
    app.hardware.thermometer.set(36.1, 22.0)  # the driver leans out to the thermometer: 36.1 + 0.5
    time.sleep(0.4)
    page.click("#vehicle-read-btn")
    page.wait_for_function("document.querySelector('#vehicle-modal input[name=occupant_0_c]').value === '36.6'")
    page.fill("#vehicle-modal input[name=occupant_1_c]", "37.5")  # the passenger, by the guard's handheld
    on_screen(page, "#vehicle-modal .modal-buttons button[type=submit]", "#vehicle-modal h2")
    shot(page, "rules-vehicle-800x480.png")
    page.click("#vehicle-modal button[type=submit]")
    page.wait_for_selector("#decision.fever")
    (row,) = app.journal.events(kind="vehicle")
    assert (row["decision"], row["reasons"], row["flagged"]) == ("deny", ["fever"], True)
    assert row["pass_id"] == "BJ-A12345" and row["person_id"] == "h-8-1-401" and row["operator"] == "王保安"
    assert [(o["body_c"], o["source"]) for o in row["detail"]["occupants"]] == [(36.6, "thermometer"), (37.5, "guard")]
    assert row["detail"]["driver"] == "张伟" and row["direction"] == "in"
    assert app.relay_pin.state is False  # the barrier stayed down
    page.wait_for_selector("#fever-banner:not([hidden])")
    (case,) = app.journal.events(kind="fever_case.opened")  # the occupant at 37.5 is a fever case
    assert case["detail"]["source"] == "vehicle_form" and case["detail"]["body_c"] == 37.5


def test_shift_hand_over_and_nobody_on_duty(small):
    app, page = small
    push_policy(app, staffing={"unstaffed_grace_min": 0, "shift_h": 12, "handover_warning_min": 30})
    page.wait_for_selector("#shift-bar.urgent:visible")  # nobody signed in: the unstaffed alarm
    assert "无人值守" in page.inner_text("#shift-bar")
    on_screen(page, "#shift-bar button", "nav.actions")
    sign_in(page)
    app.gate_watch.tick()
    page.wait_for_selector("#shift-bar", state="hidden")
    assert [e["kind"] for e in app.journal.events() if e["kind"] in ("unstaffed", "staffed")] == ["unstaffed", "staffed"]
    # 11 h 45 min into the shift: the screen asks for the hand-over.
    since = (datetime.now(timezone.utc) - timedelta(hours=11, minutes=45)).isoformat()
    app.state.set_operator({"name": "王保安", "since": since})
    app.gate_watch.tick()
    page.wait_for_selector("#shift-bar:visible")
    assert "交接班" in page.inner_text("#shift-bar")
    on_screen(page, "#shift-bar button")
    shot(page, "rules-handover-800x480.png")
    page.click("#shift-bar button")
    page.fill("#signin-modal input[name=name]", "李保安")
    page.fill("#signin-modal input[name=pin]", "246810")
    page.click("#signin-modal button[type=submit]")
    page.wait_for_function("document.getElementById('operator-name').textContent === '李保安'")
    app.gate_watch.tick()
    page.wait_for_selector("#shift-bar", state="hidden")
    actions = [(r["operator_id"], r["action"]) for r in reversed(app.journal.ledger("shifts"))]
    assert actions[-2:] == [("王保安", "sign_out"), ("李保安", "sign_in")]


def test_disinfection_due_then_overdue_then_done(small):
    app, page = small
    now = datetime.now(BEIJING)
    if now.hour == 0 and now.minute < 50:
        pytest.skip("the set times would fall on yesterday")
    sign_in(page)
    due = (now - timedelta(minutes=5)).strftime("%H:%M")
    push_policy(app, disinfection_times=[due], disinfection_overdue_min=30)
    page.wait_for_selector("#disinfect-bar:visible")
    assert "消毒时间到" in page.inner_text("#disinfect-bar")
    assert not page.eval_on_selector("#disinfect-bar", "e => e.classList.contains('urgent')")
    overdue = (now - timedelta(minutes=45)).strftime("%H:%M")
    push_policy(app, disinfection_times=[overdue], disinfection_overdue_min=30)
    page.wait_for_selector("#disinfect-bar.urgent")
    assert "已超时" in page.inner_text("#disinfect-bar")
    on_screen(page, "#disinfect-bar button", "nav.actions")
    shot(page, "rules-disinfection-overdue-800x480.png")
    page.click("#disinfect-bar button")
    page.click("#disinfect-modal button[type=submit]")
    app.gate_watch.tick()
    page.wait_for_selector("#disinfect-bar", state="hidden")
    assert len(app.journal.ledger("disinfections")) == 1
