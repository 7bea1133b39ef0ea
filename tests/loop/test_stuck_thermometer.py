"""A stuck thermometer is a fault (issue 11), on the real driver over the fake I2C bus."""

from __future__ import annotations

import time

from kiosk_fakes import wait_for

from gateway.sensor_watch import FROZEN_S


def decisions(app):
    return app.journal.events(kind="decision")


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def test_stuck_at_a_plausible_value_refuses_automatic_entry(kiosk, issue):
    kiosk.hardware.thermometer.set(36.4, 22.0)  # the sensor sticks at a normal forehead value
    time.sleep(FROZEN_S + 0.5)
    health = wait_for(lambda: kiosk.state.health["thermometer"]["status"] == "fault"
                      and kiosk.state.health["thermometer"], timeout=3)
    assert health["key"] == "health.thermometer.frozen"
    assert kiosk.state.paused
    before = len(decisions(kiosk))  # (the stuck value looked like someone without a pass at first)
    for n in range(3):  # people with a fever the sensor cannot see
        kiosk.hardware.camera.show(issue(f"r-{n}"))
        wait_for(lambda: len(decisions(kiosk)) == before + n + 1)
        kiosk.hardware.camera.show(None)
        wait_for(lambda: kiosk.checkpoint._visible_text is None, timeout=3)
    assert [d["reasons"] for d in decisions(kiosk)[before:]] == [["sensor_fault"]] * 3
    assert rising_edges(kiosk.relay_pin) == 0
    kiosk.hardware.thermometer.set(21.3, 22.1)  # the sensor moves again
    wait_for(lambda: kiosk.state.health["thermometer"]["status"] == "ok", timeout=3)


def test_continuous_error_words_are_a_health_fault_and_pause_entry(kiosk, issue):
    kiosk.hardware.thermometer.fail_next("ffff", 10**6)
    # The first health tick may not have run yet on a busy machine: no entry is not "ok" either.
    health = wait_for(lambda: kiosk.state.health.get("thermometer", {}).get("status") == "fault"
                      and kiosk.state.health["thermometer"], timeout=10)
    assert health["key"] == "health.thermometer.errors"
    assert kiosk.state.paused
    kiosk.hardware.camera.show(issue("r-9"))
    (row,) = wait_for(lambda: decisions(kiosk))
    assert row["reasons"] == ["sensor_fault"]
    assert rising_edges(kiosk.relay_pin) == 0
