"""The thermometer watch (issue 11): a stuck, erroring, spiky or drifting sensor is a fault."""

from __future__ import annotations

import pytest

from gateway.config import TemperatureSettings
from gateway.sensor_watch import ThermometerWatch, frozen, ramp, spikes
from gateway.thermometry import Sample

SETTINGS = TemperatureSettings()
HZ = 10


def run(values, start=0.0, ambient=22.0):
    """Samples at 10 Hz; `ambient` a value or a list."""
    amb = ambient if isinstance(ambient, list) else [ambient] * len(values)
    return [Sample(start + i / HZ, v, a) for i, (v, a) in enumerate(zip(values, amb))]


def noisy(base, n, step=0.02):
    return [round(base + step * ((i * 7) % 3 - 1), 2) for i in range(n)]


def test_stuck_at_a_plausible_value_is_frozen():
    assert frozen(run([36.4] * 60), SETTINGS.floor_c).code == "frozen"
    assert frozen(run([36.4] * 30), SETTINGS.floor_c) is None  # 3 s: a person holding still
    assert frozen(run(noisy(36.4, 60), ambient=noisy(22.0, 60)), SETTINGS.floor_c) is None  # a live sensor
    assert frozen(run([21.0] * 600), SETTINGS.floor_c) is None  # the room: harmless, and nobody is admitted


def test_a_person_arriving_breaks_the_run():
    assert frozen(run([21.0] * 50 + [36.4] * 20), SETTINGS.floor_c) is None


def test_spikes_and_ramps():
    base = noisy(21.0, 300)
    for i in (50, 120, 200):
        base[i] = 60.0
    assert spikes(run(base)).code == "spikes"
    assert spikes(run(noisy(21.0, 300))) is None
    arrival = [21.0] * 50 + [36.4] * 50  # a step, not a spike
    assert spikes(run(arrival)) is None
    drift = [21.0 + 0.03 * i for i in range(100)]  # +3 °C in 10 s, smoothly
    assert ramp(run(drift)).code == "ramp"
    assert ramp(run(arrival + [21.0] * 50)) is None


def test_only_error_words_for_two_seconds_is_a_fault():
    watch = ThermometerWatch(SETTINGS)
    good = run(noisy(21.0, 10), ambient=noisy(22.0, 10))
    assert watch.fault(good, 0, 1.0) is None
    assert watch.fault(good, 5, 1.5) is None  # a glitch
    assert watch.fault(good, 30, 3.0) is None
    fault = watch.fault(good, 40, 3.6)
    assert fault is not None and fault.code == "errors"
    fresh = good + run(noisy(21.0, 5), start=3.7, ambient=noisy(22.0, 5))
    assert watch.fault(fresh, 40, 4.2) is None  # good words again
