"""Is the thermometer's signal believable? Pure: samples and counters in, a verdict out.

A thermometer can fail while still answering. `ThermometerWatch.fault()`
looks at the sampler's recent samples and bad-sample counter and names what
is wrong, so the loop refuses automatic entry on those readings (a
``sensor_fault``, the guard can still open) and the health panel says why:

* ``frozen``: object and ambient words identical for `FROZEN_S` at a value a
  person could have. A live MLX90614 always flickers in the last digit, and
  a real reading moves between people and the room; a stuck one admits
  everyone at 36.4 °C. (Frozen at a room value only yields ``no_reading``
  decisions, which the guard sees anyway.)
* ``errors``: only flagged or 0xFFFF words for `ERROR_RUN_S`: no reading at all.
* ``spikes``: `SPIKES` or more single-sample jumps of `SPIKE_C` in `SPIKE_WINDOW_S`.
* ``ramp``: a steady climb or fall of `RAMP_C` or more over `RAMP_S`, no step
  larger than a person's arrival: the sensor is drifting, not measuring.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import TemperatureSettings
from gateway.thermometry import Sample

FROZEN_S = 5.0
FROZEN_EPS_C = 0.005
ERROR_RUN_S = 2.0
SPIKE_C = 3.0
SPIKE_NEIGHBOURS_C = 0.5
SPIKES = 3
SPIKE_WINDOW_S = 60.0
RAMP_S = 8.0
RAMP_C = 2.0
RAMP_STEP_C = 0.5


@dataclass(frozen=True)
class SignalFault:
    code: str  # frozen | errors | spikes | ramp
    detail: str  # English, for the log and the health panel's detail


class ThermometerWatch:
    """Feed it the sampler's state on each call; it keeps only counters between calls."""

    def __init__(self, settings: TemperatureSettings):
        self.settings = settings
        self._bad_seen = 0
        self._bad_since: float | None = None  # first bad sample of the current run with no good one
        self._lock = threading.Lock()  # the loop and the health tick both ask

    def fault(self, samples: Sequence[Sample], bad_total: int, now_s: float) -> SignalFault | None:
        with self._lock:
            return self._fault(samples, bad_total, now_s)

    def _fault(self, samples: Sequence[Sample], bad_total: int, now_s: float) -> SignalFault | None:
        last_good = samples[-1].mono_s if samples else None
        if bad_total > self._bad_seen:
            if self._bad_since is None or (last_good is not None and last_good > self._bad_since):
                self._bad_since = now_s
            self._bad_seen = bad_total
        elif last_good is not None and self._bad_since is not None and last_good > self._bad_since:
            self._bad_since = None
        if self._bad_since is not None and (last_good is None or last_good < self._bad_since) \
                and now_s - self._bad_since >= ERROR_RUN_S:
            return SignalFault("errors", f"only error words from the thermometer for {now_s - self._bad_since:.0f} s")
        return frozen(samples, self.settings.floor_c) or spikes(samples) or ramp(samples)


def frozen(samples: Sequence[Sample], floor_c: float) -> SignalFault | None:
    if not samples:
        return None
    last = samples[-1]
    start = last.mono_s
    for s in reversed(samples):
        if abs(s.object_c - last.object_c) > FROZEN_EPS_C or abs(s.ambient_c - last.ambient_c) > FROZEN_EPS_C:
            break
        start = s.mono_s
    if last.mono_s - start >= FROZEN_S and last.object_c >= floor_c:
        return SignalFault("frozen", f"the reading has not moved from {last.object_c:.2f} °C "
                                     f"for {last.mono_s - start:.0f} s (stuck sensor?)")
    return None


def spikes(samples: Sequence[Sample]) -> SignalFault | None:
    if len(samples) < 3:
        return None
    since = samples[-1].mono_s - SPIKE_WINDOW_S
    count = 0
    for a, b, c in zip(samples, samples[1:], samples[2:]):
        if b.mono_s < since:
            continue
        if abs(a.object_c - c.object_c) <= SPIKE_NEIGHBOURS_C and \
                min(abs(b.object_c - a.object_c), abs(b.object_c - c.object_c)) >= SPIKE_C:
            count += 1
    if count >= SPIKES:
        return SignalFault("spikes", f"{count} single-sample spikes in {SPIKE_WINDOW_S:.0f} s")
    return None


def ramp(samples: Sequence[Sample]) -> SignalFault | None:
    if len(samples) < 3 or samples[-1].mono_s - samples[0].mono_s < RAMP_S:
        return None
    window = [s for s in samples if s.mono_s >= samples[-1].mono_s - RAMP_S]
    steps = [b.object_c - a.object_c for a, b in zip(window, window[1:])]
    if not steps or max(abs(d) for d in steps) > RAMP_STEP_C:
        return None
    change = window[-1].object_c - window[0].object_c
    one_way = all(d >= 0 for d in steps) or all(d <= 0 for d in steps)
    if one_way and abs(change) >= RAMP_C:
        return SignalFault("ramp", f"the reading drifted {change:+.1f} °C in {RAMP_S:.0f} s without a person")
    return None
