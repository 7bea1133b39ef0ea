"""The guard and queue screens fit their panels: measured in real headless Chromium.

Sizes: 800x480 (the official 7-inch Raspberry Pi display), 1024x600 (common
7-inch HDMI panels) and 1280x800 (the 10-inch panel the screen was drawn
for). Each size in Chinese and English. The boxes of the elements are
measured; nothing is eyeballed. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import time

import pytest

from tests.screen.test_screen_browser import CHROMIUM, SHOTS, scan, sign_in  # noqa: F401 (browser fixture below)

pytestmark = pytest.mark.browser

SIZES = [(800, 480), (1024, 600), (1280, 800)]
LANGS = ["zh", "en"]

# What the guard must see without scrolling: the decision, the reading, the
# buttons, today's counts, device health and the recent list.
MUST_SEE = ["#decision", "#decision-word", ".reading-box", "#reading-body", "nav.actions", "#count-admit",
            "#count-flagged", "#health", ".recent-panel", ".rules-bar", "#operator-name"]


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


def boxes_outside(page, selectors: list[str]) -> dict[str, dict]:
    """Selectors whose element is missing, has no size, or is not wholly inside the viewport."""
    return page.evaluate("""(selectors) => {
        const bad = {};
        for (const sel of selectors) {
            const e = document.querySelector(sel);
            if (!e) { bad[sel] = "missing"; continue; }
            const r = e.getBoundingClientRect();
            if (r.width < 1 || r.height < 1 || r.top < -0.5 || r.left < -0.5
                || r.bottom > innerHeight + 0.5 || r.right > innerWidth + 0.5)
                bad[sel] = {top: r.top, left: r.left, bottom: r.bottom, right: r.right, vw: innerWidth, vh: innerHeight};
        }
        return bad;
    }""", selectors)


def vertical_overflow(page) -> dict:
    return page.evaluate("""() => ({doc: document.documentElement.scrollHeight, body: document.body.scrollHeight,
                                    vh: innerHeight})""")


def assert_no_vertical_scroll(page):
    sizes = vertical_overflow(page)
    assert sizes["doc"] <= sizes["vh"] and sizes["body"] <= sizes["vh"], sizes


def dialogs(page) -> list[str]:
    return page.eval_on_selector_all("dialog.modal", "ds => ds.map(d => d.id)")


def open_dialog(page, dialog_id: str) -> None:
    page.evaluate("(id) => document.getElementById(id).showModal()", dialog_id)
    page.wait_for_selector(f"#{dialog_id}[open]")


def submit_selector(dialog_id: str) -> str:
    return f"#{dialog_id} .modal-buttons button:last-child"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_guard_page_fits_without_scrolling(browser, served, issue, size, lang):
    app, url = served
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{url}/?lang={lang}", wait_until="domcontentloaded")
        page.wait_for_selector("#live:not(.down)")
        page.wait_for_selector("#health li[data-device=thermometer]")
        assert_no_vertical_scroll(page)
        assert boxes_outside(page, MUST_SEE) == {}
        sign_in(page)

        # The worst case on screen: a fever case banner and a call for a relief guard above everything.
        scan(app, issue, "r-777", 37.4)
        page.wait_for_selector("#fever-banner:not([hidden])", timeout=3000)
        app.state.ask_for_relief("钱保安")
        page.wait_for_selector("#relief-bar:not([hidden])")
        assert_no_vertical_scroll(page)
        assert boxes_outside(page, MUST_SEE + ["#fever-banner button", "#relief-bar"]) == {}
        # Every action button (or the "more" button that holds the rest) is on screen.
        visible = page.eval_on_selector_all("nav.actions button",
                                            "bs => bs.filter(b => b.offsetParent !== null).map(b => b.id || b.dataset.modal)")
        assert len(visible) >= 3
        outside = page.evaluate("""() => [...document.querySelectorAll('nav.actions button')]
            .filter(b => b.offsetParent !== null)
            .map(b => b.getBoundingClientRect())
            .filter(r => r.bottom > innerHeight || r.right > innerWidth || r.top < 0).length""")
        assert outside == 0
        page.screenshot(path=str(SHOTS / f"layout-guard-{width}x{height}-{lang}.png"))

        # Every dialog, with every field error showing (the tallest it gets), keeps its buttons on screen.
        for dialog_id in dialogs(page):
            open_dialog(page, dialog_id)
            page.evaluate("""(id) => document.querySelectorAll('#' + id + ' .field-error, #' + id + ' .form-error')
                .forEach(p => { p.textContent = '必填 Required — this field needs a value'; })""", dialog_id)
            assert boxes_outside(page, [submit_selector(dialog_id), f"#{dialog_id} h2"]) == {}, dialog_id
            assert_no_vertical_scroll(page)
            if dialog_id in ("visitor-modal", "case-modal"):
                page.screenshot(path=str(SHOTS / f"layout-{dialog_id}-{width}x{height}-{lang}.png"))
            page.evaluate("(id) => document.getElementById(id).close()", dialog_id)
    finally:
        context.close()
    assert errors == []


def test_large_panel_keeps_its_look(browser, served):
    """1280x800: the big decision word, five buttons in one row, the 360 px side column."""
    _, url = served
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(url + "/", wait_until="domcontentloaded")
        page.wait_for_selector("#live:not(.down)")
        look = page.evaluate("""() => ({
            word: getComputedStyle(document.querySelector('.decision-word')).fontSize,
            side: document.querySelector('.side-col').getBoundingClientRect().width,
            tops: [...document.querySelectorAll('nav.actions button')].filter(b => b.offsetParent !== null)
                     .map(b => Math.round(b.getBoundingClientRect().top)),
            buttonHeight: document.querySelector('nav.actions button').getBoundingClientRect().height})""")
        assert look["word"] == "60px"  # idle; a decision is 88px
        assert look["side"] == 360
        # One row: open, re-measure, visitor, staff temperature, disinfection and "More" (the
        # gate-rule actions live there; "No mask" joins the row when the policy requires masks).
        assert len(look["tops"]) == 6 and len(set(look["tops"])) == 1
        assert look["buttonHeight"] >= 80
    finally:
        context.close()


FEVER_PUBLIC = {"zh": "请到工作人员处", "en": "Please see the staff"}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("size", SIZES[:2], ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_screen_fits_its_longest_message(browser, served, size, lang):
    """Every message the queue can see, the courier's the longest, stays inside the panel, and a
    short message is never broken with one character alone on a line (the orphan "处")."""
    from gateway import messages
    from gateway.policy import Policy

    app, url = served
    width, height = size
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(f"{url}/public?lang={lang}", wait_until="domcontentloaded")
        dropoff = Policy().courier_dropoff.as_dict()
        entrance = Policy().open_entrance.as_dict()  # a closed gate names the open one
        texts = [messages.text(key, lang, dropoff=dropoff, open_entrance=entrance)
                 for key in messages.MESSAGES if key.startswith("public.")]
        longest = max(texts, key=len)
        assert "快递" in longest or "parcels" in longest
        for text in sorted(texts, key=len):
            page.evaluate("""(text) => renderPublic({phase: 'decided', current: {decision: 'deny',
                              public_text: {zh: text, en: text}}, rules: window.INITIAL.rules})""", text)
            time.sleep(0.02)
            inside = boxes_outside(page, ["#public-word", "#public-rules"])
            assert inside == {}, (text, inside)
            word = page.evaluate("""() => { const e = document.getElementById('public-word');
                return {sw: e.scrollWidth, cw: e.clientWidth, sh: e.scrollHeight, ch: e.clientHeight}; }""")
            assert word["sw"] <= word["cw"] + 1, (text, word)
            assert_no_vertical_scroll(page)
            last_line = page.evaluate("""() => { const e = document.getElementById('public-word');
                const range = document.createRange(); const node = e.firstChild; const tops = [];
                for (let i = 0; i < node.length; i++) { range.setStart(node, i); range.setEnd(node, i + 1);
                    const r = range.getBoundingClientRect(); if (r.width) tops.push(Math.round(r.top)); }
                const last = Math.max(...tops); return tops.filter(t => t === last).length; }""")
            assert last_line > 1, f"one character alone on the last line: {text!r}"
            if text == longest:
                page.screenshot(path=str(SHOTS / f"layout-public-longest-{width}x{height}-{lang}.png"))
        page.evaluate("""(text) => renderPublic({phase: 'decided', current: {decision: 'deny',
                          public_text: {zh: text, en: text}}, rules: window.INITIAL.rules})""", FEVER_PUBLIC[lang])
        lines = page.evaluate("""() => { const e = document.getElementById('public-word');
            return e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight); }""")
        if lang == "zh":
            assert lines < 1.5, "请到工作人员处 fits on one line"
    finally:
        page.close()


def test_more_holds_the_buttons_that_do_not_fit_a_small_panel(browser, served):
    _, url = served
    page = browser.new_page(viewport={"width": 800, "height": 480})
    try:
        page.goto(url + "/", wait_until="domcontentloaded")
        page.wait_for_selector("#live:not(.down)")
        sign_in(page)
        assert not page.is_visible("nav.actions [data-modal=staff-modal]")
        page.click("nav.actions .more")
        page.wait_for_selector("#more-modal[open]")
        page.click("#more-modal [data-modal=staff-modal]")
        page.wait_for_selector("#staff-modal[open]")
        assert page.evaluate("!document.getElementById('more-modal').open")
        assert page.input_value("#staff-modal input[name=person]") == "王保安"
    finally:
        page.close()
