"""A clerk's day in real headless Chromium, in Chinese: import a 500-resident
ledger, issue and print passes for a building (every printed code scans and
verifies), register a returnee and watch a simulated gate refuse their exit."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.passes import load_public_keys, verify
from sync.server import auth, issuing, people
from tests.registry.ledgers import resident_rows, xlsx_bytes
from tests.registry.scan_sheet import scan_with_cli, sheet_to_pngs

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"






def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=False)


def test_import_a_500_resident_ledger_with_bad_rows_then_fix_and_commit(clerk, registry, tmp_path):
    page = clerk
    rows = resident_rows(500)
    rows[10][5] = "138001"  # a phone too short
    rows[200][8], rows[200][7] = "2020-02-30", "是"  # no such day
    rows[333][1] = ""  # no name
    ledger = tmp_path / "幸福里社区居民台账.xlsx"
    ledger.write_bytes(xlsx_bytes(rows))
    page.goto(registry.url + "/registry/sites/site-1/imports")
    assert page.get_attribute("html", "lang") == "zh-CN" and page.inner_text("h1") == "导入台账"
    page.set_input_files("#file", str(ledger))
    page.click("#upload")
    page.wait_for_selector("#has-errors")
    assert "有 3 行有错误，尚未写入任何数据" in page.inner_text("#has-errors")
    assert page.locator("#commit").count() == 0
    banner = page.locator("#has-errors").bounding_box()
    assert banner["y"] + banner["height"] <= 800  # the clerk sees it without scrolling
    bad = page.locator("tr[data-action=error]")
    assert [bad.nth(i).get_attribute("data-row") for i in range(3)] == ["13", "203", "336"]
    assert page.locator("tr[data-row='13'] td.problem[data-field=phone]").count() == 1
    assert page.locator("tr[data-row='203'] td.problem[data-field=observation_until]").count() == 1
    assert page.locator("tr[data-row='336'] td.problem[data-field=name]").count() == 1
    # The preview fits the page: no sideways scrolling on an office PC's screen.
    box = page.locator("#preview").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1280
    assert page.locator("#mapping select[data-header=姓名]").input_value() == "name"
    shot(page, "registry-import-errors-zh.png")
    assert people.search(registry.db, "site-1")[1] == 0  # nothing written

    rows[10][5], rows[200][8], rows[333][1] = "13800138000", "2020-02-28", "林补"
    ledger.write_bytes(xlsx_bytes(rows))
    page.goto(registry.url + "/registry/sites/site-1/imports")
    page.set_input_files("#file", str(ledger))
    page.click("#upload")
    page.wait_for_selector("#commit")
    assert "新增 500" in page.inner_text("#counts")
    started = time.monotonic()
    page.click("#commit")
    page.wait_for_selector("#committed", timeout=60_000)
    assert "新增 500" in page.inner_text("#committed")
    assert people.search(registry.db, "site-1", limit=1000)[1] == 500
    assert time.monotonic() - started < 30  # seconds, not the CLI's 21 minutes
    shot(page, "registry-import-done-zh.png")


def test_issue_passes_for_a_building_print_and_scan_every_code(clerk, registry, tmp_path, capsys):
    page = clerk
    names = ["欧阳娜娜", "王伟", "李秀英", "张三", "刘洋", "陈静", "杨帆", "赵磊", "黄丽", "周杰", "吴敏"]
    for i, name in enumerate(names):
        people.save_one(registry.db, "site-1", {"name": name, "building": "20号楼", "unit": "1", "room": f"{101 + i}",
                                                "kind": "tenant" if i % 4 == 1 else "resident"}, by="setup")
    page.goto(registry.url + "/registry/sites/site-1/passes")
    page.select_option("#issue-building", "20号楼")
    page.click("#issue")
    page.wait_for_selector("#issued")
    assert page.inner_text("#issued") == f"已发放 {len(names)} 张通行证"
    shot(page, "registry-passes-issued-zh.png")
    href = page.get_attribute("#print", "href")
    response = page.request.get(registry.url + href)  # the clerk's "print" link, with their session
    assert response.ok and response.headers["content-type"] == "application/pdf"
    pages = sheet_to_pngs(response.body(), tmp_path / "sheet")
    assert len(pages) == 2  # 11 passes, 8 per A4 page
    found = scan_with_cli(pages, capsys)
    texts = [t for p in pages for t in found[str(p)]]
    issued = [p for pid in {r["person_id"] for r in people.search(registry.db, "site-1",
                                                                   people.Filters(building="20号楼"))[0]}
              for p in issuing.passes_of(registry.db, "site-1", pid)]
    assert sorted(texts) == sorted(p["text"] for p in issued) and len(texts) == len(names)
    (tmp_path / "issuer.pub").write_text(issuing.public_key_pem(registry.db, "site-1"), encoding="ascii")
    keys = load_public_keys([tmp_path / "issuer.pub"])
    for text in texts:
        assert verify(text, keys, datetime.now(timezone.utc)).valid


def test_a_registered_returnee_is_refused_exit_at_a_synced_gate(clerk, registry, tmp_path):
    page = clerk
    person = people.save_one(registry.db, "site-1", {"name": "赵返京", "building": "21号楼", "unit": "2",
                                                     "room": "301"}, by="setup")
    page.goto(registry.url + f"/registry/sites/site-1/people/{person.person_id}")
    page.click("#issue-one button[type=submit]")
    page.wait_for_selector("#issued")
    page.goto(registry.url + f"/registry/sites/site-1/people/{person.person_id}")
    today = people.today_in_china()
    page.fill("#returnee-form input[name=arrival_date]", today.isoformat())
    page.fill("#returnee-form input[name=origin]", "湖北武汉")
    page.fill("#returnee-form input[name=contact]", "13900000000")
    page.click("#returnee-form button[type=submit]")
    page.wait_for_selector("#observation-until")
    until = people.observation_end(today)
    assert page.inner_text("#observation-until") == until.isoformat()
    shot(page, "registry-returnee-zh.png")
    (pass_row,) = issuing.passes_of(registry.db, "site-1", person.person_id)

    decision = _exit_at_a_synced_gate(registry, tmp_path, pass_row["text"])
    assert decision["decision"] == "deny" and "under_observation" in decision["reasons"]


def _exit_at_a_synced_gate(registry, tmp_path: Path, text: str) -> dict:
    """A kiosk on fake hardware syncs with the registry, then the person holds up their pass going out."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
    from kiosk_fakes import SIM_CONFIG, wait_for

    from gateway.config import load_config
    from gateway.journal import Journal
    from gateway.loop import build_app
    from gateway.passes import generate_keypair
    from sync.client import SyncClient

    _, token = auth.add_gate(registry.db, "site-1", "sim-1", by="setup")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "issuer.pub").write_bytes(generate_keypair()[1])  # the kiosk's own config key
    (tmp_path / "sim-1.token").write_text(token, encoding="utf-8")
    config = tmp_path / "gate.toml"
    config.write_text(SIM_CONFIG + f'\n[sync]\nserver = "{registry.url}"\ntoken_file = "sim-1.token"\n',
                      encoding="utf-8")
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    client = SyncClient(journal, settings)
    try:
        client.sync_once()  # the returnee's observation and the community's key reach the gate
    finally:
        client.close()
        journal.close()
    app = build_app(settings, enable_sync=False)
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.hardware.thermometer.set(21.0, 22.0)
    app.start()
    try:
        app.checkpoint.set_direction("out")
        app.hardware.thermometer.set(36.3, 22.0)
        time.sleep(0.4)
        app.hardware.camera.show(text)
        (event,) = wait_for(lambda: app.journal.events(kind="decision"), timeout=10)
        return event
    finally:
        app.hardware.camera.show(None)
        app.stop()


def test_the_progress_bar_follows_a_running_import_and_shows_the_result(clerk, registry):
    from sync.server import imports

    page = clerk
    db = registry.db
    job = imports.create_job(db, "site-1", "residents", "大台账.xlsx", xlsx_bytes(resident_rows(3, start=900)),
                             by="王主任")
    assert imports.claim_job(db, "site-1", job)
    imports.report_progress(db, "site-1", job, 1200, 5000)  # stands in for a long commit
    page.goto(registry.url + f"/registry/sites/site-1/imports/{job}")
    page.wait_for_function("document.getElementById('progress').value === 1200")
    assert page.get_attribute("#progress", "max") == "5000"
    assert page.inner_text("#progress-text") == "1200 / 5000"
    assert page.locator("#progress").bounding_box()["width"] > 50
    shot(page, "registry-import-progress-zh.png")
    imports.finish_job(db, "site-1", job, "committed", {"new": 3, "update": 0, "same": 0})
    page.wait_for_selector("#committed", timeout=5000)  # the page reloads by itself
    assert "新增 3" in page.inner_text("#committed")
