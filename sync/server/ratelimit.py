"""Admission control: a budget per gate, one for the whole server process,
and a login throttle.

When a city's power comes back, thousands of kiosks with backlogs call at
once. Each request takes one unit of its budgets; an empty budget answers 429
with Retry-After (the time until a unit is back), and the kiosks' jittered
backoff spreads the herd out.

Where the counts live:
- by default in this process's memory: token buckets, about a microsecond a
  request (one community, one server process);
- with `storage_url="redis://host:6379/0"` (`registry serve --redis URL`) the
  per-gate budgets and the login throttle are counted in Redis by the
  `limits` library, so a gate spraying requests over every replica behind a
  load balancer still has one budget. The global budget stays per process:
  it guards that process's own CPU, which is what runs out.
Redis keys are prefixed with the registry's instance id, so two registries on
one Redis never share a budget. If Redis cannot be reached the request is
admitted, Redis is left alone for a few seconds, and the outage is logged
once: a Redis blip must not stop every gate in the district.

In Redis a budget of `rate` per second with bursts of `burst` is counted as
`burst` requests per sliding window of `ceil(burst / rate)` seconds: the same
burst, and a long-run rate of at most `rate`.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger(__name__)


def open_storage(storage_url: str | None) -> Storage:
    """Memory (None) or a shared store such as redis://127.0.0.1:6379/0."""
    if not storage_url:
        return storage_from_string("memory://")
    if not storage_url.startswith(("redis://", "rediss://", "redis+unix://")):
        raise ValueError(f"{storage_url!r}: the shared rate-limit store must be a redis:// URL")
    return storage_from_string(storage_url, wrap_exceptions=True, socket_timeout=0.5, socket_connect_timeout=0.5)


def budget(rate: float, burst: float) -> RateLimitItem:
    if rate <= 0 or burst < 1:
        raise ValueError("rate must be > 0 and burst >= 1")
    return RateLimitItemPerSecond(int(burst), max(1, math.ceil(burst / rate)))


def _whole_seconds(wait: float) -> int:
    return 0 if wait <= 0 else max(1, math.ceil(wait))


STORE_RETRY_S = 5.0


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


class _Counter:
    """A sliding-window limiter over one storage that admits when the storage is down."""

    def __init__(self, storage: Storage, namespace: str):
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._namespace = namespace
        self._down_until = 0.0  # monotonic; while in the future, do not even try
        self._storage_down = False

    def _guard(self, fn, fallback):
        if self._down_until and time.monotonic() < self._down_until:
            return fallback
        try:
            result = fn()
        except StorageError as exc:
            self._down_until = time.monotonic() + STORE_RETRY_S
            if not self._storage_down:
                self._storage_down = True
                log.error("rate limits: shared store unreachable, admitting requests: %s", exc)
            return fallback
        if self._storage_down:
            self._storage_down = False
            self._down_until = 0.0
            log.info("rate limits: shared store reachable again")
        return result

    def take(self, item: RateLimitItem, *ids: str) -> int:
        """0 if a unit was taken, else whole seconds until one is back (>= 1)."""
        ids = (self._namespace, *ids)
        if self._guard(lambda: self._limiter.hit(item, *ids), True):
            return 0
        return self.wait(item, *ids[1:])

    def wait(self, item: RateLimitItem, *ids: str) -> int:
        ids = (self._namespace, *ids)
        stats = self._guard(lambda: self._limiter.get_window_stats(item, *ids), None)
        return 1 if stats is None else max(1, _whole_seconds(stats.reset_time - time.time()))

    def allowed(self, item: RateLimitItem, *ids: str) -> bool:
        ids = (self._namespace, *ids)
        return self._guard(lambda: self._limiter.test(item, *ids), True)

    def clear(self, item: RateLimitItem, *ids: str) -> None:
        ids = (self._namespace, *ids)
        self._guard(lambda: self._limiter.clear(item, *ids), None)


class RateLimiter:
    """A global budget (this process) plus one budget per key (gate id): in
    memory, or in a shared store when `storage_url` is given."""

    def __init__(self, *, per_key_rate: float, per_key_burst: float, global_rate: float,
                 global_burst: float, clock=time.monotonic, storage_url: str | None = None,
                 namespace: str = "registry"):
        self._lock = threading.Lock()
        self._clock = clock
        self._per_key = (per_key_rate, per_key_burst)
        self._global = TokenBucket(global_rate, global_burst, clock=clock)
        self._buckets: dict[object, TokenBucket] = {}
        self._shared_item = budget(per_key_rate, per_key_burst)
        self._shared = _Counter(open_storage(storage_url), namespace) if storage_url else None

    def take_global(self) -> int:
        """0 if admitted, else the Retry-After in whole seconds (>= 1)."""
        with self._lock:
            return _whole_seconds(self._global.take())

    def take(self, key: object) -> int:
        """0 if admitted, else the Retry-After in whole seconds (>= 1)."""
        if self._shared is not None:
            return self._shared.take(self._shared_item, "gate", str(key))
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > 100_000:  # forget idle gates rather than grow forever
                    self._buckets.clear()
                bucket = self._buckets[key] = TokenBucket(*self._per_key, clock=self._clock)
            return _whole_seconds(bucket.take())


class LoginThrottle:
    """At most `failures` failed logins per `window_s` per key (an account
    name, or an address); shared through the same store as the rate limits.

        wait = throttle.blocked("wang")   # > 0: refuse with Retry-After
        throttle.failed("wang")           # after a wrong password
        throttle.succeeded("wang")        # forget the failures
    """

    def __init__(self, *, failures: int = 5, window_s: int = 300, storage_url: str | None = None,
                 namespace: str = "registry"):
        if failures < 1 or window_s < 1:
            raise ValueError("failures and window_s must be at least 1")
        self._item = RateLimitItemPerSecond(failures, window_s)
        self._counter = _Counter(open_storage(storage_url), namespace)

    def blocked(self, key: str) -> int:
        """0 if a login may be tried, else whole seconds to wait."""
        if self._counter.allowed(self._item, "login", key):
            return 0
        return self._counter.wait(self._item, "login", key)

    def failed(self, key: str) -> None:
        self._counter.take(self._item, "login", key)

    def succeeded(self, key: str) -> None:
        self._counter.clear(self._item, "login", key)
