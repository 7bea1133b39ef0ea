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


def test_a_small_upload_takes_one_connection_and_two_statements(served, monkeypatch):
    db, client, headers = served
    monkeypatch.setattr(auth, "REVOCATION_POLL_S", 3600)  # no poll inside the counted upload
    url = "/api/v1/streams/s-a/events"
    assert client.post(url, json=batch(1), headers=headers).status_code == 200  # creates the stream
    # The retention purge and the notifier run in their own threads: count
    # what the thread that served the upload did.
    checkouts, statements = [], []

    def checkout(*_args):
        checkouts.append(threading.get_ident())

    def statement(_conn, _cursor, sql, *_args):
        statements.append((threading.get_ident(), sql))

    event.listen(db.engine, "checkout", checkout)
    event.listen(db.engine, "before_cursor_execute", statement)
    try:
        r = client.post(url, json=batch(3), headers=headers)
    finally:
        event.remove(db.engine, "checkout", checkout)
        event.remove(db.engine, "before_cursor_execute", statement)
    served_by = next(t for t, sql in statements if sql.startswith("SELECT streams.gate_id, streams.acked_through"))
    counts = {"checkout": checkouts.count(served_by),
              "statements": sum(1 for t, _sql in statements if t == served_by)}
    assert r.status_code == 200 and r.json()["acked_through"] == 4
    # Was: two connections (a token read, then the write) and four statements
    # on PostgreSQL (seven on SQLite). Now: the cached gate, then lock the
    # stream row and advance it; PostgreSQL's rows go in through the driver (a
    # pipelined INSERT, not counted here); SQLite also counts its BEGIN
    # IMMEDIATE and the events INSERT.
    assert counts == {"checkout": 1, "statements": 4 if db.is_sqlite else 2}
    with db.read() as conn:
        assert conn.execute(events.select().where(events.c.stream_id == "s-a")).all().__len__() == 4


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
