"""Issue 9's Show items that cross the seams, in real headless Chromium, in
Chinese: a fever case the guard closes at a simulated gate shows closed on
the registry's fever board after a sync; an unstaffed gate shows the
无人值守 alarm, with the device health and backlog the kiosk reported, on
the gates board after a sync."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sync.server import auth, issuing, people
from tests.registry.conftest import PASSPHRASE

pytestmark = pytest.mark.browser  # `browser`: the one Chromium of tests/conftest.py





@pytest.fixture
def gate(registry, tmp_path):
    """A simulated gate (fake hardware) enrolled at site-1, synced once; returns (settings, sync)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
    from kiosk_fakes import SIM_CONFIG

    from gateway.config import load_config
    from gateway.journal import Journal
    from gateway.passes import generate_keypair
    from sync.client import SyncClient

    name = f"sim-{tmp_path.name[-6:]}"
    _, token = auth.add_gate(registry.db, "site-1", name, by="setup")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "issuer.pub").write_bytes(generate_keypair()[1])
    (tmp_path / "gate.token").write_text(token, encoding="utf-8")
    config = tmp_path / "gate.toml"
    config.write_text(SIM_CONFIG.replace('id = "sim-1"', f'id = "{name}"')
                      + f'\n[sync]\nserver = "{registry.url}"\ntoken_file = "gate.token"\n', encoding="utf-8")
    settings = load_config(config)

    def sync():
        journal = Journal.open(settings.journal.path)
        client = SyncClient(journal, settings)
        try:
            assert client.sync_once()["pending"] == 0
        finally:
            client.close()
            journal.close()

    sync()  # the community's key reaches the gate
    return settings, sync


def test_a_fever_case_closed_at_the_gate_shows_closed_on_the_board_after_a_sync(clerk, registry, gate):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
    from kiosk_fakes import wait_for

    from gateway.loop import build_app

    settings, sync = gate
    person = people.save_one(registry.db, "site-1", {"name": "李发热", "building": "5号楼", "unit": "1",
                                                     "room": "502"}, by="setup")
    (issued,) = issuing.issue(registry.db, "site-1", [person.person_id], days=30, passphrase=PASSPHRASE,
                              by="setup").issued
    sync()
    app = build_app(settings, enable_sync=False)
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.hardware.thermometer.set(21.0, 22.0)
    app.start()
    try:
        app.actions.sign_in({"name": "王师傅"})
        app.hardware.thermometer.set(37.6, 22.0)  # 38.1 with the config's +0.5
        time.sleep(0.4)
        app.hardware.camera.show(issued["text"])
        (opened,) = wait_for(lambda: app.journal.events(kind="fever_case.opened"), timeout=10)
        app.hardware.camera.show(None)
        app.actions.fever_case({"case_id": opened["detail"]["case_id"], "clinical_c": "38.2",
                                "outcome": "referred", "note": "送发热门诊"})
    finally:
        app.hardware.camera.show(None)
        app.stop()

    page = clerk
    page.goto(registry.url + "/registry/sites/site-1/fevers")
    assert page.inner_text("#no-cases") == "没有发热病例"  # nothing before the sync
    sync()
    page.goto(registry.url + "/registry/sites/site-1/fevers")
    row = page.locator("#cases tbody tr", has_text="李发热")
    assert row.count() == 1
    text = row.inner_text()
    assert "王师傅: 送发热门诊" in text and "已转诊" in text and "复测 38.2°C" in text
    assert "已处理：王师傅" in text and "待处理" not in text  # closed at the gate: acknowledged
    page.goto(registry.url + "/registry/sites/site-1/fevers?open=true")
    assert page.locator("#cases tbody tr", has_text="李发热").count() == 0


def test_an_unstaffed_gate_is_an_alarm_on_the_gates_board_with_its_health(clerk, registry, gate):
    from gateway import health as healthmod
    from gateway.health_report import HealthReporter
    from gateway.journal import Journal
    from gateway.policy import Policy
    from gateway.screen.state import ScreenState
    from gateway.staffing import StaffingWatch

    settings, sync = gate
    journal = Journal.open(settings.journal.path)
    try:
        clock = {"now": datetime.now(timezone.utc) - timedelta(minutes=10)}
        watch = StaffingWatch(journal=journal, state=ScreenState(gate={}, rules=[], policy={}), actions=None,
                              gate_id=settings.gate.id, policy=lambda: Policy(staffing={"unstaffed_grace_min": 5}),
                              now=lambda: clock["now"], on_status=lambda s: None)
        watch.tick()
        clock["now"] += timedelta(minutes=6)
        watch.tick()  # nobody on duty past the grace: the alarm
        HealthReporter(journal, settings.gate.id, start_after_s=0).tick({
            "thermometer": healthmod.device(False, "no samples", "health.thermometer.fault"),
            "camera": healthmod.device(True, "", "health.camera.fault")})
    finally:
        journal.close()
    sync()
    page = clerk
    page.goto(registry.url + "/registry/sites/site-1/gates")
    row = page.locator(f"#gates tr[data-gate='{settings.gate.id}']")
    alarm = row.locator(".alarm[role=alert]")
    assert alarm.inner_text() == "无人值守！" and alarm.is_visible()
    assert "测温仪: 故障" in row.inner_text() and "摄像头: 正常" in row.inner_text()
    box = alarm.bounding_box()
    assert box is not None and box["width"] > 0 and box["y"] + box["height"] <= 800  # on the first screen
