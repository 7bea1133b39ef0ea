"""One protocol, checked on both ends (issue 11): every reply the sync API
gives parses as its `sync.protocol` model (extra fields forbidden), the way
the kiosk's client reads it. SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.clock import to_ns
from sync import protocol as p
from sync.server import auth, create_app, open_database, registry

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def ev(seq: int, **extra) -> dict:
    wall = T0 + timedelta(seconds=seq)
    return {"seq": seq, "kind": "decision", "time": wall.isoformat(), "gate": "east-1", "decision": "admit",
            "flagged": False, "reasons": ["ok"], "boot_id": "b", "mono_ns": seq * 10**9, "wall_time": to_ns(wall),
            "clock_synced": True, "detail": {"n": seq}, **extra}


@pytest.fixture
def client(db_url):
    db = open_database(db_url)
    app = create_app(db=db)
    _, token = auth.add_gate(db, "site-1", "east-1")
    for i in range(5):
        registry.add_person(db, "site-1", f"p-{i}", name=f"n{i}")
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c
    db.dispose()


def parsed(model, resp):
    assert p.SERVER_TIME_HEADER in resp.headers
    return TypeAdapter(model).validate_json(resp.content)


def test_every_sync_reply_is_its_protocol_model(client):
    up = "/api/v1/streams/s-1/events"
    ok = client.post(up, json={"first_seq": 1, "events": [ev(1), ev(2, mono_ns="bad")]})
    reply = parsed(p.UploadReply, ok)
    assert [r.status for r in reply.results] == ["accepted", "quarantined"]
    dup = parsed(p.UploadReply, client.post(up, json={"first_seq": 1, "events": [ev(1), ev(2, mono_ns="bad")]}))
    assert [r.status for r in dup.results] == ["duplicate", "duplicate"]
    gap = client.post(up, json={"first_seq": 9, "events": [ev(9)]})
    assert gap.status_code == 409 and parsed(p.GapReply, gap).acked_through == 2
    diverged = client.post(up, json={"first_seq": 1, "events": [ev(1, detail={"n": 99})]})
    assert diverged.status_code == 409 and parsed(p.DivergedReply, diverged).diverged_at == 1

    feed = client.get("/api/v1/sites/site-1/registry", params={"since": 0, "limit": 2})
    page = parsed(p.RegistryPage, feed)
    assert len(page.changes) == 2 and not page.up_to_date
    head = parsed(p.RegistryPage, client.get("/api/v1/sites/site-1/registry")).next_cursor
    same = client.get("/api/v1/sites/site-1/registry", params={"since": head},
                      headers={"If-None-Match": p.etag_for(int(head))})
    assert same.status_code == 304
    ahead = client.get("/api/v1/sites/site-1/registry", params={"since": 10**6})
    assert ahead.status_code == 410 and parsed(p.ErrorReply, ahead).error == "must_refetch"

    first = parsed(p.SnapshotPage, client.get("/api/v1/sites/site-1/registry/snapshot", params={"limit": 3}))
    assert first.next_after is not None
    rest = parsed(p.SnapshotPage, client.get("/api/v1/sites/site-1/registry/snapshot",
                                             params={"limit": 3, "after": first.next_after}))
    assert rest.next_after is None and len(first.changes) + len(rest.changes) == 5

    for resp, status in [
        (client.get("/api/v1/sites/site-2/registry"), 403),
        (client.post(up, json={"first_seq": 1}), 422),
        (client.get("/api/v1/sites/site-1/registry", headers={"Authorization": "Bearer nope"}), 401),
        (client.post(up, content=b"x" * (p.MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"}), 413),
    ]:
        assert resp.status_code == status
        assert parsed(p.ErrorReply, resp).error
