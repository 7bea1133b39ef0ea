"""Issue 14: upgrade a populated PostgreSQL database while a replica keeps serving uploads.

The replica runs the previous release (its start-up migration stops at the
baseline), kiosks keep uploading two events a request, and `migrate` takes
the database to head meanwhile (0002 builds two indexes on the partitioned
events table concurrently). No upload may fail, and every event must be on
the server exactly once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import text

from gateway.clock import to_ns
from sync.server import app as app_module
from sync.server import auth, open_database
from sync.server.schema import ensure_partitions, migrate
from sync.server.schema_upgrade import head, status, upgrade
from tests.sync.sync_harness import ServerThread

BASELINE = "0001_baseline"
REQUEST_TIMEOUT_S = 5.0  # the kiosk's default [sync] request_timeout_s


@dataclass
class Kiosk:
    """A gate that uploads two events per request, back to back, re-sending a batch that failed."""

    url: str
    token: str
    stream: str
    acked: int = 0
    uploads: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each accepted upload
    failures: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S,
                          headers={"Authorization": f"Bearer {self.token}"}) as client:
            while not stop.is_set():
                first = self.acked + 1
                batch = [_event(seq) for seq in (first, first + 1)]
                start = time.monotonic()
                try:
                    reply = client.post(f"/api/v1/streams/{self.stream}/events",
                                        json={"first_seq": first, "events": batch})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if reply.status_code != 200:
                    self.failures.append(f"{reply.status_code}: {reply.text[:200]}")
                    continue
                self.acked = reply.json()["acked_through"]
                self.uploads.append((start, time.monotonic()))


def _event(seq: int) -> dict:
    wall = datetime.now(timezone.utc)
    return {"seq": seq, "kind": "decision", "time": wall.isoformat(), "gate": "east-1", "decision": "admit",
            "flagged": False, "reasons": ["ok"], "boot_id": "boot-1", "mono_ns": seq * 1_000_000,
            "wall_time": to_ns(wall), "clock_synced": True, "detail": {"n": seq}}


def _populate(db, gate_ids: list[int], rows: int) -> None:
    """Events of the last weeks, spread over the gates, in the current month's and the default partition."""
    now = datetime.now(timezone.utc)
    with db.write() as conn:
        conn.execute(text(
            "INSERT INTO events (stream_id, seq, site_id, gate_id, kind, event_time_ns, time_source, wall_time_ns,"
            " boot_id, mono_ns, clock_synced, decision, flagged, body_c, received_at, payload)"
            " SELECT 'old-' || (n % 50), n, 'site-1', (:gates)[1 + n % cardinality(:gates)], 'decision',"
            " :t0 + n::bigint * 1000000000, 'kiosk', :t0 + n::bigint * 1000000000, 'b', n, true, 'admit', false, 36.5,"
            " :now - (n % 2000) * interval '1 hour', '{}' FROM generate_series(1, :rows) AS n"),
            {"gates": gate_ids, "rows": rows, "t0": to_ns(now - timedelta(days=30)), "now": now})


def _run_migration_under_load(url: str, monkeypatch, *, rows: int, kiosks: int, after_s: float) -> dict:
    db = open_database(url)
    try:
        assert upgrade(db, BASELINE) == BASELINE
        ensure_partitions(db)
        gates = [auth.add_gate(db, "site-1", f"gate-{i}") for i in range(kiosks)]
        _populate(db, [g.id for g, _ in gates], rows)
        # The replica runs the previous release: its start-up migration ends at the baseline.
        monkeypatch.setattr(app_module, "migrate", lambda d: upgrade(d, BASELINE))
        server = ServerThread(url).start()
        stop = threading.Event()
        fleet = [Kiosk(server.url, token, f"stream-{i}") for i, (_, token) in enumerate(gates)]
        threads = [threading.Thread(target=k.run, args=(stop,), daemon=True) for k in fleet]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while sum(len(k.uploads) for k in fleet) < 10 * kiosks and time.monotonic() < deadline:
                time.sleep(0.02)
            assert status(db).current == BASELINE
            began = time.monotonic()
            assert migrate(db) == head()
            ended = time.monotonic()
            time.sleep(after_s)
        finally:
            stop.set()
            for t in threads:
                t.join(REQUEST_TIMEOUT_S + 5)
            server.stop()

        during = [end - start for k in fleet for start, end in k.uploads if start < ended and end > began]
        before = [end - start for k in fleet for start, end in k.uploads if end <= began]
        with db.read() as conn:
            counts = dict(conn.execute(text(
                "SELECT stream_id, count(*) FROM events WHERE stream_id LIKE 'stream-%' GROUP BY stream_id")).all())
            doubled = conn.execute(text(
                "SELECT count(*) FROM (SELECT stream_id, seq FROM events GROUP BY stream_id, seq"
                " HAVING count(*) > 1) d")).scalar()
            seqs_ok = all(conn.execute(text(
                "SELECT min(seq) = 1 AND max(seq) = count(*) FROM events WHERE stream_id = :s"),
                {"s": k.stream}).scalar() for k in fleet)
            index_valid = conn.execute(text(
                "SELECT bool_and(indisvalid) AND count(*) = 2 FROM pg_index WHERE indexrelid IN "
                "('ix_events_gate_received'::regclass, 'ix_events_gate_kind_time'::regclass)")).scalar()
            old_rows = conn.execute(text("SELECT count(*) FROM events WHERE stream_id LIKE 'old-%'")).scalar()
        return {"fleet": fleet, "during": during, "before": before, "migration_s": ended - began,
                "counts": counts, "doubled": doubled, "seqs_ok": seqs_ok, "index_valid": index_valid,
                "old_rows": old_rows}
    finally:
        db.dispose()


def _check(result: dict, rows: int) -> None:
    fleet = result["fleet"]
    assert [f for k in fleet for f in k.failures] == []
    assert result["during"], "no upload overlapped the migration"
    assert result["index_valid"] is True
    assert result["old_rows"] == rows
    assert result["doubled"] == 0
    assert result["seqs_ok"]
    # Every acknowledged event is there once; the server holds nothing the kiosk was not told about.
    assert result["counts"] == {k.stream: k.acked for k in fleet}
    print(f"\nmigration {result['migration_s']:.2f} s; uploads during it: {len(result['during'])}, "
          f"slowest {max(result['during']) * 1000:.0f} ms (before: {len(result['before'])}, slowest "
          f"{max(result['before'], default=0) * 1000:.0f} ms); events uploaded: {sum(result['counts'].values())}")


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_upgrade_while_a_replica_serves_uploads(db_url, monkeypatch):
    rows = 50_000
    _check(_run_migration_under_load(db_url, monkeypatch, rows=rows, kiosks=3, after_s=0.3), rows)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_upgrade_of_a_big_events_table_while_a_replica_serves_uploads(db_url, monkeypatch):
    rows = 2_000_000
    _check(_run_migration_under_load(db_url, monkeypatch, rows=rows, kiosks=6, after_s=2.0), rows)
