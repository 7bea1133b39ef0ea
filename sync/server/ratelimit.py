"""Admission control: token buckets per gate and for the whole server.

When a city's power comes back, thousands of kiosks with backlogs call at
once. Each request takes a token; an empty bucket answers 429 with
Retry-After (the time until a token is back), and the kiosks' jittered
backoff spreads the herd out. The buckets live in memory, per server process.
"""

from __future__ import annotations

import math
import threading
import time


class TokenBucket:
    def __init__(self, rate: float, burst: float, *, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self) -> float:
        """Take one token: 0.0 if granted, else seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class RateLimiter:
    """A global bucket plus one bucket per key (gate id)."""

    def __init__(self, *, per_key_rate: float, per_key_burst: float, global_rate: float,
                 global_burst: float, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._per_key = (per_key_rate, per_key_burst)
        self._global = TokenBucket(global_rate, global_burst, clock=clock)
        self._buckets: dict[object, TokenBucket] = {}

    def take_global(self) -> int:
        with self._lock:
            return _whole_seconds(self._global.take())

    def take(self, key: object) -> int:
        """0 if admitted, else the Retry-After in whole seconds (>= 1)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > 100_000:  # forget idle gates rather than grow forever
                    self._buckets.clear()
                bucket = self._buckets[key] = TokenBucket(*self._per_key, clock=self._clock)
            return _whole_seconds(bucket.take())


def _whole_seconds(wait: float) -> int:
    return 0 if wait <= 0 else max(1, math.ceil(wait))
