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
