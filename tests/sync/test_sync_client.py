"""The kiosk's sync client against a real server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from gateway.cli import main as cli_main
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import BACKOFF_CAP_S, RateLimited, ServerUnavailable, SyncClient, SyncWorker
from sync.protocol import SNAPSHOT_IN_PROGRESS
from sync.server import auth, registry
from tests.sync.sync_harness import decision, server_rows, write_kiosk_config


@pytest.fixture
def kiosk(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    config = write_kiosk_config(tmp_path / "kiosk", server.url, token)
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    yield settings, journal, config
    journal.close()


def fill(journal, count, start=1):
    for n in range(start, start + count):
        journal.append(decision(n))


def assert_exactly_once(db_url, journal):
    rows = server_rows(db_url, journal.stream_id)
    seqs = sorted(seq for seq, _ in rows)
    assert seqs == list(range(1, journal.last_seq() + 1))
    stored = {e["seq"]: e["detail"].get("n") for e in journal.events()}
    assert dict(rows) == stored


def test_sync_once_uploads_everything_and_applies_the_registry(server, kiosk):
    settings, journal, _ = kiosk
    registry.add_person(server.db, "site-1", "p-1", name="张三", unit="1-101")
    registry.revoke_pass(server.db, "site-1", "ps-9", "lost")
    fill(journal, 1203)
    client = SyncClient(journal, settings)
    summary = client.sync_once()
    client.close()
    assert summary["pending"] == 0
    assert summary["acked_through"] == journal.last_seq()
    assert summary["uploaded"] == journal.last_seq()
    assert journal.registry_get("person", "p-1")["name"] == "张三"
    assert journal.registry_get("revocation", "ps-9")["reason"] == "lost"
    assert_exactly_once(server.db_url, journal)
    # The server's time was recorded once as a clock anchor, not per batch.
    assert len(journal.events(kind="clock_anchor")) == 1
    assert journal.watermark() is not None


def test_sync_now_prints_the_summary_and_exits_0(server, kiosk, capsys):
    settings, journal, config = kiosk
    fill(journal, 20)
    assert cli_main(["sync", "now", "--config", str(config)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pending"] == 0
    assert out["acked_through"] == journal.last_seq()
    assert set(out) >= {"uploaded", "acked_through", "pending", "registry_cursor"}
    # Again right away: nothing to do, and no new clock anchor either.
    assert cli_main(["sync", "now", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"] == 0


def test_sync_now_exits_1_when_the_server_is_down(tmp_path, capsys):
    config = write_kiosk_config(tmp_path, "http://127.0.0.1:9", "t" * 43)
    journal = Journal.open(tmp_path / "journal.db")
    journal.append(decision(1))
    journal.close()
    assert cli_main(["sync", "now", "--config", str(config), "--timeout", "0"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["pending"] == 1
    assert "error" in out


def test_gap_rewinds_after_409_when_the_server_lost_a_backup(server, kiosk):
    settings, journal, _ = kiosk
    fill(journal, 300)
    client = SyncClient(journal, settings)
    client.sync_once()
    # The server is restored from a backup taken at seq 120.
    from sqlalchemy import delete, update

    from sync.server.schema import clock_anchors, events, streams

    with server.db.write() as conn:
        conn.execute(delete(events).where(events.c.seq > 120))
        conn.execute(delete(clock_anchors).where(clock_anchors.c.seq > 120))
        conn.execute(update(streams).values(acked_through=120))
    fill(journal, 50, start=1000)
    summary = client.sync_once()
    client.close()
    assert summary["pending"] == 0
    assert_exactly_once(server.db_url, journal)


def test_a_fever_resent_after_a_restore_raises_one_alert_not_two(server, kiosk):
    from sqlalchemy import delete, select, update

    from sync.server.schema import alerts, events, streams

    settings, journal, _ = kiosk
    fill(journal, 5)
    fever = journal.append({**decision(99), "decision": "deny", "flagged": True, "reasons": ["fever"],
                            "body_c": 38.1})
    client = SyncClient(journal, settings)
    client.sync_once()
    # Restored from a backup taken before the fever event, but the alert table kept its row.
    with server.db.write() as conn:
        conn.execute(delete(events).where(events.c.seq > 3))
        conn.execute(update(streams).values(acked_through=3))
    fill(journal, 2, start=1000)
    assert client.sync_once()["pending"] == 0
    client.close()
    assert_exactly_once(server.db_url, journal)
    with server.db.engine.connect() as conn:
        seqs = conn.execute(select(alerts.c.seq).where(alerts.c.stream_id == journal.stream_id)).scalars().all()
    assert seqs == [fever["seq"]]


def test_a_replaced_journal_starts_a_new_stream(server, kiosk):
    settings, journal, _ = kiosk
    fill(journal, 40)
    SyncClient(journal, settings).sync_once()
    old_stream = journal.stream_id
    journal.close()
    for suffix in ("", "-wal", "-shm"):
        path = settings.journal.path.with_name(settings.journal.path.name + suffix)
        path.unlink(missing_ok=True)
    fresh = Journal.open(settings.journal.path)
    try:
        assert fresh.stream_id != old_stream
        fill(fresh, 15, start=500)
        summary = SyncClient(fresh, settings).sync_once()
        assert summary["pending"] == 0
        assert_exactly_once(server.db_url, fresh)
        assert len(server_rows(server.db_url, old_stream)) == 40 + 1  # + its clock anchor
    finally:
        fresh.close()


def test_expired_cursor_reads_the_snapshot_and_replaces_the_copy(server, kiosk):
    settings, journal, _ = kiosk
    for i in range(3):
        registry.add_person(server.db, "site-1", f"p-{i}", name=f"n{i}")
    client = SyncClient(journal, settings)
    client.sync_once()
    assert set(journal.registry_all("person")) == {"p-0", "p-1", "p-2"}
    # While the kiosk is away: p-0 is removed, many are added, and the log compacted.
    registry.remove(server.db, "site-1", "person", "p-0")
    with server.db.write() as conn:  # one transaction: fast, and still two snapshot pages
        for i in range(3, 1200):
            registry.record_change(server.db, conn, "site-1", "person", f"p-{i}", "upsert", {"name": f"n{i}"}, None)
    registry.compact(server.db, registry.head(server.db, "site-1"))
    client.sync_once()
    client.close()
    people = journal.registry_all("person")
    assert "p-0" not in people
    assert len(people) == 1199
    assert journal.registry_cursor() == str(registry.head(server.db, "site-1"))


def test_a_snapshot_cut_short_is_started_over(server, kiosk):
    settings, journal, _ = kiosk
    registry.add_person(server.db, "site-1", "p-1", name="a")
    journal.apply_registry_page([{"entity": "person", "entity_id": "p-1", "op": "upsert", "payload": {},
                                  "change_seq": 1}], SNAPSHOT_IN_PROGRESS, replace=True)
    worker = SyncWorker(journal, settings)
    assert worker.status()["degraded_reason"] == "registry_incomplete"
    worker.sync_once()
    worker.stop()
    assert journal.registry_get("person", "p-1")["name"] == "a"
    assert worker.status()["degraded"] is False


def test_worker_uploads_a_fever_at_once_on_trigger(server, kiosk):
    settings, journal, _ = kiosk
    worker = SyncWorker(journal, settings, startup_jitter_s=0)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while worker.status()["last_ok"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        event = journal.append(decision(97))  # a fever; interval is 30 s, so only trigger() can send it now
        worker.trigger()
        deadline = time.monotonic() + 5
        while journal.pending_count() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert journal.pending_count() == 0
        assert any(seq == event["seq"] for seq, _ in server_rows(server.db_url, journal.stream_id))
        open_alerts = registry.open_alerts(server.db, "site-1")
        assert [a["seq"] for a in open_alerts] == [event["seq"]]
    finally:
        worker.stop()


def test_outage_is_logged_once_when_it_starts_and_once_when_it_ends(server, kiosk, caplog):
    settings, journal, _ = kiosk
    worker = SyncWorker(journal, settings, timeout_s=1)
    server.stop()
    caplog.set_level(logging.INFO, logger="sync.client")
    for _ in range(3):
        with pytest.raises(ServerUnavailable):
            worker.sync_once()
    server.start()
    worker.sync_once()
    worker.sync_once()
    worker.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "sync.client"]
    assert sum("sync failing" in m for m in messages) == 1
    assert sum("sync recovered after 3 failed attempt(s)" in m for m in messages) == 1
    assert worker.status()["last_error"] is None


def test_backoff_is_full_jitter_capped_and_honours_retry_after(server, kiosk):
    settings, journal, _ = kiosk
    worker = SyncWorker(journal, settings, rng=random.Random(3))
    worker.failures = 1
    delays = [worker.backoff_delay(ServerUnavailable("x")) for _ in range(200)]
    assert 0 <= min(delays) < 0.2 and 1.8 < max(delays) <= 2.0
    worker.failures = 30
    delays = [worker.backoff_delay(ServerUnavailable("x")) for _ in range(200)]
    assert max(delays) <= BACKOFF_CAP_S and max(delays) > BACKOFF_CAP_S * 0.9
    worker.failures = 1
    assert min(worker.backoff_delay(RateLimited("slow down", 7)) for _ in range(50)) >= 7
    worker.stop()


def test_status_is_degraded_when_the_registry_is_stale(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    config = write_kiosk_config(tmp_path, server.url, token, staleness_h=24)
    settings = load_config(config)
    clock = FakeClock(datetime.now(timezone.utc))
    journal = Journal.open(settings.journal.path, clock=clock)
    worker = SyncWorker(journal, settings)
    assert worker.status()["degraded_reason"] == "registry_never_synced"
    worker.sync_once()
    status = worker.status()
    assert status["degraded"] is False and status["registry_age_s"] < 60
    clock.advance(timedelta(hours=25).total_seconds())
    status = worker.status()
    assert status["degraded"] is True and status["degraded_reason"] == "registry_stale"
    assert status["registry_age_s"] > 24 * 3600
    worker.stop()
    journal.close()


class ChangeBetweenSnapshotPages(httpx.HTTPTransport):
    """The network edge: after the first snapshot page has been served, staff
    change an entity that sorts onto that page."""

    def __init__(self, db):
        super().__init__()
        self.db = db
        self.fired = False

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith("/snapshot") and not self.fired:
            self.fired = True
            registry.add_person(self.db, "site-1", "a-early", name="changed mid-snapshot")
        return response


def test_a_change_made_during_a_snapshot_is_not_lost(server, kiosk):
    settings, journal, _ = kiosk
    with server.db.write() as conn:
        for i in range(1500):  # two pages
            registry.record_change(server.db, conn, "site-1", "person", f"p-{i:04d}", "upsert", {"name": "x"}, None)
        registry.record_change(server.db, conn, "site-1", "person", "a-early", "upsert", {"name": "before"}, None)
    registry.compact(server.db, registry.head(server.db, "site-1"))
    transport = ChangeBetweenSnapshotPages(server.db)
    client = SyncClient(journal, settings, transport=transport)
    client.pull_registry()
    client.close()
    assert transport.fired
    assert journal.registry_get("person", "a-early")["name"] == "changed mid-snapshot"
    assert len(journal.registry_all("person")) == 1501
