"""Rate limits and login throttling: counted in the process by default, shared
by every replica through Redis with `registry serve --redis URL`."""

from __future__ import annotations

import uuid

import httpx
import pytest

from sync.server import auth, open_database
from sync.server.ratelimit import LoginThrottle, RateLimiter
from sync.server.schema import migrate
from tests.sync.street_harness import REDIS_URL, RegistryProcess, reachable


@pytest.fixture
def redis_url():
    if not reachable("127.0.0.1", 6379) and "127.0.0.1:6379" in REDIS_URL:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    return REDIS_URL


def limiter(**kw) -> RateLimiter:
    return RateLimiter(per_key_rate=1, per_key_burst=5, global_rate=1000, global_burst=1000, **kw)


def admitted(limiters: list[RateLimiter], tries: int, key: object = 7) -> int:
    return sum(limiters[i % len(limiters)].take(key) == 0 for i in range(tries))


def test_in_process_limiters_each_count_their_own():
    assert admitted([limiter(), limiter()], 20) == 10  # two processes: twice the budget


def test_limiters_on_one_redis_share_one_budget(redis_url):
    namespace = uuid.uuid4().hex
    pair = [limiter(storage_url=redis_url, namespace=namespace) for _ in range(2)]
    assert admitted(pair, 20) == 5
    wait = pair[1].take(7)
    assert 1 <= wait <= 5  # Retry-After: whole seconds until the window frees a unit
    # Another registry on the same Redis has a budget of its own.
    assert admitted([limiter(storage_url=redis_url, namespace=uuid.uuid4().hex)], 5) == 5


def test_an_unreachable_redis_admits_rather_than_stopping_every_gate():
    down = limiter(storage_url="redis://127.0.0.1:1/0")
    assert admitted([down], 10) == 10


def test_a_store_that_is_not_redis_is_refused():
    with pytest.raises(ValueError, match="redis://"):
        limiter(storage_url="memcached://127.0.0.1:11211")


def test_login_throttle_is_shared_and_forgets_after_a_success(redis_url):
    namespace = uuid.uuid4().hex
    a, b = (LoginThrottle(failures=3, window_s=60, storage_url=redis_url, namespace=namespace) for _ in range(2))
    a.failed("wang")
    b.failed("wang")
    assert a.blocked("wang") == 0 and b.blocked("wang") == 0
    a.failed("wang")
    assert 1 <= b.blocked("wang") <= 60  # the third failure, counted on the other replica
    assert a.blocked("li") == 0
    b.succeeded("wang")
    assert a.blocked("wang") == 0


def test_two_server_processes_on_one_redis_share_one_budget(tmp_path, redis_url):
    db_url = f"sqlite:///{tmp_path / 'registry.db'}"
    db = open_database(db_url)
    migrate(db)
    _, token = auth.add_gate(db, "site-1", "east-1")
    db.dispose()
    args = ("--redis", redis_url, "--gate-rate", "0.5", "--gate-burst", "4")
    servers = [RegistryProcess(db_url, tmp_path / f"server-{i}.log", *args).launch() for i in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        statuses = []
        for i in range(12):
            resp = httpx.get(f"{servers[i % 2].url}/api/v1/sites/site-1/registry",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                assert int(resp.headers["Retry-After"]) >= 1
    finally:
        for server in servers:
            server.stop()
    # One budget of 4 across both processes (8 if each counted its own).
    assert statuses.count(200) == 4, statuses
    assert statuses.count(429) == 8
