"""A simulated monotonic clock: time moves only when it is told to.

The per-person loop (`gateway.loop.Checkpoint`), the fake camera, the fake
thermometer and its sampler all read time through one injected callable
(`mono`, `clock`). On a kiosk that is `time.monotonic`; in `checkpoint
simulate` and in the loop tests it is a `SimClock`, advanced by
`gateway.stepped.SteppedGate`, so a 500-person morning runs as fast as the
CPU allows and every run of one scenario makes the same decisions.

    clock = SimClock()
    clock.now()          # 1000.0
    clock.advance(0.05)  # 1000.05
"""

from __future__ import annotations

import threading

START_S = 1000.0  # not zero: code that treats 0.0 as "never" keeps working


class SimClock:
    """Monotonic seconds that only move forward when advanced. Thread-safe to read."""

    def __init__(self, start_s: float = START_S):
        self._now = float(start_s)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    __call__ = now  # usable wherever a `time.monotonic`-like callable is expected

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds!r} s)")
        with self._lock:
            self._now += seconds
            return self._now

    def advance_to(self, moment: float) -> float:
        with self._lock:
            self._now = max(self._now, moment)
            return self._now
