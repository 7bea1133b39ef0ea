"""Retention on the registry server (sync.server.retention), on SQLite and PostgreSQL.

One stream's history spans old and young months; on PostgreSQL its old
months sit in their own partitions (dropped whole), the boundary month in
another (rows deleted) and the oldest rows in the default partition.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.cli import main
from gateway.clock import to_ns
from sync.server import auth, create_app, open_database, registry
from sync.server.ingest import Diverged, ingest
from sync.server.retention import cutoff_for, purge
from sync.server.schema import (alert_followups, alerts, audit, clock_anchors, enrol_codes, ensure_partitions, events,
                                import_jobs, migrate, outbox, quarantine, streams)

UTC = timezone.utc
# Far from any real "now", so the partitions made at migration never overlap these.
NOW = datetime(2021, 3, 15, 12, 0, tzinfo=UTC)
RETENTION = 30  # cutoff 2021-02-13 12:00
STREAM = "stream-1"


def ev(seq: int, when: datetime, **extra) -> dict:
    return {"seq": seq, "kind": "decision", "time": when.isoformat(), "gate": "east-1", "decision": "admit",
            "flagged": False, "reasons": ["ok"], "boot_id": "boot-a", "mono_ns": seq * 10**9,
            "wall_time": to_ns(when), "clock_synced": True, "body_c": 36.5, "person_id": f"p-{seq}",
            "detail": {"n": seq}, **extra}


def fever(seq: int, when: datetime) -> dict:
    return ev(seq, when, decision="deny", flagged=True, reasons=["fever"], body_c=38.2)


def anchor(seq: int, when: datetime) -> dict:
    return ev(seq, when, kind="clock_anchor", decision=None, reasons=[], body_c=None,
              detail={"server_time": when.isoformat()})


def invalid(seq: int, when: datetime) -> dict:
    return ev(seq, when, mono_ns="not a number")


# (received at, [(event builder, seq)]) in upload order; seqs run 1..18 without a gap.
HISTORY = [
    (datetime(2020, 10, 5, tzinfo=UTC), [(ev, 1), (fever, 2), (ev, 3)]),         # default partition
    (datetime(2020, 12, 20, tzinfo=UTC), [(anchor, 4), (ev, 5), (invalid, 6)]),  # dropped month
    (datetime(2021, 1, 20, tzinfo=UTC), [(ev, 7), (fever, 8), (ev, 9)]),         # dropped month
    (datetime(2021, 2, 10, tzinfo=UTC), [(ev, 10), (ev, 11), (ev, 12)]),         # boundary month, old
    (datetime(2021, 2, 20, tzinfo=UTC), [(fever, 13), (anchor, 14), (invalid, 15)]),  # boundary month, young
    (datetime(2021, 3, 10, tzinfo=UTC), [(ev, 16), (ev, 17), (ev, 18)]),         # young month
]
OLD_EVENTS, YOUNG_EVENTS = [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12], [13, 14, 16, 17, 18]
EXPECTED = {"events": 11, "event_partitions": 0, "quarantine": 1, "clock_anchors": 1, "alert_followups": 0,
            "alerts": 1, "outbox": 0, "import_jobs": 0, "audit_redacted": 0, "enrol_codes": 0}


def _fill(db, gate) -> dict[int, int]:
    """Upload HISTORY, acknowledge the fevers at seq 2 and 13; returns alert id by seq."""
    for received, batch in HISTORY:
        ingest(db, gate, STREAM, batch[0][1], [make(seq, received) for make, seq in batch], now=received)
    with db.read() as conn:
        alert_ids = dict(conn.execute(select(alerts.c.seq, alerts.c.id)).all())
    for seq in (2, 13):
        registry.acknowledge_alert(db, alert_ids[seq], "wang")
    return alert_ids


def _partitions(db) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass")).scalars())


def _snapshot(db) -> dict:
    with db.read() as conn:
        return {
            "events": sorted(conn.execute(select(events.c.seq)).scalars()),
            "quarantine": sorted(conn.execute(select(quarantine.c.seq)).scalars()),
            "clock_anchors": sorted(conn.execute(select(clock_anchors.c.seq)).scalars()),
            "alerts": sorted(conn.execute(select(alerts.c.seq)).scalars()),
            "acked_through": conn.execute(select(streams.c.acked_through)).scalar_one(),
        }


@pytest.fixture
def filled(db_url):
    db = open_database(db_url)
    migrate(db)
    if db.is_postgres:
        ensure_partitions(db, datetime(2020, 12, 1, tzinfo=UTC), months_ahead=3)  # Dec 2020 .. Mar 2021
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    alert_ids = _fill(db, gate)
    yield db, gate, alert_ids
    db.dispose()


def expected_counts(db) -> dict:
    return {**EXPECTED, "event_partitions": 2} if db.is_postgres else EXPECTED


def test_old_rows_go_young_rows_and_open_alerts_stay(filled):
    db, _, alert_ids = filled
    before = _snapshot(db)
    assert before["events"] == sorted(OLD_EVENTS + YOUNG_EVENTS)
    assert before["quarantine"] == [6, 15] and before["clock_anchors"] == [4, 14]
    assert before["alerts"] == [2, 8, 13]

    counts = purge(db, NOW, RETENTION, batch_rows=2)  # small batches: the loop must go round

    assert counts == expected_counts(db)
    after = _snapshot(db)
    assert after["events"] == YOUNG_EVENTS
    assert after["quarantine"] == [15]
    assert after["clock_anchors"] == [14]
    # The acknowledged old fever goes; the unacknowledged old one and the young one stay.
    assert after["alerts"] == [8, 13]
    assert [a["id"] for a in registry.open_alerts(db, "site-1")] == [alert_ids[8]]
    assert after["acked_through"] == 18  # the watermark is untouched
    # Nothing older than the cutoff is left among the purged kinds.
    cutoff = cutoff_for(NOW, RETENTION)
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(events).where(events.c.received_at < cutoff)).scalar() == 0
    # A second run finds nothing more.
    assert purge(db, NOW, RETENTION) == dict.fromkeys(EXPECTED, 0)


def _ids(db, column) -> list:
    with db.read() as conn:
        return sorted(conn.execute(select(column)).scalars())


def test_what_quotes_health_or_personal_data_goes_with_it(filled):
    """Follow-up notes, notices, import jobs, audit quotes and vehicle ledgers older than the
    cutoff go; enrolment codes a week after they expired. (Before: follow-ups, notices, import
    jobs, audit quotes and enrolment codes were never purged.)"""
    db, gate, alert_ids = filled
    old, young = datetime(2021, 1, 20, tzinfo=UTC), datetime(2021, 3, 10, tzinfo=UTC)
    # A vehicle passage (车辆台账) received before the cutoff and one after.
    vehicle = {"kind": "vehicle", "decision": "admit", "flagged": False, "reasons": ["ok"], "body_c": None,
               "detail": {"plate": "京A12345", "occupants": [{"name": "张三", "body_c": 36.5}]}}
    ingest(db, gate, STREAM, 19, [ev(19, old, **vehicle)], now=old)
    ingest(db, gate, STREAM, 20, [ev(20, young, **vehicle)], now=young)
    with db.write() as conn:
        note = {alert: conn.execute(alert_followups.insert().values(
            alert_id=alert, at=young, by="wang", note="已电话随访，体温 38.1")).inserted_primary_key[0]
            for alert in (alert_ids[2], alert_ids[8], alert_ids[13], 10**9)}  # 10**9: an alert long gone
        for when in (old, young):
            conn.execute(outbox.insert().values(ref=f"fever:{when:%m}", site_id="site-1", kind="fever_case",
                                                body='{"person": "p-2", "body_c": 38.2}', created_at=when,
                                                due_ns=to_ns(when), attempts=3))
            conn.execute(import_jobs.insert().values(
                site_id="site-1", list_kind="returnees", filename=f"{when:%m}.csv", sha256="0" * 64,
                content="姓名,来自\n张三,武汉\n".encode(), status="preview", created_at=when, created_by="li"))
            for entity in ("alert", "person", "gate"):
                conn.execute(audit.insert().values(at=when, actor="li", action=f"{entity}.x", site_id="site-1",
                                                   entity=entity, entity_id="p-2", before='{"risk": "low"}',
                                                   after='{"risk": "high"}'))
        codes = {}
        for name, expires in (("used-long-ago", datetime(2021, 3, 1, tzinfo=UTC)),
                              ("expired-yesterday", NOW - timedelta(days=1)),
                              ("still-valid", NOW + timedelta(minutes=20))):
            codes[name] = conn.execute(enrol_codes.insert().values(
                site_id="site-1", gate_name=name, code_hash=name.ljust(64, "0"), created_by="li",
                created_at=expires - timedelta(minutes=30), expires_at=expires,
                used_at=expires - timedelta(minutes=10) if name == "used-long-ago" else None)).inserted_primary_key[0]

    dry = purge(db, NOW, RETENTION, dry_run=True)
    counts = purge(db, NOW, RETENTION)

    assert counts == dry
    assert (counts["alert_followups"], counts["outbox"], counts["import_jobs"], counts["audit_redacted"],
            counts["enrol_codes"]) == (2, 1, 1, 2, 1)
    assert counts["events"] == EXPECTED["events"] + 1  # the old vehicle passage
    assert _ids(db, alert_followups.c.id) == sorted([note[alert_ids[8]], note[alert_ids[13]]])
    with db.read() as conn:
        refs = conn.execute(select(outbox.c.ref).where(outbox.c.ref.like("fever:__"))).scalars().all()
        assert [r.filename for r in conn.execute(select(import_jobs.c.filename))] == ["03.csv"]
        quotes = conn.execute(select(audit.c.entity, audit.c.at, audit.c.after).where(audit.c.actor == "li")
                              .order_by(audit.c.id)).all()
        kinds = conn.execute(select(events.c.seq).where(events.c.kind == "vehicle")).scalars().all()
    assert refs == ["fever:03"]
    # Who did what stays; what old entries quoted about alerts and people is gone.
    assert [(e, a is None) for e, _, a in quotes] == [("alert", True), ("person", True), ("gate", False),
                                                       ("alert", False), ("person", False), ("gate", False)]
    assert kinds == [20]
    assert _ids(db, enrol_codes.c.id) == sorted([codes["expired-yesterday"], codes["still-valid"]])
    assert purge(db, NOW, RETENTION) == dict.fromkeys(EXPECTED, 0)


def test_postgres_drops_whole_old_months_and_trims_the_boundary(filled):
    db, _, _ = filled
    if not db.is_postgres:
        pytest.skip("partitions exist only on PostgreSQL")
    assert {"events_y2020m12", "events_y2021m01", "events_y2021m02", "events_y2021m03"} <= _partitions(db)
    purge(db, NOW, RETENTION)
    left = _partitions(db)
    assert "events_y2020m12" not in left and "events_y2021m01" not in left
    assert {"events_y2021m02", "events_y2021m03", "events_default"} <= left
    with db.read() as conn:
        assert sorted(conn.execute(text("SELECT seq FROM events_y2021m02")).scalars()) == [13, 14]
        assert conn.execute(text("SELECT count(*) FROM events_default")).scalar() == 0


def test_dry_run_counts_and_deletes_nothing(filled):
    db, _, _ = filled
    before = _snapshot(db)
    partitions = _partitions(db) if db.is_postgres else None
    assert purge(db, NOW, RETENTION, dry_run=True) == expected_counts(db)
    assert _snapshot(db) == before
    if db.is_postgres:
        assert _partitions(db) == partitions
    # The real purge then deletes exactly what the dry run counted.
    assert purge(db, NOW, RETENTION) == expected_counts(db)


def test_the_watermark_still_dedupes_a_purged_batch(filled):
    db, gate, _ = filled
    purge(db, NOW, RETENTION)
    # A kiosk restored from an old backup re-sends batches the server has purged.
    received, batch = HISTORY[1]
    result = ingest(db, gate, STREAM, 4, [make(seq, received) for make, seq in batch], now=NOW)
    assert [r["status"] for r in result.results] == ["duplicate"] * 3
    assert result.acked_through == 18
    everything = [make(seq, received) for received, batch in HISTORY for make, seq in batch]
    old_again = ingest(db, gate, STREAM, 1, everything, now=NOW)
    assert old_again.duplicates == 18 and old_again.accepted == 0
    # Other content under a stored seq is not a duplicate (issue 11: a rolled-back journal).
    with pytest.raises(Diverged) as diverged:
        ingest(db, gate, STREAM, 1, [ev(s, NOW) for s in range(1, 19)], now=NOW)
    assert diverged.value.diverged_at == 13  # 1..12 are purged and cannot be compared
    after = _snapshot(db)
    assert after["events"] == YOUNG_EVENTS and after["quarantine"] == [15] and after["clock_anchors"] == [14]
    # The stream carries on from its watermark.
    assert ingest(db, gate, STREAM, 19, [ev(19, NOW)], now=NOW).accepted == 1


def test_an_open_alert_whose_event_was_purged_survives_a_new_anchor(filled):
    db, gate, alert_ids = filled
    purge(db, NOW, RETENTION)
    with db.read() as conn:
        kept_time = conn.execute(select(alerts.c.event_time_ns).where(alerts.c.id == alert_ids[8])).scalar_one()
    # An unsynced event and then its boot's first anchor: open alerts of the
    # stream take corrected times, and the one without an event keeps its own.
    unsynced = ev(19, NOW, boot_id="boot-b", clock_synced=False)
    ingest(db, gate, STREAM, 19, [unsynced, anchor(20, NOW) | {"boot_id": "boot-b"}], now=NOW)
    with db.read() as conn:
        assert conn.execute(select(alerts.c.event_time_ns).where(alerts.c.id == alert_ids[8])).scalar_one() == kept_time
        assert conn.execute(select(events.c.time_source).where(events.c.seq == 19)).scalar_one() == "anchor"


def test_stop_ends_a_purge_before_it_deletes(filled):
    db, _, _ = filled
    stop = threading.Event()
    stop.set()
    assert purge(db, NOW, RETENTION, stop=stop) == dict.fromkeys(EXPECTED, 0)
    assert len(_snapshot(db)["events"]) == len(OLD_EVENTS + YOUNG_EVENTS)


@pytest.mark.parametrize("days", [0, -1, 3651, 1.5, True])
def test_bad_retention_is_refused(filled, days):
    db, _, _ = filled
    with pytest.raises(ValueError, match="retention_days"):
        purge(db, NOW, days)
    with pytest.raises(ValueError, match="time zone"):
        purge(db, NOW.replace(tzinfo=None), RETENTION)
    with pytest.raises(ValueError, match="retention_days"):
        create_app(db=db, retention_days=days)


def _wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_server_purges_at_start_up_and_then_periodically(db_url):
    db = open_database(db_url)
    app = create_app(db=db, retention_days=RETENTION, purge_interval_s=0.2)
    gate, token = auth.add_gate(db, "site-1", "east-1")
    now = datetime.now(UTC)
    old, young = now - timedelta(days=RETENTION + 5), now - timedelta(days=1)
    ingest(db, gate, STREAM, 1, [ev(1, old), ev(2, old)], now=old)
    ingest(db, gate, STREAM, 3, [ev(3, young)], now=young)
    try:
        with TestClient(app) as client:
            assert _wait_for(lambda: _snapshot(db)["events"] == [3])
            # Old data arriving while it runs goes at the next hourly (here 0.2 s) pass.
            ingest(db, gate, STREAM, 4, [ev(4, old)], now=old)
            assert _wait_for(lambda: _snapshot(db)["events"] == [3])
            # Requests are served meanwhile, and the watermark dedupes a purged seq.
            reply = client.post(f"/api/v1/streams/{STREAM}/events", json={"first_seq": 1, "events": [ev(1, now)]},
                                headers={"Authorization": f"Bearer {token}"})
            assert reply.status_code == 200
            assert reply.json()["results"] == [{"seq": 1, "status": "duplicate"}]
        assert _snapshot(db)["events"] == [3]
    finally:
        db.dispose()


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_purge_prints_counts_and_dry_run_keeps_rows(capsys, db_url):
    db = open_database(db_url)
    migrate(db)
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    now = datetime.now(UTC)
    old, young = now - timedelta(days=10), now - timedelta(days=1)
    ingest(db, gate, STREAM, 1, [ev(1, old), invalid(2, old)], now=old)
    ingest(db, gate, STREAM, 3, [ev(3, young)], now=young)
    base = ["registry", "purge", "--db", db_url, "--retention-days", "7"]
    try:
        code, out, _ = run(capsys, *base, "--dry-run")
        report = json.loads(out)
        assert code == 0 and report["dry_run"] is True and report["retention_days"] == 7
        assert report["deleted"] == {**dict.fromkeys(EXPECTED, 0), "events": 1, "quarantine": 1}
        assert datetime.fromisoformat(report["cutoff"]) < now - timedelta(days=7) + timedelta(minutes=1)
        assert _snapshot(db)["events"] == [1, 3]

        code, out, _ = run(capsys, *base)
        assert code == 0 and json.loads(out)["deleted"]["events"] == 1 and json.loads(out)["dry_run"] is False
        assert _snapshot(db)["events"] == [3] and _snapshot(db)["quarantine"] == []

        # The default keeps 30 days: nothing more goes.
        code, out, _ = run(capsys, "registry", "purge", "--db", db_url)
        assert code == 0 and json.loads(out)["retention_days"] == 30 and json.loads(out)["deleted"]["events"] == 0
    finally:
        db.dispose()


@pytest.mark.parametrize("value", ["0", "-3", "abc", "3651"])
def test_cli_refuses_a_bad_retention(capsys, value):
    for command in ("purge", "serve"):
        with pytest.raises(SystemExit) as exit_:
            main(["registry", command, "--retention-days", value])
        assert exit_.value.code == 2 and "number of days" in capsys.readouterr().err
