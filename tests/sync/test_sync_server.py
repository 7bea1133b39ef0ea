"""The registry server through its HTTP API (in-process client), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import warnings
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.clock import to_ns
from sync.server import auth, create_app, open_database, registry
from sync.server.reports import daily_report
from sync.server.schema import events, quarantine

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def ev(seq: int, *, synced: bool = True, mono_s: float | None = None, boot: str = "boot-a", **extra) -> dict:
    wall = T0 + timedelta(seconds=seq)
    return {"seq": seq, "kind": "decision", "time": wall.isoformat(), "gate": "east-1", "decision": "admit",
            "flagged": False, "reasons": ["ok"], "boot_id": boot,
            "mono_ns": int((mono_s if mono_s is not None else seq) * 1e9), "wall_time": to_ns(wall),
            "clock_synced": synced, "detail": {"n": seq}, **extra}


@pytest.fixture
def env(db_url):
    db = open_database(db_url)
    app = create_app(db=db)
    gate, token = auth.add_gate(db, "site-1", "east-1")
    _, staff_token = auth.add_staff(db, "wang")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield {"db": db, "client": client, "gate": gate, "token": token, "staff": {"Authorization": f"Bearer {staff_token}"}}
    db.dispose()


def upload(client, first_seq, evs, stream="stream-1"):
    return client.post(f"/api/v1/streams/{stream}/events", json={"first_seq": first_seq, "events": evs})


def stored_seqs(db, stream="stream-1"):
    with db.read() as conn:
        return sorted(r[0] for r in conn.execute(select(events.c.seq).where(events.c.stream_id == stream)))


def test_upload_is_exactly_once_by_watermark(env):
    client, db = env["client"], env["db"]
    r = upload(client, 1, [ev(1), ev(2), ev(3)])
    assert r.status_code == 200
    assert r.json()["acked_through"] == 3
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3
    # The reply was lost: the kiosk re-sends 2..5.
    r = upload(client, 2, [ev(2), ev(3), ev(4), ev(5)])
    assert r.json()["acked_through"] == 5
    assert [x["status"] for x in r.json()["results"]] == ["duplicate", "duplicate", "accepted", "accepted"]
    r = upload(client, 1, [ev(1)])
    assert r.json()["acked_through"] == 5
    assert stored_seqs(db) == [1, 2, 3, 4, 5]


def test_gap_is_409_with_the_watermark_and_writes_nothing(env):
    client, db = env["client"], env["db"]
    upload(client, 1, [ev(1), ev(2)])
    r = upload(client, 5, [ev(5), ev(6)])
    assert r.status_code == 409
    assert r.json()["error"] == "gap"
    assert r.json()["acked_through"] == 2
    assert stored_seqs(db) == [1, 2]


def test_invalid_events_are_quarantined_and_still_acked(env):
    client, db = env["client"], env["db"]
    bad = ev(2)
    bad["mono_ns"] = "not a number"
    unknown_field = dict(ev(3), colour="blue")
    r = upload(client, 1, [ev(1), bad, unknown_field, ev(4)])
    assert r.status_code == 200
    assert r.json()["acked_through"] == 4
    statuses = {x["seq"]: x["status"] for x in r.json()["results"]}
    assert statuses == {1: "accepted", 2: "quarantined", 3: "quarantined", 4: "accepted"}
    assert stored_seqs(db) == [1, 4]
    with db.read() as conn:
        held = conn.execute(select(quarantine.c.seq, quarantine.c.error, quarantine.c.payload)).all()
    assert [h.seq for h in held] == [2, 3]
    assert "mono_ns" in held[0].error
    assert json.loads(held[1].payload)["colour"] == "blue"


def test_unsynced_event_times_are_corrected_from_a_later_clock_anchor(env):
    client, db = env["client"], env["db"]
    # A Pi booted at 1970-ish: wall time is garbage, mono_ns is right.
    bogus = datetime(1970, 1, 2, tzinfo=timezone.utc)
    first = [dict(ev(s, synced=False, mono_s=100 + s), wall_time=to_ns(bogus), time=bogus.isoformat())
             for s in (1, 2)]
    upload(client, 1, first)
    with db.read() as conn:
        rows = conn.execute(select(events.c.seq, events.c.time_source, events.c.received_at)).all()
    assert {r.time_source for r in rows} == {"unknown"}
    assert all(r.received_at is not None for r in rows)
    # The kiosk reaches the server at mono 200 s and logs the server's time.
    server_time = datetime(2026, 2, 1, 9, 0, tzinfo=timezone.utc)
    anchor = dict(ev(3, synced=False, mono_s=200), kind="clock_anchor", decision=None, reasons=[],
                  detail={"server_time": server_time.isoformat()})
    later = dict(ev(4, synced=False, mono_s=230), wall_time=to_ns(bogus))
    assert upload(client, 3, [anchor, later]).status_code == 200
    with db.read() as conn:
        got = dict(conn.execute(select(events.c.seq, events.c.event_time_ns)).all())
        sources = dict(conn.execute(select(events.c.seq, events.c.time_source)).all())
    assert got[1] == to_ns(server_time - timedelta(seconds=99))
    assert got[2] == to_ns(server_time - timedelta(seconds=98))
    assert got[4] == to_ns(server_time + timedelta(seconds=30))
    assert set(sources.values()) == {"anchor"}


def test_an_open_fever_alert_gets_the_corrected_time(env):
    client, db = env["client"], env["db"]
    bogus = datetime(1970, 1, 2, tzinfo=timezone.utc)
    fever = dict(ev(1, synced=False, mono_s=100), wall_time=to_ns(bogus), flagged=True, decision="deny",
                 reasons=["fever"], body_c=38.4)
    upload(client, 1, [fever])
    # Before its boot's anchor arrives the alert shows the receipt time, never 1970 (issue 11).
    assert registry.open_alerts(db, "site-1")[0]["event_time"][:4] != "1970"
    server_time = datetime(2026, 2, 1, 9, 0, tzinfo=timezone.utc)
    anchor = dict(ev(2, synced=False, mono_s=160), kind="clock_anchor", decision=None, reasons=[],
                  detail={"server_time": server_time.isoformat()})
    upload(client, 2, [anchor])
    alert = registry.open_alerts(db, "site-1")[0]
    assert alert["event_time"] == (server_time - timedelta(seconds=60)).isoformat()


def test_synced_events_keep_their_own_time(env):
    client, db = env["client"], env["db"]
    upload(client, 1, [ev(1)])
    with db.read() as conn:
        row = conn.execute(select(events.c.event_time_ns, events.c.time_source)).one()
    assert row.event_time_ns == to_ns(T0 + timedelta(seconds=1))
    assert row.time_source == "clock"


def test_fever_alerts_are_listed_until_acknowledged(env):
    client, staff = env["client"], env["staff"]
    fever = ev(1, flagged=True, decision="deny", reasons=["fever"], body_c=38.2, person_id="p-7")
    upload(client, 1, [fever, ev(2)])
    r = client.get("/api/v1/staff/sites/site-1/alerts", headers=staff)
    alerts = r.json()["alerts"]
    assert [(a["person_id"], a["body_c"], a["gate_name"]) for a in alerts] == [("p-7", 38.2, "east-1")]
    r = client.post(f"/api/v1/staff/alerts/{alerts[0]['id']}/ack", headers=staff)
    assert r.json()["alert"]["acknowledged_by"] == "wang"
    assert client.get("/api/v1/staff/sites/site-1/alerts", headers=staff).json()["alerts"] == []


def test_registry_feed_pages_etag_and_site_scoping(env):
    client, db, staff = env["client"], env["db"], env["staff"]
    r = client.post("/api/v1/staff/sites/site-1/people", headers=staff,
                    json={"person_id": "p-1", "name": "张三", "unit": "3-2-101"})
    assert r.status_code == 200, r.text
    client.post("/api/v1/staff/sites/site-1/revocations", headers=staff, json={"pass_id": "ps-9", "reason": "lost"})
    client.post("/api/v1/staff/sites/site-2/people", headers=staff, json={"person_id": "p-x", "name": "李四"})
    registry.upsert(db, registry.GLOBAL_SITE, "key", "k1", {"public_pem": "..."})

    r = client.get("/api/v1/sites/site-1/registry", params={"since": 0, "limit": 2})
    page = r.json()
    assert [c["entity_id"] for c in page["changes"]] == ["p-1", "ps-9"]
    assert page["up_to_date"] is False
    r = client.get("/api/v1/sites/site-1/registry", params={"since": page["next_cursor"], "limit": 2})
    page2 = r.json()
    assert [c["entity_id"] for c in page2["changes"]] == ["k1"]  # site-2's person is not ours
    assert page2["up_to_date"] is True
    etag = r.headers["ETag"]
    r = client.get("/api/v1/sites/site-1/registry", params={"since": page2["next_cursor"]},
                   headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert "x-server-time" in r.headers
    # A new change invalidates the ETag.
    client.put("/api/v1/staff/sites/site-1/people/p-1/observation", headers=staff,
               json={"until": "2026-02-14", "risk": "yellow"})
    r = client.get("/api/v1/sites/site-1/registry", params={"since": page2["next_cursor"]},
                   headers={"If-None-Match": etag})
    assert r.status_code == 200
    person = r.json()["changes"][0]["payload"]
    assert person["observation_until"] == "2026-02-14" and person["name"] == "张三"


def test_expired_cursor_gets_410_then_a_paged_snapshot(env):
    client, db = env["client"], env["db"]
    for i in range(5):
        registry.add_person(db, "site-1", f"p-{i}", name=f"n{i}")
    registry.remove(db, "site-1", "person", "p-0")
    head = registry.head(db, "site-1")
    registry.compact(db, head - 1)
    r = client.get("/api/v1/sites/site-1/registry", params={"since": 2})
    assert r.status_code == 410
    assert r.json()["error"] == "must_refetch"
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = client.get("/api/v1/sites/site-1/registry/snapshot", params=params).json()
        assert page["cursor"] == str(head)
        seen += [c["entity_id"] for c in page["changes"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == ["p-1", "p-2", "p-3", "p-4"]
    # From the snapshot's cursor the feed works again.
    assert client.get("/api/v1/sites/site-1/registry", params={"since": head}).status_code == 200


def test_staff_changes_are_checked(env):
    client, staff = env["client"], env["staff"]
    r = client.put("/api/v1/staff/sites/site-1/policy", headers=staff, json={"document": {"version": 2}})
    assert r.status_code == 200
    r = client.put("/api/v1/staff/sites/site-1/policy", headers=staff, json={"document": {"version": 2}})
    assert r.status_code == 409
    assert "not newer" in r.json()["detail"]
    r = client.put("/api/v1/staff/sites/site-1/people/nobody/observation", headers=staff, json={"until": None})
    assert r.status_code == 409
    r = client.post("/api/v1/staff/sites/site-1/keys", headers=staff, json={"public_pem": "garbage"})
    assert r.status_code == 409
    # A gate token is not a staff token.
    r = client.post("/api/v1/staff/sites/site-1/revocations", json={"pass_id": "x"})
    assert r.status_code == 401


def test_issuer_key_is_published_under_its_kid(env):
    from gateway.passes import generate_keypair, key_id, load_public_key

    client, staff = env["client"], env["staff"]
    _private, public = generate_keypair()
    r = client.post("/api/v1/staff/sites/site-1/keys", headers=staff, json={"public_pem": public.decode()})
    kid = r.json()["result"]
    change = client.get("/api/v1/sites/site-1/registry").json()["changes"][0]
    assert (change["entity"], change["entity_id"]) == ("key", kid)
    assert change["payload"]["public_pem"] == public.decode()
    assert len(kid) >= 8


def test_rate_limits_answer_429_with_retry_after(db_url):
    db = open_database(db_url)
    app = create_app(db=db, gate_rate=0.5, gate_burst=2)
    _, token = auth.add_gate(db, "site-1", "east-1")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        codes = [client.get("/api/v1/sites/site-1/registry").status_code for _ in range(4)]
        assert codes[:2] == [200, 200]
        assert codes[2] == 429
        r = client.get("/api/v1/sites/site-1/registry")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    db.dispose()
    app2 = create_app(db=open_database(db_url), global_rate=0.5, global_burst=1)
    with TestClient(app2) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.get("/api/v1/sites/site-1/registry").status_code == 200
        assert client.get("/api/v1/sites/site-1/registry").status_code == 429
    app2.state.db.dispose()


def test_daily_report_counts_and_zero_report(env):
    client, db = env["client"], env["db"]
    day = (T0 + timedelta(hours=8)).date()  # Asia/Shanghai
    empty = daily_report(db, "site-1", day)
    assert empty["zero_report"] is True and empty["totals"]["decisions"] == 0
    fever = ev(2, flagged=True, decision="deny", reasons=["fever"], body_c=38.0, person_id="p-3")
    upload(client, 1, [ev(1), fever, ev(3, kind="ledger.visitors", decision=None)])
    report = daily_report(db, "site-1", day)
    assert report["zero_report"] is False
    assert report["totals"] == {"decisions": 2, "admit": 1, "deny": 1, "fever": 1, "overrides": 0, "visitors": 1}
    assert report["fevers"][0]["person_id"] == "p-3"
    assert report["gates"] == [{"gate": "east-1", "admit": 1, "deny": 1, "fever": 1}]
    assert daily_report(db, "site-1", date(2026, 3, 1))["zero_report"] is True


def test_a_cursor_ahead_of_the_server_gets_410(env):
    client, db = env["client"], env["db"]
    registry.add_person(db, "site-1", "p-1", name="a")
    # A kiosk that saw change 50 before the server was restored from a backup.
    r = client.get("/api/v1/sites/site-1/registry", params={"since": 50}, headers={"If-None-Match": '"h50"'})
    assert r.status_code == 410


def test_a_clock_anchor_applies_only_to_its_own_stream(env):
    """Issue 11: a gate of site 2 must not rewrite a site-1 gate's event times
    with an anchor that carries the victim's boot id."""
    client, db = env["client"], env["db"]
    bogus = datetime(1970, 1, 2, tzinfo=timezone.utc)
    victim = dict(ev(1, synced=False, mono_s=100, boot="boot-victim"), wall_time=to_ns(bogus))
    upload(client, 1, [victim])
    _, other_token = auth.add_gate(db, "site-2", "west-9")
    forged = dict(ev(1, synced=False, mono_s=100, boot="boot-victim"), kind="clock_anchor", decision=None,
                  reasons=[], detail={"server_time": "2025-06-01T00:00:00+00:00"})
    r = client.post("/api/v1/streams/attacker/events", json={"first_seq": 1, "events": [forged]},
                    headers={"Authorization": f"Bearer {other_token}"})
    assert r.status_code == 200
    later = dict(ev(2, synced=False, mono_s=130, boot="boot-victim"), wall_time=to_ns(bogus))
    upload(client, 2, [later])  # the victim's own later event is not placed by the forged anchor either
    with db.read() as conn:
        rows = conn.execute(select(events.c.seq, events.c.event_time_ns, events.c.time_source)
                            .where(events.c.stream_id == "stream-1")).all()
    assert {r.time_source for r in rows} == {"unknown"}
    assert all(abs(r.event_time_ns - to_ns(datetime(2025, 6, 1, tzinfo=timezone.utc))) > 10**12 for r in rows)


