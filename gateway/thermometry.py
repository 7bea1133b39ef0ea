"""Thermometer samples -> one Reading. Pure: no clock, no I/O.

The caller (the loop) collects `Sample`s from the driver, with the monotonic
time of each, and asks `stable_reading()` after every new sample. The rules:

* **Stable window.** The newest run of `min_samples` consecutive samples whose
  object spread (max - min) is within `spread_c`. Its median is the reading.
  The MLX90614 averages its whole field of view, so while a person leans in
  the values climb; only a steady window is a measurement.
* **Plausibility band.** A steady window below `floor_c` is the room, not a
  forehead (nobody there, or too far away): keep waiting. Above `ceiling_c` is
  not a person: ``reading_out_of_range``. When `reading_timeout_s` passes
  without a reading, the result is ``no_reading`` (the loop asks the person to
  hold still).
* **Sensor fault.** A value that is not a number, or at or above 382.2 °C (the
  MLX90614 error flag: raw top bit set; 0xFFFF reads as 1037.55 °C and the
  CircuitPython driver does not check), is a ``sensor_fault``.
* **Compensation.** body = object + offset_c + table(ambient), the table being
  the optional ``temperature.compensation`` (ambient -> extra offset), linearly
  interpolated and held flat beyond its ends.
* **Threshold.** `is_fever()` compares in hundredths of a degree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Literal

from gateway.config import TemperatureSettings

ReadingStatus = Literal["ok", "no_reading", "reading_out_of_range", "sensor_fault"]

# raw 0x8000 * 0.02 - 273.15: any value from here up has the MLX90614 error bit set.
MLX_ERROR_C = 382.21
# Samples further apart than this many sample periods are not one window: the
# loop missed samples (bus retries, a busy Pi) and the person may have moved.
_MAX_GAP_PERIODS = 3.0
# Enough digits for any finite float in hundredths (the default 28 is not).
_WIDE = Context(prec=400)


@dataclass(frozen=True)
class Sample:
    """One thermometer read: monotonic seconds, raw object and ambient °C."""

    mono_s: float
    object_c: float
    ambient_c: float


@dataclass(frozen=True)
class Reading:
    """One measurement of one person, or why there is none.

    For status ``ok`` every number is set. For ``reading_out_of_range`` the raw
    values are set and `body_c` is None. For ``no_reading`` and
    ``sensor_fault`` the values are whatever was last seen (maybe None);
    `detail` says more, in English, for the log.
    """

    status: ReadingStatus
    object_c: float | None = None
    ambient_c: float | None = None
    offset_c: float | None = None
    body_c: float | None = None
    ambient_warning: bool = False
    n_samples: int = 0
    spread_c: float | None = None
    mono_s: float | None = None  # time of the last sample of the window
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sensor_fault(detail: str, mono_s: float | None = None) -> Reading:
    """The reading when the driver reports a fault (I2C error, sensor missing)."""
    return Reading(status="sensor_fault", mono_s=mono_s, detail=detail)


def centi(value: float) -> int:
    """`value` in hundredths of a degree, rounded half up (away from zero) on its decimal form.

    Rounding uses the shortest decimal that round-trips the float (``repr``),
    so float noise cannot move a boundary: 36.8 + 0.5 = 37.29999999999999
    becomes 3730, 37.28 becomes 3728, and 37.295 becomes 3730 (half up).
    Raises ValueError for NaN or infinity.
    """
    if not math.isfinite(value):
        raise ValueError(f"not a finite temperature: {value!r}")
    try:
        exact = Decimal(repr(float(value)))
    except InvalidOperation:  # pragma: no cover - repr of a finite float always parses
        raise ValueError(f"not a temperature: {value!r}") from None
    return int(exact.scaleb(2, _WIDE).quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_WIDE))


def is_fever(body_c: float, threshold_c: float) -> bool:
    """True when body_c >= threshold_c, both rounded to hundredths (half up).

    With the default 37.3: 37.3, 37.30, 37.295 and 37.29999999999999 are
    flagged; 37.28 and 37.2949 are not.
    """
    return centi(body_c) >= centi(threshold_c)


def compensation_offset(ambient_c: float, table: Mapping[str, float] | None) -> float:
    """Extra skin-to-body offset for this ambient, from the optional table.

    Keys are ambient temperatures (strings, as TOML keys are); between keys
    the offset is interpolated linearly, beyond the ends it is held flat.
    An empty table adds nothing.
    """
    if not table:
        return 0.0
    points = sorted((float(k), float(v)) for k, v in table.items())
    if ambient_c <= points[0][0]:
        return points[0][1]
    if ambient_c >= points[-1][0]:
        return points[-1][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= ambient_c <= x1:
            return y0 + (y1 - y0) * (ambient_c - x0) / (x1 - x0)
    return 0.0  # pragma: no cover - the loop above always returns


def stable_reading(samples: Sequence[Sample], settings: TemperatureSettings) -> Reading | None:
    """The newest stable reading in `samples`, or None: no stable window yet.

    Only windows at or above the floor count (a person in front of the
    sensor); the newest one wins. A sensor fault in the newest window is
    reported at once.
    """
    n = settings.min_samples
    if len(samples) < n:
        return None
    # One glitch is skipped (its windows are not stable); a sensor that gives
    # nothing but error values is a fault the guard must see.
    newest = samples[-n:]
    if not any(_plausible_number(s) for s in newest):
        return _fault_in(newest)
    max_gap = _MAX_GAP_PERIODS / settings.sample_hz
    for end in range(len(samples), n - 1, -1):
        window = samples[end - n : end]
        if _fault_in(window):
            continue
        if any(b.mono_s - a.mono_s > max_gap or b.mono_s < a.mono_s for a, b in zip(window, window[1:])):
            continue
        objects = [s.object_c for s in window]
        spread = max(objects) - min(objects)
        if spread > settings.spread_c + 1e-9:
            continue
        median = statistics.median(objects)
        if median < settings.floor_c:
            continue
        return _reading_from(window, median, spread, settings)
    return None


def reading_or_timeout(
    samples: Sequence[Sample],
    settings: TemperatureSettings,
    *,
    started_mono_s: float,
    now_mono_s: float,
) -> Reading | None:
    """`stable_reading()`, or ``no_reading`` once `reading_timeout_s` has passed
    since `started_mono_s` (when the pass was shown). None: keep trying."""
    reading = stable_reading(samples, settings)
    if reading is not None:
        return reading
    if now_mono_s - started_mono_s >= settings.reading_timeout_s:
        return timed_out(samples, settings)
    return None


def timed_out(samples: Sequence[Sample], settings: TemperatureSettings) -> Reading:
    """The reading when time is up: a stable one if any, else ``no_reading``
    carrying the last values seen, so the log shows why (too cold = too far,
    too jumpy = not holding still)."""
    reading = stable_reading(samples, settings)
    if reading is not None:
        return reading
    if not samples:
        return Reading(status="no_reading", detail="no samples")
    tail = [s for s in samples[-settings.min_samples :] if _plausible_number(s)]
    if not tail:
        return _fault_in(samples[-settings.min_samples :]) or sensor_fault("no usable samples")
    objects = [s.object_c for s in tail]
    median = statistics.median(objects)
    spread = max(objects) - min(objects)
    why = "below floor (nobody there or too far)" if median < settings.floor_c else "not steady"
    return Reading(
        status="no_reading",
        object_c=round(median, 2),
        ambient_c=round(statistics.median(s.ambient_c for s in tail), 2),
        n_samples=len(tail),
        spread_c=round(spread, 2),
        mono_s=tail[-1].mono_s,
        detail=why,
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plausible_number(sample: Sample) -> bool:
    return (
        _finite(sample.mono_s)
        and _finite(sample.object_c)
        and _finite(sample.ambient_c)
        and sample.object_c < MLX_ERROR_C
        and sample.ambient_c < MLX_ERROR_C
    )


def _fault_in(window: Sequence[Sample]) -> Reading | None:
    for sample in window:
        if not _plausible_number(sample):
            return sensor_fault(
                f"implausible sample object={sample.object_c!r} ambient={sample.ambient_c!r}",
                mono_s=sample.mono_s if _finite(sample.mono_s) else None,
            )
    return None


def _reading_from(
    window: Sequence[Sample], median: float, spread: float, settings: TemperatureSettings
) -> Reading:
    ambient = statistics.median(s.ambient_c for s in window)
    object_c = round(median, 2)
    ambient_c = round(ambient, 2)
    common = dict(
        object_c=object_c,
        ambient_c=ambient_c,
        ambient_warning=not settings.ambient_min_c <= ambient_c <= settings.ambient_max_c,
        n_samples=len(window),
        spread_c=round(spread, 2),
        mono_s=window[-1].mono_s,
    )
    if object_c > settings.ceiling_c:
        return Reading(status="reading_out_of_range", detail=f"object {object_c} > {settings.ceiling_c}", **common)
    offset = round(settings.offset_c + compensation_offset(ambient_c, settings.compensation), 2)
    body = (centi(object_c) + centi(offset)) / 100
    return Reading(status="ok", offset_c=offset, body_c=body, **common)


# --- re-measure -------------------------------------------------------------------

RemeasureOutcome = Literal["confirmed", "cleared", "unconfirmed"]


@dataclass(frozen=True)
class RemeasureResult:
    """A flagged first reading and what a second measurement made of it.

    * ``confirmed``: the second reading, within the window, is flagged too.
    * ``cleared``: the second reading, within the window, is normal.
    * ``unconfirmed``: no usable second reading within the window; the first
      flag stands.

    Both readings are kept for the log. `reading` is the one the decision
    uses: the second when it confirmed or cleared, else the first.
    """

    outcome: RemeasureOutcome
    first: Reading
    second: Reading | None

    @property
    def reading(self) -> Reading:
        if self.outcome in ("confirmed", "cleared") and self.second is not None:
            return self.second
        return self.first


def remeasure(first: Reading, second: Reading | None, settings: TemperatureSettings) -> RemeasureResult:
    """Combine a flagged first reading with a second one (or None: none came).

    The second counts only if it is ``ok`` and was taken within
    `remeasure_window_s` after the first (by their monotonic times).
    """
    if second is None or not second.ok or second.body_c is None:
        return RemeasureResult("unconfirmed", first, second)
    if first.mono_s is not None and second.mono_s is not None:
        elapsed = second.mono_s - first.mono_s
        if not 0 <= elapsed <= settings.remeasure_window_s:
            return RemeasureResult("unconfirmed", first, second)
    if is_fever(second.body_c, settings.threshold_c):
        return RemeasureResult("confirmed", first, second)
    return RemeasureResult("cleared", first, second)
