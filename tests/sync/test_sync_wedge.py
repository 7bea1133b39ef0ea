"""The server refuses what would wedge it (issue 11): NaN/Infinity readings,
integers beyond 64 bits and NUL characters are quarantined at the protocol
boundary - never a 500, never a stream that cannot move on - and the alerts
list and daily report still answer. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.clock import to_ns
from sync.server import auth, create_app, open_database
from sync.server.schema import quarantine

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def ev(seq: int, **extra) -> dict:
    wall = T0 + timedelta(seconds=seq)
    return {"seq": seq, "kind": "decision", "time": wall.isoformat(), "gate": "east-1", "decision": "deny",
            "flagged": True, "reasons": ["fever"], "boot_id": "boot-a", "body_c": 38.2, "person_id": f"p-{seq}",
            "mono_ns": seq * 10**9, "wall_time": to_ns(wall), "clock_synced": True, "detail": {"n": seq}, **extra}


HOSTILE = [
    {"body_c": float("nan")},
    {"body_c": float("inf")},
    {"object_c": float("-inf")},
    {"body_c": 10**400},
    {"mono_ns": 2**64},
    {"wall_time": -(2**70)},
    {"person_id": "p\x00-1"},
    {"kind": "deci\x00sion"},
    {"boot_id": "boot\x00"},
    {"decision": "de\x00ny"},
    {"pass_id": "\x00"},
    {"reasons": ["fe\x00ver"]},
    {"gate": "east\x00"},
    {"direction": "i\x00n"},
    {"operator": "王\x00"},
    {"detail": {"n": 1, "\x00key": "v"}},
    {"\x00": 1},
]


@pytest.fixture
def env(db_url):
    db = open_database(db_url)
    app = create_app(db=db)
    _, token = auth.add_gate(db, "site-1", "east-1")
    _, staff_token = auth.add_staff(db, "wang")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield db, client, {"Authorization": f"Bearer {staff_token}"}
    db.dispose()


def post(client, first_seq, evs):
    # json.dumps writes NaN and Infinity as a sloppy kiosk (or an attacker) would.
    body = json.dumps({"first_seq": first_seq, "events": evs}, allow_nan=True)
    return client.post("/api/v1/streams/s-1/events", content=body, headers={"Content-Type": "application/json"})


def test_hostile_values_are_quarantined_and_the_stream_moves_on(env):
    db, client, staff = env
    batch = [ev(1)] + [ev(i + 2, **bad) for i, bad in enumerate(HOSTILE)]
    r = post(client, 1, batch)
    assert r.status_code == 200, r.text
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == ["accepted"] + ["quarantined"] * len(HOSTILE)
    again = post(client, 1, batch)  # the re-send is a duplicate, not a 500
    assert again.status_code == 200 and again.json()["acked_through"] == len(batch)
    nxt = post(client, len(batch) + 1, [ev(len(batch) + 1)])
    assert nxt.status_code == 200 and nxt.json()["results"][0]["status"] == "accepted"
    with db.read() as conn:
        assert len(conn.execute(select(quarantine.c.seq)).all()) == len(HOSTILE)

    alerts = client.get("/api/v1/staff/sites/site-1/alerts", headers=staff)
    assert alerts.status_code == 200
    assert all(a["body_c"] == 38.2 for a in alerts.json()["alerts"])
    report = client.get("/api/v1/staff/sites/site-1/reports/daily", params={"date": "2026-02-01"}, headers=staff)
    assert report.status_code == 200, report.text


def test_a_nul_in_a_path_or_a_staff_body_is_a_422_not_a_500(env):
    db, client, staff = env
    r = client.post("/api/v1/staff/sites/site-1/people",
                    json={"person_id": "p\x00", "name": "张三"}, headers=staff)
    assert r.status_code == 422, r.text
    r = client.delete("/api/v1/staff/sites/site-1/registry/person/p%00x", headers=staff)
    assert r.status_code == 422, r.text


def test_a_nan_stored_before_the_check_does_not_break_the_lists(env):
    from sqlalchemy import update

    from sync.server.schema import alerts, events

    db, client, staff = env
    assert post(client, 1, [ev(1)]).status_code == 200
    with db.write() as conn:  # as an older server let it in
        conn.execute(update(alerts).values(body_c=float("nan")))
        conn.execute(update(events).values(body_c=float("nan")))
    listed = client.get("/api/v1/staff/sites/site-1/alerts", headers=staff)
    assert listed.status_code == 200 and listed.json()["alerts"][0]["body_c"] is None
    report = client.get("/api/v1/staff/sites/site-1/reports/daily", params={"date": "2026-02-01"}, headers=staff)
    assert report.status_code == 200 and report.json()["fevers"][0]["body_c"] is None
