"""The staff pages in real headless Chromium (Debian's /usr/bin/chromium via
Playwright), in Chinese, at an old office PC's 1024x768: log in (a wrong
password is refused, repeated ones throttled), open the boards, download the
daily report as XLSX and read it back with openpyxl."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from sync.server import auth, registry, sessions
from sync.server.sites import add_site
from tests.registry.conftest import PASSWORD
from tests.registry.kiosk_day import KioskDay, passage
from tests.sync.sync_harness import ServerThread

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DAY = date(2026, 2, 1)




@pytest.fixture
def served(tmp_path):
    srv = ServerThread(f"sqlite:///{tmp_path / 'registry.db'}").start()
    add_site(srv.db, "site-a", name="阳光小区", street_office="east-office", by="setup")
    add_site(srv.db, "site-b", name="和平小区", street_office="east-office", by="setup")
    auth.add_staff(srv.db, "王芳", role="worker", sites=["site-a", "site-b"], password=PASSWORD, by="setup")
    auth.add_staff(srv.db, "李四", role="inspector", sites=["site-a"], password=PASSWORD, by="setup")
    registry.add_person(srv.db, "site-a", "p-7", name="赵六", unit="3-2-101", by="setup")
    kiosk = KioskDay(srv, tmp_path / "kiosk")
    kiosk.ledger("shifts", {"operator_id": "老李", "action": "sign_in"})
    for _ in range(4):
        kiosk.append(passage("in", "admit", ["ok"], person="p-1"))
    kiosk.append(passage("out", "admit", ["ok"], person="p-1"))
    kiosk.append(passage("in", "deny", ["fever"], person="p-7", body_c=38.1, flagged=True))
    kiosk.append(passage("in", "deny", ["fever"], person="p-7", body_c=37.9, flagged=True))
    kiosk.sync()
    try:
        yield srv
    finally:
        kiosk.close()
        srv.stop()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1024, "height": 768}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    outside = []
    page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(served.url) else None)
    yield page
    context.close()
    assert errors == [] and outside == [], (errors, outside)


def log_in(page, name, password):
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_load_state("domcontentloaded")


def test_log_in_boards_and_the_daily_report_as_xlsx(page, served, tmp_path):
    page.goto(f"{served.url}/registry/sites/site-a/report?day={DAY}")
    assert "/registry/login" in page.url
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.inner_text("h1") == "工作人员登录"
    log_in(page, "王芳", "wrong password")
    assert page.inner_text("#problem") == "用户名或密码错误"
    assert "/registry/login" in page.url

    log_in(page, "王芳", PASSWORD)
    assert page.url.endswith(f"/registry/sites/site-a/report?day={DAY}")
    assert "王芳 · 社区工作人员" in page.inner_text("#who")
    assert page.inner_text("#entries") == "4" and page.inner_text("#exits") == "1"
    assert page.inner_text("#cases") == "1"  # two readings, one person
    assert page.locator("#zero-report").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "registry-report-zh.png"), full_page=True)

    # The boards, each laid out within the 1024 px window.
    for board, marker in (("gates", "老李"), ("fevers", "赵六"), ("ledgers", "来访登记")):
        page.click(f"#nav a[href$='/{board}']")
        page.wait_for_load_state("domcontentloaded")
        assert marker in page.inner_text("main"), board
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1024, f"{board} scrolls sideways ({width} px)"
        nav = page.locator("#nav").bounding_box()
        assert nav["y"] + nav["height"] < 120, f"{board}: the nav wraps into the page"
    page.screenshot(path=str(SHOTS / "registry-ledgers-zh.png"))

    # The site switcher: the same board at the other community.
    page.select_option("#site-switch", "site-b")
    page.click(".switcher button")
    page.wait_for_load_state("domcontentloaded")
    assert page.url.endswith("/registry/sites/site-b/ledgers")
    assert page.inner_text("#site-switch option:checked") == "和平小区"

    page.goto(f"{served.url}/registry/sites/site-a/report?day={DAY}")
    with page.expect_download() as info:
        page.click("#report-xlsx")
    path = tmp_path / "report.xlsx"
    info.value.save_as(path)
    book = load_workbook(path)
    summary = {row[0]: row[1] for row in book["日报告"].iter_rows(min_row=2, values_only=True)}
    assert summary["小区"] == "site-a" and summary["日期"].date() == DAY
    assert summary["进入人次"] == 4 and summary["外出人次"] == 1 and summary["发热病例（人）"] == 1
    assert summary["零报告"] == "否"
    cases = list(book["发热病例"].iter_rows(min_row=2, values_only=True))
    assert len(cases) == 1 and cases[0][1] == "赵六" and cases[0][5] == "38.10 / 37.90"

    # The next day is a zero report, said in words.
    page.goto(f"{served.url}/registry/sites/site-a/report?day=2026-02-02")
    assert page.inner_text("#zero-report") == "零报告：当日无发热病例"

    # Log out; the boards ask for a log-in again.
    page.click("#logout")
    page.wait_for_load_state("domcontentloaded")
    page.goto(f"{served.url}/registry/sites/site-a/gates")
    assert "/registry/login" in page.url


def test_repeated_wrong_passwords_are_throttled(page, served):
    page.goto(f"{served.url}/registry/login")
    for _ in range(sessions.FREE_FAILURES):
        log_in(page, "李四", "not the password")
        assert page.inner_text("#problem") == "用户名或密码错误"
    log_in(page, "李四", PASSWORD)
    assert "尝试次数过多" in page.inner_text("#problem")
    assert "/registry/login" in page.url
