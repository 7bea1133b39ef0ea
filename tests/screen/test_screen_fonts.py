"""The guard screen rendered with only the fonts deploy/install-kiosk.sh installs:
no character on it lacks a glyph (no tofu boxes on a fresh Pi).

Chromium gets a fontconfig that lists only the font files of the `fonts-*`
packages the install script installs (`dpkg -L`), so it can use nothing else.
The page is rendered in Chinese and in English. Then:
- every text node, placeholder and title on the page, and every text the page
  can show later (the screen's catalogue and the decision messages), is in the
  character set of those font files, read by fontconfig (`fc-query`, the
  library Chromium itself asks) -- a missing character is a tofu box;
- Chromium reports (DevTools `CSS.getPlatformFontsForNode`) that it drew the
  text with those fonts, not a web font or another system font.
A control run of the same check against a Latin-only font (DejaVu) does
report the Chinese characters as missing, so the check can fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FONT_FILE = re.compile(r"\.(ttc|otf|ttf)$")


def packaged_fonts() -> tuple[list[str], list[Path]]:
    """The fonts-* packages install-kiosk.sh installs, and their font files on this machine."""
    script = (ROOT / "deploy" / "install-kiosk.sh").read_text()
    packages = sorted(set(re.findall(r"\bfonts-[a-z0-9-]+", script)))
    files = []
    for package in packages:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
        if listed.returncode != 0:
            pytest.skip(f"{package} is not installed here (scripts/setup installs it)")
        files += [Path(f) for f in listed.stdout.splitlines() if FONT_FILE.search(f)]
    return packages, files


def charset(files: list[Path]) -> set[int]:
    """Every code point the font files have a glyph for, according to fontconfig."""
    covered: set[int] = set()
    for file in files:
        out = subprocess.run(["fc-query", "--format=%{charset}\n", str(file)], check=True,
                             capture_output=True, text=True).stdout
        for span in out.split():
            lo, _, hi = span.partition("-")
            covered.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return covered


def missing(texts: set[str], covered: set[int]) -> dict[str, str]:
    """Characters without a glyph -> one text that uses it (whitespace and controls need none)."""
    gaps = {}
    for text in texts:
        for ch in text:
            if ch.isspace() or ord(ch) < 0x20 or ord(ch) in covered:
                continue
            gaps.setdefault(f"U+{ord(ch):04X} {ch}", text)
    return gaps


@pytest.fixture(scope="module")
def fonts(tmp_path_factory):
    if shutil.which("fc-query") is None:
        pytest.skip("fc-query (fontconfig) is not installed")
    packages, files = packaged_fonts()
    assert packages == ["fonts-noto-cjk"] and files, (packages, files)
    folder = tmp_path_factory.mktemp("fontconfig")
    dirs = "".join(f"<dir>{d}</dir>" for d in sorted({str(f.parent) for f in files}))
    (folder / "fonts.conf").write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">'
        f"<fontconfig>{dirs}<cachedir>{folder / 'cache'}</cachedir></fontconfig>", encoding="utf-8")
    return folder / "fonts.conf", files


@pytest.fixture(scope="module")
def browser(fonts):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup --dev installs it)")
    from playwright.sync_api import sync_playwright

    conf, _ = fonts
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, env={"FONTCONFIG_FILE": str(conf), "HOME": "/tmp"},
                                    args=["--no-sandbox", "--disable-gpu", "--disable-component-update",
                                          "--disable-background-networking", "--no-first-run"])
        yield browser
        browser.close()


PAGE_TEXTS = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const tag = n.parentElement && n.parentElement.tagName;
    if (!['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(tag) && n.textContent.trim()) texts.push(n.textContent);
  }
  for (const el of document.querySelectorAll('[placeholder],[title],[aria-label]'))
    for (const a of ['placeholder', 'title', 'aria-label']) if (el.getAttribute(a)) texts.push(el.getAttribute(a));
  for (const el of document.querySelectorAll('input[type=submit],input[type=button],option'))
    texts.push(el.value || el.textContent);
  return texts;
}"""


def rendered(page, url: str, lang: str) -> tuple[set[str], set[str]]:
    """(texts on the page, hidden forms' included; font families Chromium drew its text with)."""
    page.goto(f"{url}/?lang={lang}", wait_until="domcontentloaded")
    page.wait_for_selector("#live:not(.down)")
    texts = set(page.evaluate(PAGE_TEXTS))
    families: set[str] = set()
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]
    nodes = cdp.send("DOM.querySelectorAll", {"nodeId": root["nodeId"], "selector": "body *"})["nodeIds"]
    for node in nodes:
        try:
            used = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        except Exception:  # noqa: BLE001 - nodes without layout (hidden, removed meanwhile)
            continue
        for font in used:
            assert not font["isCustomFont"], f"a web font was used: {font}"
            families.add(font["familyName"])
    cdp.detach()
    return texts, families


def test_the_guard_screen_has_a_glyph_for_every_character(browser, fonts, served):
    from gateway import messages
    from gateway.screen import i18n

    _, files = fonts
    covered = charset(files)
    app, url = served
    page = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN").new_page()
    on_page: set[str] = set()
    families: set[str] = set()
    for lang in ("zh", "en"):
        texts, used = rendered(page, url, lang)
        on_page |= texts
        families |= used
    assert any("\u4e00" <= ch <= "\u9fff" for text in on_page for ch in text), "no Chinese text was rendered"
    assert i18n.text("waiting.hint", "en") in on_page, "the English page was not rendered"
    later = {t for lang in i18n.LANGUAGES for t in i18n.catalogue(lang).values()}
    later |= {t for entry in messages.MESSAGES.values() for t in entry.values()}
    assert missing(on_page, covered) == {}, "characters on the page without a glyph (tofu)"
    assert missing(later, covered) == {}, "screen texts without a glyph (tofu once shown)"
    # Drawn with the installed CJK fonts (the fontconfig given to Chromium lists nothing else).
    assert families and all("CJK" in family for family in families), families


def test_the_check_finds_tofu_without_the_cjk_font(served):
    """Control: against a Latin-only font the same check reports the Chinese characters."""
    dejavu = [Path(p) for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",) if Path(p).exists()]
    if not dejavu:
        pytest.skip("fonts-dejavu-core is not installed (the control needs a Latin-only font)")
    from gateway.screen import i18n

    gaps = missing(set(i18n.catalogue("zh").values()), charset(dejavu))
    assert "U+95E8 门" in gaps