def test_a_staff_token_cannot_push_an_issuer_key_every_gate_trusts(env):
    """Issue 11: a key for site `*` is trusted by every gate; over HTTP only an
    administrator whose own scope is every site may push one. A site's own
    administrator cannot."""
    from gateway.passes import generate_keypair

    client, db = env["client"], env["db"]
    _, site_admin = auth.add_staff(db, "li", role="admin", sites=["site-1"])
    _private, public = generate_keypair()
    r = client.post("/api/v1/staff/sites/*/keys", headers={"Authorization": f"Bearer {site_admin}"},
                    json={"public_pem": public.decode()})
    assert r.status_code == 403
    assert client.get("/api/v1/sites/site-1/registry").json()["changes"] == []


@pytest.mark.parametrize("claimed", [datetime(1970, 1, 1, 0, 0, 5, tzinfo=timezone.utc), "plus_30_days"])
def test_a_synced_kiosk_time_far_from_the_receipt_is_corrected(env, claimed):
    """Issue 11: a kiosk claiming a synced clock cannot store 1970 or next month."""
    client, db = env["client"], env["db"]
    now = datetime.now(timezone.utc)
    when = now + timedelta(days=30) if claimed == "plus_30_days" else claimed
    lying = dict(ev(1), time=when.isoformat(), wall_time=to_ns(when), flagged=True, decision="deny",
                 reasons=["fever"], body_c=38.4)
    honest = dict(ev(2), time=now.isoformat(), wall_time=to_ns(now))
    r = upload(client, 1, [lying, honest])
    assert [x.get("time_refused", False) for x in r.json()["results"]] == [True, False]
    with db.read() as conn:
        rows = {r.seq: r for r in conn.execute(select(events.c.seq, events.c.event_time_ns, events.c.time_source))}
    assert rows[1].time_source == "receipt"
    assert abs(rows[1].event_time_ns - to_ns(now)) < 60 * 10**9
    assert rows[2].time_source == "clock" and rows[2].event_time_ns == to_ns(now)
    (alert,) = registry.open_alerts(db, "site-1")
    assert alert["event_time"][:10] == now.date().isoformat()


def test_an_anchor_from_the_future_is_not_used(env):
    client, db = env["client"], env["db"]
    future = datetime.now(timezone.utc) + timedelta(days=30)
    anchor = dict(ev(1, synced=False, mono_s=200), kind="clock_anchor", decision=None, reasons=[],
                  detail={"server_time": future.isoformat()})
    unsynced = dict(ev(2, synced=False, mono_s=210))
    upload(client, 1, [anchor, unsynced])
    with db.read() as conn:
        source = conn.execute(select(events.c.time_source).where(events.c.seq == 2)).scalar_one()
    assert source == "unknown"
