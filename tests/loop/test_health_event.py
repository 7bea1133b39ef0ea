"""The running kiosk journals its device health for the registry's gates board."""

from __future__ import annotations

from kiosk_fakes import wait_for


def test_the_housekeeping_thread_reports_health(sim_settings, issue):
    from gateway.loop import build_app

    app = build_app(sim_settings, enable_sync=False)
    app.health_reporter.start_after_s = 0  # no start-up wait in a test
    app.start()
    try:
        (event,) = wait_for(lambda: app.journal.events(kind="health"), timeout=10)
        devices = event["detail"]["devices"]
        assert set(devices) == set(app.state.snapshot()["health"])  # the guard screen's panel, compacted
        assert devices["thermometer"] == "ok" and isinstance(event["detail"]["pending"], int)
    finally:
        app.stop()
