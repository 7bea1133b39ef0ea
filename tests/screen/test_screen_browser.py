"""The guard screen in real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Screenshots go to artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"




@pytest.fixture
def screen(browser, served):
    app, url = served
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/", wait_until="domcontentloaded")
    page.wait_for_selector("#live:not(.down)")
    yield app, page, url
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def sign_in(page, name="王保安", pin="246810"):
    page.click("#signin-btn")
    page.fill("#signin-modal input[name=name]", name)
    page.fill("#signin-modal input[name=pin]", pin)
    page.click("#signin-modal button[type=submit]")
    page.wait_for_function(f"document.getElementById('operator-name').textContent === {name!r}")


def scan(app, issue, person, object_c):
    """A person stands at the thermometer, then holds up their pass."""
    app.hardware.thermometer.set(object_c, 22.0)
    time.sleep(0.4)  # a stable window of samples is there before the pass appears
    app.hardware.camera.show(issue(person))


def test_page_loads_in_chinese(screen):
    app, page, _ = screen
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.inner_text("#decision-word") == "等待通行"
    assert "出入请出示通行证" in page.inner_text("#rules")
    page.wait_for_selector("#health li[data-device=thermometer]")
    assert "测温仪" in page.inner_text("#health")
    page.wait_for_function("document.getElementById('camera').naturalWidth > 0")  # the live camera view
    shot(page, "guard-idle-zh.png")


def test_a_scan_shows_its_decision_within_a_second(screen, issue):
    app, page, _ = screen
    app.journal.apply_registry_page([{"entity": "person", "entity_id": "r-101", "op": "upsert", "change_seq": 1,
                                      "payload": {"name": "张伟", "unit": "1-1-101", "site": "site-1"}}], "t1")
    scan(app, issue, "r-101", 36.3)
    page.wait_for_selector("#decision.admit", timeout=1000)
    assert page.inner_text("#decision-word") == "通行"
    assert "张伟" in page.inner_text("#decision-person")
    assert page.inner_text("#reading-body") == "36.8"  # raw 36.3 + offset 0.5, for the guard only
    assert page.inner_text("#count-admit") == "1"
    shot(page, "guard-admit.png")


def test_fever_case_is_handled_in_one_dialog_with_the_clinical_reading(screen, issue):
    app, page, _ = screen
    sign_in(page)
    scan(app, issue, "r-201", 37.2)
    page.wait_for_selector("#fever-banner:not([hidden])", timeout=2000)
    assert page.get_attribute("body", "data-alarm") == "on"  # the alarm sound is playing
    assert page.inner_text("#decision-word") == "体温异常"
    shot(page, "guard-fever.png")

    page.click("#fever-ack-btn")
    assert "r-201" in page.inner_text("#case-who") and "37.7" in page.inner_text("#case-who")  # whom it is for
    page.check("#case-modal input[value=admitted]")
    page.click("#case-modal button[type=submit]")
    page.wait_for_selector("#case-modal [data-for=clinical_c]:text('放行前须先用体温计复测并填写读数')")
    page.fill("#case-modal input[name=clinical_c]", "37.9")
    assert page.inner_text("#case-modal [data-for=clinical_c]") == ""  # typing clears the error
    page.check("#case-modal input[value=referred]")
    page.click("#case-modal [data-quick='已引导至发热门诊']")  # one tap adds a common phrase
    assert page.input_value("#case-modal input[name=note]") == "已引导至发热门诊"
    shot(page, "guard-fever-case.png")
    page.click("#case-modal button[type=submit]")
    page.wait_for_selector("#fever-banner", state="hidden")
    assert page.get_attribute("body", "data-alarm") == "off"
    (closed,) = app.journal.events(kind="fever_case.closed")
    assert closed["operator"] == "王保安" and closed["detail"]["outcome"] == "referred"
    assert closed["detail"]["clinical_c"] == 37.9 and "发热门诊" in closed["detail"]["note"]
    assert page.inner_text("#count-flagged") == "1"


def test_override_dialog_shows_whom_it_is_for_and_a_manual_open_is_not_a_red_fever(screen, issue):
    app, page, _ = screen
    sign_in(page, "李队长")
    scan(app, issue, "r-301", 37.3)
    page.wait_for_selector("#decision.fever", timeout=2000)
    page.click("nav.actions .open")
    assert "r-301" in page.inner_text("#override-for")
    page.check("#override-modal input[value=emergency]")
    page.click("#override-modal button[type=submit]")
    page.wait_for_selector("#override-modal", state="hidden")
    page.wait_for_selector("#decision.admit")
    assert page.inner_text("#decision-word") == "已手动开闸"
    assert not page.is_visible("#decision.fever")


def test_visitor_form_does_not_prefill_the_previous_persons_temperature(screen, issue):
    app, page, _ = screen
    sign_in(page)
    scan(app, issue, "r-401", 36.3)
    page.wait_for_selector("#decision.admit", timeout=2000)
    page.click("button[data-modal=visitor-modal]")
    assert page.input_value("#visitor-modal input[name=temperature_c]") == ""


def test_public_side_says_only_please_see_the_staff(browser, screen, issue):
    app, _, url = screen
    public = browser.new_page(viewport={"width": 1024, "height": 600})
    public.goto(url + "/public", wait_until="domcontentloaded")
    scan(app, issue, "r-202", 37.4)
    public.wait_for_selector("#public.deny", timeout=2000)
    assert public.inner_text("#public-word") == "请到工作人员处"
    assert "37" not in public.inner_text("body").replace("37.3℃", "")  # only the posted rule mentions a temperature
    shot(public, "public-fever.png")
    public.close()


def test_override_asks_for_a_reason_and_is_logged_with_the_operator(screen):
    app, page, _ = screen
    page.click("nav.actions .open")  # not signed in: the sign-in dialog comes first
    page.wait_for_selector("#signin-modal[open]")
    assert "请先签到上岗" in page.inner_text("#signin-modal")
    page.click("#signin-modal [data-close]")
    sign_in(page, "李队长")
    page.click("nav.actions .open")
    page.click("#override-modal button[type=submit]")
    page.wait_for_selector("#override-modal [data-for=reason]:text('请选择开闸原因')")
    shot(page, "guard-override-reason.png")
    page.check("#override-modal input[value=resident_fault]")
    page.fill("#override-modal input[name=note]", "3号楼住户，测温仪故障")
    page.click("#override-modal button[type=submit]")
    page.wait_for_selector("#override-modal", state="hidden")
    page.wait_for_selector("#notice:text('已开闸，记录人：李队长')")
    (event,) = app.journal.events(kind="override")
    assert event["operator"] == "李队长" and event["detail"]["override_reason"] == "resident_fault"
    page.wait_for_selector("#decision.admit")
    shot(page, "guard-override-done.png")


def test_visitor_form_rejects_bad_input_with_clear_messages(screen):
    app, page, _ = screen
    sign_in(page)
    page.click("button[data-modal=visitor-modal]")
    page.fill("#visitor-modal input[name=name]", "刘123")
    page.fill("#visitor-modal input[name=phone]", "12345")
    page.fill("#visitor-modal input[name=temperature_c]", "45")
    page.click("#visitor-modal button[type=submit]")
    page.wait_for_selector("#visitor-modal [data-for=phone]:text('手机号应为 11 位数字')")
    dialog = page.inner_text("#visitor-modal")
    assert "请填写真实姓名" in dialog and "体温应在 34.0 到 43.0" in dialog and "必填" in dialog
    assert page.locator("#visitor-modal input.invalid").count() >= 5
    shot(page, "guard-visitor-errors.png")
    for field, value in {"name": "刘晓明", "origin": "河北保定", "phone": "13812345678", "address": "朝阳区幸福里 3 号",
                         "reason": "探望父母", "visiting": "3-2-601", "temperature_c": "36.5"}.items():
        page.fill(f"#visitor-modal input[name={field}]", value)
    page.click("#visitor-modal button[type=submit]")
    page.wait_for_selector("#visitor-modal", state="hidden")
    (row,) = app.journal.ledger("visitors")
    assert row["name"] == "刘晓明" and row["operator"] == "王保安"


def test_english_screen(screen, issue):
    app, page, url = screen
    page.goto(url + "/?lang=en", wait_until="domcontentloaded")
    page.wait_for_selector("#live:not(.down)")
    scan(app, issue, "r-999", 36.4)
    page.wait_for_selector("#decision.admit", timeout=2000)
    assert page.inner_text("#decision-word") == "ADMIT"
    shot(page, "guard-admit-en.png")
