"""A site policy pushed by the registry may set the fever threshold and skin offset (issue 9)."""

from __future__ import annotations

import time

from kiosk_fakes import wait_for


def test_the_registry_policys_threshold_and_offset_are_used_at_the_gate(sim_settings, issue):
    from gateway.loop import build_app

    app = build_app(sim_settings, enable_sync=False)
    # What a sync would have written: version 2 of site-1's policy, 37.0 °C and a +0.6 offset.
    app.journal.apply_registry_page([
        {"entity": "person", "entity_id": "r-1", "op": "upsert", "change_seq": 1,
         "payload": {"name": "张伟", "unit": "1-1-101", "site": "site-1"}},
        {"entity": "policy", "entity_id": "site-1", "op": "upsert", "change_seq": 2,
         "payload": {"version": 2, "threshold_c": 37.0, "offset_c": 0.6}}], "2")
    app._refresh_registry()  # what the running app does every 30 s
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.hardware.thermometer.set(21.0, 22.0)
    app.start()
    try:
        # 36.5 raw: under the config (+0.5, 37.3) it is 37.0, no fever; under the policy 37.1 >= 37.0.
        app.hardware.thermometer.set(36.5, 22.0)
        time.sleep(0.4)
        app.hardware.camera.show(issue("r-1"))
        (event,) = wait_for(lambda: app.journal.events(kind="decision"), timeout=10)
        assert event["threshold_c"] == 37.0 and abs(event["body_c"] - 37.1) < 0.05
        assert event["flagged"] and "fever" in event["reasons"]
    finally:
        app.hardware.camera.show(None)
        app.stop()
