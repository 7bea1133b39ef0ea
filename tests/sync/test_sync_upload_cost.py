"""What a small upload costs the server (database trips), and that the gate-token
cache that cuts it never outlives a revocation by more than the poll interval.
Speed itself is measured in bench/fleet.py; these tests pin the behaviour."""

from __future__ import annotations

import threading
import time
import warnings
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, update

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sync.server import auth, create_app, open_database
from sync.server.schema import events, gates
from tests.sync.test_sync_server import ev


def batch(first: int, n: int = 2) -> dict:
    return {"first_seq": first, "events": [ev(first + i) for i in range(n)]}


@pytest.fixture
def served(db_url):
    db = open_database(db_url)
    app = create_app(db=db)
    gate, token = auth.add_gate(db, "site-a", "gate-a")
    with TestClient(app) as client:
        yield db, client, {"Authorization": f"Bearer {token}"}
    db.dispose()


def test_a_small_upload_is_one_statement(served, monkeypatch):
    db, client, headers = served
    monkeypatch.setattr(auth, "REVOCATION_POLL_S", 3600)  # no poll inside the counted upload
    url = "/api/v1/streams/s-a/events"
    assert client.post(url, json=batch(1), headers=headers).status_code == 200  # creates the stream
    # The retention purge and the notifier run in their own threads: count
    # what the request's worker thread did.
    checkouts, statements = [], []

    def ours() -> bool:
        return threading.current_thread().name == "AnyIO worker thread"

    def checkout(*_args):
        checkouts.extend([1] if ours() else [])

    def statement(_conn, _cursor, sql, *_args):
        statements.extend([sql] if ours() else [])

    event.listen(db.engine, "checkout", checkout)
    event.listen(db.engine, "before_cursor_execute", statement)
    sent = []
    if db.is_postgres:  # what reaches the driver from the event loop
        import psycopg

        real_execute = psycopg.AsyncCursor.execute

        async def execute(self, query, *args, **kwargs):
            sent.append(str(query))
            return await real_execute(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)
    try:
        r = client.post(url, json=batch(3), headers=headers)
    finally:
        event.remove(db.engine, "checkout", checkout)
        event.remove(db.engine, "before_cursor_execute", statement)
    assert r.status_code == 200 and r.json()["acked_through"] == 4
    assert r.json()["results"] == [{"seq": 3, "status": "accepted"}, {"seq": 4, "status": "accepted"}]
    # Was: a worker thread taking two pooled connections (a token read, then
    # the write) and, on PostgreSQL, BEGIN, four statements and COMMIT. Now:
    # the cached gate, then on PostgreSQL one statement from the event loop
    # outside a transaction block (advance the watermark and insert the rows,
    # or do nothing); SQLite runs BEGIN IMMEDIATE, lock, insert, advance on
    # one pooled connection.
    if db.is_postgres:
        assert checkouts == [] and statements == []
        assert len(sent) == 1 and sent[0].startswith("WITH advanced AS (UPDATE streams")
    else:
        assert len(checkouts) == 1 and len(statements) == 4
    with db.read() as conn:
        stored = conn.execute(events.select().where(events.c.stream_id == "s-a").order_by(events.c.seq)).all()
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    # The one-statement rows equal the full path's, column for column.
    assert stored[2]._mapping.keys() == stored[0]._mapping.keys()
    for full, short in ((stored[0], stored[2]), (stored[1], stored[3])):
        differ = {k for k in full._mapping if full._mapping[k] != short._mapping[k]}
        assert differ <= {"seq", "mono_ns", "wall_time_ns", "event_time_ns", "received_at", "payload"}  # per event


def test_a_revocation_elsewhere_is_refused_within_the_poll_interval(served, db_url, monkeypatch):
    db, client, headers = served
    monkeypatch.setattr(auth, "REVOCATION_POLL_S", 0.3)
    url = "/api/v1/streams/s-a/events"
    assert client.post(url, json=batch(1), headers=headers).status_code == 200  # the gate is cached now
    # Another replica or the CLI revokes it: a different process, so nothing
    # here is told; only the database changes.
    other = open_database(db_url)
    with other.write() as conn:
        conn.execute(update(gates).where(gates.c.name == "gate-a").values(revoked_at=datetime.now(timezone.utc)))
    other.dispose()
    time.sleep(0.4)
    r = client.post(url, json=batch(3), headers=headers)
    assert r.status_code == 401
    # Nothing of the refused batch was stored.
    with db.read() as conn:
        assert len(conn.execute(events.select()).all()) == 2


def test_a_revocation_in_this_process_is_refused_at_once(served, monkeypatch):
    db, client, headers = served
    monkeypatch.setattr(auth, "REVOCATION_POLL_S", 3600)
    url = "/api/v1/streams/s-a/events"
    assert client.post(url, json=batch(1), headers=headers).status_code == 200
    auth.revoke_gate(db, "site-a", "gate-a")
    assert client.post(url, json=batch(3), headers=headers).status_code == 401


def test_the_cache_holds_token_hashes_not_tokens(served):
    _db, client, headers = served
    assert client.post("/api/v1/streams/s-a/events", json=batch(1), headers=headers).status_code == 200
    token = headers["Authorization"].split()[1]
    assert auth._gate_cache and all(token not in key for key in auth._gate_cache)


def test_racing_resends_of_one_batch_are_stored_once(db_url):
    """A kiosk's timeout re-send racing its original: every reply acknowledges
    the batch, the rows are there once (on PostgreSQL the one-statement path
    and the full path race each other)."""
    import asyncio

    import httpx

    db = open_database(db_url)
    app = create_app(db=db)
    _gate, token = auth.add_gate(db, "site-a", "gate-a")
    headers = {"Authorization": f"Bearer {token}"}
    url = "/api/v1/streams/s-a/events"

    async def race():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
            assert (await client.post(url, json=batch(1), headers=headers)).status_code == 200
            replies = await asyncio.gather(*[client.post(url, json=batch(3), headers=headers) for _ in range(12)])
            gap = await client.post(url, json=batch(9), headers=headers)
        return replies, gap

    replies, gap = asyncio.run(race())
    assert {r.status_code for r in replies} == {200}
    assert {r.json()["acked_through"] for r in replies} == {4}
    statuses = sorted(tuple(x["status"] for x in r.json()["results"]) for r in replies)
    assert statuses.count(("accepted", "accepted")) == 1  # one stored it, the others saw duplicates
    assert gap.status_code == 409 and gap.json()["acked_through"] == 4
    with db.read() as conn:
        seqs = [e.seq for e in conn.execute(events.select().where(events.c.stream_id == "s-a"))]
    assert sorted(seqs) == [1, 2, 3, 4]
    db.dispose()


def test_a_pooled_connection_killed_while_idle_is_replaced_unseen(db_url, monkeypatch):
    """No ping per checkout any more: a connection idle past IDLE_PING_S is
    pinged, and one that died (PostgreSQL restarted) is replaced before the
    request uses it."""
    from sqlalchemy import text

    from sync.server import db as db_module

    db = open_database(db_url)
    if not db.is_postgres:
        db.dispose()
        pytest.skip("SQLite has no server connection to lose")
    with db.read() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = open_database(db_url)
    with killer.write() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    killer.dispose()
    monkeypatch.setattr(db_module, "IDLE_PING_S", 0.0)  # the pooled connection counts as idle
    with db.read() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    db.dispose()
