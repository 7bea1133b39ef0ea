"""Samples -> Reading: stability, plausibility band, compensation, threshold, re-measure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import TemperatureSettings
from gateway.thermometry import (
    Reading,
    Sample,
    centi,
    compensation_offset,
    is_fever,
    reading_or_timeout,
    remeasure,
    sensor_fault,
    stable_reading,
    timed_out,
)

DEFAULT = TemperatureSettings()  # 37.3, floor 30, ceiling 43, spread 0.3, 5 samples at 10 Hz


def samples(*objects: float, ambient: float = 22.0, start: float = 100.0, hz: float = 10.0) -> list[Sample]:
    return [Sample(start + i / hz, o, ambient) for i, o in enumerate(objects)]


# --- stable window ------------------------------------------------------------------


def test_median_of_a_stable_window():
    reading = stable_reading(samples(36.40, 36.52, 36.46, 36.58, 36.44), DEFAULT)
    assert reading.status == "ok"
    assert reading.object_c == 36.46 and reading.body_c == 36.46 and reading.offset_c == 0.0
    assert reading.ambient_c == 22.0 and not reading.ambient_warning
    assert reading.n_samples == 5 and reading.spread_c == 0.18
    assert reading.mono_s == pytest.approx(100.4)


def test_too_few_samples_is_not_yet_a_reading():
    assert stable_reading(samples(36.5, 36.5, 36.5, 36.5), DEFAULT) is None


def test_person_leaning_in_is_not_stable_until_the_values_settle():
    rising = samples(31.0, 33.0, 34.5, 35.6, 36.1, 36.4, 36.5)
    assert stable_reading(rising, DEFAULT) is None
    settled = rising + samples(36.5, 36.6, 36.5, start=100.7)
    assert stable_reading(settled, DEFAULT).object_c == 36.5


def test_spread_limit_is_inclusive():
    at_limit = stable_reading(samples(36.2, 36.5, 36.3, 36.4, 36.35), DEFAULT)
    assert at_limit is not None and at_limit.spread_c == 0.3
    assert stable_reading(samples(36.2, 36.52, 36.3, 36.4, 36.35), DEFAULT) is None


def test_newest_stable_window_wins():
    first = samples(36.0, 36.0, 36.0, 36.0, 36.0)
    second = samples(36.8, 36.8, 36.8, 36.8, 36.8, start=100.5)
    assert stable_reading(first + second, DEFAULT).object_c == 36.8


def test_room_temperature_is_nobody_there_and_an_earlier_forehead_still_counts():
    assert stable_reading(samples(24.0, 24.1, 24.0, 24.0, 24.1), DEFAULT) is None
    # The person stepped away after a steady reading: the reading stands.
    walked_off = samples(36.6, 36.6, 36.7, 36.6, 36.6, 25.0, 24.0, 24.0, 24.0, 24.0)
    assert stable_reading(walked_off, DEFAULT).object_c == 36.6


def test_gap_in_samples_breaks_a_window():
    gappy = samples(36.5, 36.5, 36.5) + samples(36.5, 36.5, start=105.0)
    assert stable_reading(gappy, DEFAULT) is None


def test_above_ceiling_is_out_of_range():
    reading = stable_reading(samples(45.0, 45.1, 45.0, 45.0, 45.1), DEFAULT)
    assert reading.status == "reading_out_of_range"
    assert reading.object_c == 45.0 and reading.body_c is None


def test_mlx_error_flag_values_are_a_sensor_fault_but_one_glitch_is_skipped():
    # 0xFFFF reads as 1037.55 °C through the Adafruit driver.
    all_bad = samples(1037.55, 1037.55, 1037.55, 1037.55, 1037.55)
    assert stable_reading(all_bad, DEFAULT).status == "sensor_fault"
    nan = [Sample(100 + i / 10, math.nan, 22.0) for i in range(5)]
    assert stable_reading(nan, DEFAULT).status == "sensor_fault"
    glitch = samples(36.5, 36.5, 1037.55, 36.5, 36.5, 36.6, 36.5, 36.5)
    assert stable_reading(glitch, DEFAULT).object_c == 36.5


def test_sensor_fault_reading_from_the_driver():
    reading = sensor_fault("I2C error: [Errno 121] Remote I/O error", mono_s=5.0)
    assert reading.status == "sensor_fault" and not reading.ok and "121" in reading.detail


# --- timeout -----------------------------------------------------------------------


def test_timeout_gives_no_reading_and_says_why():
    fidgety = samples(35.0, 36.5, 35.2, 36.7, 35.1, 36.6)
    assert reading_or_timeout(fidgety, DEFAULT, started_mono_s=100.0, now_mono_s=103.0) is None
    reading = reading_or_timeout(fidgety, DEFAULT, started_mono_s=100.0, now_mono_s=106.0)
    assert reading.status == "no_reading" and reading.detail == "not steady"

    too_far = samples(27.0, 27.1, 27.0, 27.0, 27.1)
    reading = timed_out(too_far, DEFAULT)
    assert reading.status == "no_reading" and "below floor" in reading.detail and reading.object_c == 27.0

    assert timed_out([], DEFAULT).status == "no_reading"
    assert timed_out(samples(1037.55, 1037.55), DEFAULT).status == "sensor_fault"


def test_timeout_still_returns_a_stable_reading_if_there_is_one():
    steady = samples(36.5, 36.5, 36.5, 36.5, 36.5)
    assert reading_or_timeout(steady, DEFAULT, started_mono_s=0.0, now_mono_s=1000.0).status == "ok"


# --- compensation and ambient --------------------------------------------------------


def test_offset_is_added_and_every_value_is_kept():
    s = TemperatureSettings(offset_c=0.5)
    reading = stable_reading(samples(36.8, 36.8, 36.8, 36.8, 36.8), s)
    assert (reading.object_c, reading.offset_c, reading.body_c) == (36.8, 0.5, 37.3)
    assert is_fever(reading.body_c, s.threshold_c)


def test_compensation_table_interpolates_and_holds_flat_at_the_ends():
    table = {"10": 0.8, "20": 0.4, "30": 0.2}
    assert compensation_offset(5.0, table) == 0.8
    assert compensation_offset(15.0, table) == pytest.approx(0.6)
    assert compensation_offset(25.0, table) == pytest.approx(0.3)
    assert compensation_offset(35.0, table) == 0.2
    assert compensation_offset(20.0, {}) == 0.0

    s = TemperatureSettings(offset_c=0.2, compensation=table)
    cold = stable_reading(samples(35.9, 35.9, 35.9, 35.9, 35.9, ambient=15.0), s)
    assert cold.offset_c == 0.8 and cold.body_c == 36.7 and cold.ambient_warning  # 15 < 16


@pytest.mark.parametrize("ambient, warn", [(15.9, True), (16.0, False), (40.0, False), (40.1, True), (-7.0, True)])
def test_ambient_outside_16_to_40_warns(ambient, warn):
    reading = stable_reading(samples(36.5, 36.5, 36.5, 36.5, 36.5, ambient=ambient), DEFAULT)
    assert reading.ambient_warning is warn


# --- threshold in hundredths ------------------------------------------------------------


@pytest.mark.parametrize(
    "body, flagged",
    [
        (37.3, True),
        (37.30, True),
        (36.8 + 0.5, True),  # = 37.29999999999999 in floats
        (37.1 + 0.2, True),  # = 37.300000000000004
        (37.295, True),  # rounds half up to 37.30
        (37.2949, False),
        (37.29, False),
        (37.28, False),
        (38.5, True),
        (36.5, False),
    ],
)
def test_37_3_is_flagged_and_37_28_is_not(body, flagged):
    assert is_fever(body, 37.3) is flagged


def test_centi_rounds_half_up_on_the_decimal_form():
    assert centi(37.3) == 3730 and centi(36.8 + 0.5) == 3730
    assert centi(37.285) == 3729 and centi(37.2849) == 3728
    assert centi(-0.005) == -1  # halves go away from zero (matters only for offsets)
    assert centi(1e26) == 10**28 and is_fever(1e300, 37.3)  # no decimal overflow
    with pytest.raises(ValueError):
        centi(math.inf)


@given(st.integers(min_value=3000, max_value=4300), st.floats(min_value=-0.0049, max_value=0.0049))
@settings(max_examples=500, deadline=None)
def test_threshold_boundary_holds_whatever_the_float_noise(hundredths, noise):
    assert is_fever(hundredths / 100 + noise, 37.3) is (hundredths >= 3730)


@given(
    st.integers(min_value=3000, max_value=4300),
    st.integers(min_value=-200, max_value=500),
)
@settings(max_examples=500, deadline=None)
def test_object_plus_offset_is_compared_exactly(object_centi, offset_centi):
    s = TemperatureSettings(offset_c=offset_centi / 100)
    reading = stable_reading(samples(*[object_centi / 100] * 5), s)
    if reading.status != "ok":
        assert object_centi / 100 > s.ceiling_c
        return
    assert is_fever(reading.body_c, 37.3) is (object_centi + offset_centi >= 3730)


@given(st.lists(st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True), st.floats(allow_nan=True)), max_size=30))
@settings(max_examples=300, deadline=None)
def test_any_samples_never_raise(raw):
    window = [Sample(*values) for values in raw]
    result = stable_reading(window, DEFAULT)
    assert result is None or isinstance(result, Reading)
    assert isinstance(timed_out(window, DEFAULT), Reading)


# --- re-measure -------------------------------------------------------------------------


def _reading(body: float, mono: float) -> Reading:
    return Reading(status="ok", object_c=body, ambient_c=22.0, offset_c=0.0, body_c=body, n_samples=5,
                   spread_c=0.1, mono_s=mono)


def test_remeasure_confirms_or_clears_within_the_window_and_keeps_both():
    first = _reading(37.6, 100.0)
    confirmed = remeasure(first, _reading(37.4, 160.0), DEFAULT)
    assert confirmed.outcome == "confirmed" and confirmed.reading.body_c == 37.4
    cleared = remeasure(first, _reading(36.9, 160.0), DEFAULT)
    assert cleared.outcome == "cleared" and cleared.reading.body_c == 36.9
    assert cleared.first is first and cleared.second.body_c == 36.9


def test_remeasure_too_late_or_failed_leaves_the_first_flag_standing():
    first = _reading(37.6, 100.0)
    late = remeasure(first, _reading(36.9, 100.0 + DEFAULT.remeasure_window_s + 1), DEFAULT)
    assert late.outcome == "unconfirmed" and late.reading is first and late.second is not None
    failed = remeasure(first, Reading(status="no_reading", mono_s=130.0), DEFAULT)
    assert failed.outcome == "unconfirmed" and failed.reading is first
    assert remeasure(first, None, DEFAULT).outcome == "unconfirmed"
