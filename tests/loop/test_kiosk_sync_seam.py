"""build_app starts the sync worker when [sync] is configured and shows its state."""

from __future__ import annotations

from kiosk_fakes import SIM_CONFIG, wait_for

from gateway.config import load_config


def test_sync_worker_is_started_and_an_unreachable_server_shows_on_screen(tmp_path, issue):
    from gateway.loop import build_app

    # The `issue` fixture created the demo keys in this tmp_path; add [sync] to the same config.
    path = tmp_path / "gate.toml"
    path.write_text(SIM_CONFIG + '\n[sync]\nserver = "http://127.0.0.1:9"\ntoken = "0123456789abcdef0123"\n',
                    encoding="utf-8")
    app = build_app(load_config(path))
    try:
        assert app.sync_worker is not None
        app.start()
        app.sync_worker.trigger()
        sync = wait_for(lambda: app.state.health.get("sync", {}).get("status") == "warn" and app.state.health["sync"],
                        timeout=15)
        assert sync["key"] == "health.sync.offline"
        assert app.state.health["registry"]["key"] == "health.registry.never"
    finally:
        app.stop()


def test_without_sync_section_there_is_no_worker(kiosk):
    assert kiosk.sync_worker is None
    wait_for(lambda: kiosk.state.health.get("sync"))
    assert kiosk.state.health["sync"]["status"] == "off"


def _kiosk_with_unreachable_registry(tmp_path):
    from gateway.loop import build_app

    path = tmp_path / "gate.toml"
    path.write_text(SIM_CONFIG + '\n[sync]\nserver = "http://127.0.0.1:9"\ntoken = "0123456789abcdef0123"\n'
                    'staleness_limit_h = 1\n', encoding="utf-8")
    app = build_app(load_config(path))
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.hardware.thermometer.set(21.0, 22.0)
    return app


def test_a_stale_registry_needs_the_guard_to_confirm_a_valid_pass(tmp_path, issue):
    """Degraded mode: never synced (or older than the limit) -> no silent acceptance."""
    from datetime import datetime, timedelta, timezone

    app = _kiosk_with_unreachable_registry(tmp_path)
    app.start()
    try:
        app.hardware.thermometer.set(36.4, 22.0)
        app.hardware.camera.show(issue("r-7"))
        (row,) = wait_for(lambda: app.journal.events(kind="decision"))
        assert (row["decision"], row["reasons"]) == ("deny", ["registry_stale"])
        app.hardware.camera.show(None)

        app.actions.sign_in({"name": "赵保安"})
        app.actions.override({"reason": "resident_fault", "note": "证件人工核对无误", "for_seq": row["seq"]})
        (override,) = app.journal.events(kind="override")
        assert override["reasons"] == ["registry_stale", "guard_override"]
        assert override["operator"] == "赵保安"

        # A fresh registry copy lifts degraded mode; one older than the limit brings it back.
        fresh = datetime.now(timezone.utc)
        app.journal.apply_registry_page([], "42")
        app.hardware.camera.show(issue("r-8"))
        second = wait_for(lambda: [e for e in app.journal.events(kind="decision") if e["person_id"] == "r-8"])
        assert second[0]["decision"] == "admit" and second[0]["reasons"] == ["ok"]
        app.hardware.camera.show(None)

        app.journal.set_meta("registry_synced_wall", (fresh - timedelta(hours=2)).isoformat())
        app.hardware.camera.show(issue("r-9"))
        third = wait_for(lambda: [e for e in app.journal.events(kind="decision") if e["person_id"] == "r-9"])
        assert third[0]["reasons"] == ["registry_stale"]
    finally:
        app.stop()
