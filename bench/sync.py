"""Sync throughput: drain a kiosk backlog, against a plain bulk load of the same rows.

    .venv/bin/python -m bench.sync [--events 30000] [--gates 50] [--engines sqlite,postgres]
    .venv/bin/python -m bench.sync --events 100000 --gates 200          # full size

1. Drain: a real kiosk journal holding N unacked events is uploaded by the
   real sync client (gzip batches of 500, one in flight) to `checkpoint
   registry serve` running as its own process on loopback (warmed up by a
   few uploads to another stream first). The CPU time of
   the client (this process) and of the server process is reported per event.
2. Fleet: G gates upload at once (10 batches of 50 events each, over HTTP,
   concurrently): events/s and per-request p50/p99 latency (reported; DESIGN.md
   sets no target).
Anchors, measured in the same run into the same schema: what a user would
write to load these rows without the protocol - one plain COPY of all rows
(PostgreSQL), one `executemany` in one transaction (SQLite). Also shown: the
server's ingest() called in process (no HTTP).

Targets: the drain reaches at least 10,000 events/s on PostgreSQL and 5,000
on SQLite (DESIGN.md #4), or 0.5x (PostgreSQL) / 0.15x (SQLite) of the anchor
in the same run, whichever is lower: a loaded machine slows the anchor too.

PostgreSQL runs in fresh schemas that are dropped afterwards; without a
reachable server its rows are skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Row, finish, slowed  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from sync.client import SyncClient, SyncError  # noqa: E402
from sync.protocol import event_for_wire  # noqa: E402
from sync.server import auth, open_database  # noqa: E402
from sync.server.ingest import EVENT_COLUMNS, ingest  # noqa: E402
from sync.server.schema import migrate  # noqa: E402

EVENT = {
    "kind": "decision", "gate": "east-1", "direction": "in", "pass_id": "P7Q2K9", "person_id": "r-101",
    "object_c": 36.1, "ambient_c": 21.4, "offset_c": 0.5, "body_c": 36.6, "threshold_c": 37.3,
    "decision": "admit", "flagged": False, "reasons": ["ok"], "operator": "guard-7",
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_journal(path: Path, events: int) -> Journal:
    journal = Journal.open(path)
    # Bench set-up only: group the appends in transactions of 5,000 (the
    # journal's write transactions nest) instead of one fsync per event.
    for start in range(0, events, 5000):
        with journal._write():
            for _ in range(min(5000, events - start)):
                journal.append(EVENT)
    return journal


class ServerProcess:
    def __init__(self, db_url: str):
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "registry", "serve", "--db", self.db_url, "--port", str(self.port)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w"),
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/api/v1/time", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the registry server did not start")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def pg_schema(base: str):
    from sqlalchemy import create_engine, text

    name = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1), connect_args={"connect_timeout": 3})
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    sep = "&" if "?" in base else "?"

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()

    return f"{base}{sep}options=-csearch_path%3D{name}", drop


def anchor_rows(wire_events: list[dict], sqlite: bool) -> list[tuple]:
    """The events table's rows for these events, in EVENT_COLUMNS order, as the server would store them."""
    from datetime import datetime, timezone

    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from sync.server.schema import events as events_table

    now = datetime.now(timezone.utc)
    if sqlite:  # SQLite stores datetimes as text: bind it as the server does
        dialect = sqlite_dialect.dialect()
        now = events_table.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)(now)
    rows = []
    for e in wire_events:
        row = {
            "stream_id": "anchor", "seq": e["seq"], "site_id": "site-1", "gate_id": 1, "kind": e["kind"],
            "event_time_ns": e["wall_time"], "time_source": "clock", "wall_time_ns": e["wall_time"],
            "boot_id": e["boot_id"], "mono_ns": e["mono_ns"], "clock_synced": e["clock_synced"],
            "decision": e["decision"], "flagged": e["flagged"], "person_id": e["person_id"],
            "pass_id": e["pass_id"], "body_c": e["body_c"], "received_at": now,
            "payload": json.dumps(e, ensure_ascii=False),
        }
        rows.append(tuple(row.get(c) for c in EVENT_COLUMNS))
    return rows


def plain_bulk_load(db_url: str, wire_events: list[dict]) -> float:
    """Events/s of the anchor: the same rows loaded the plain way, in one transaction.

    PostgreSQL: one COPY of all rows with psycopg. SQLite: one executemany
    with the sqlite3 module. Into the server's own (migrated) schema.
    """
    db = open_database(db_url)
    migrate(db)
    columns = ", ".join(EVENT_COLUMNS)
    rows = anchor_rows(wire_events, db.is_sqlite)
    try:
        with db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            t0 = time.perf_counter()
            if db.is_postgres:
                with raw.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                raw.execute("BEGIN")
                raw.executemany(f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
                                rows)
            raw.commit()
            elapsed = time.perf_counter() - t0
    finally:
        db.dispose()
    return len(rows) / elapsed


def in_process_ingest(db_url: str, wire_events: list[dict]) -> float:
    """Events/s of the server's ingest function without HTTP (validation + watermark)."""
    db = open_database(db_url)
    migrate(db)
    gate, _ = auth.add_gate(db, "site-1", "inproc")
    t0 = time.perf_counter()
    for i in range(0, len(wire_events), 500):
        chunk = wire_events[i:i + 500]
        ingest(db, gate, "inproc-stream", chunk[0]["seq"], chunk)
    elapsed = time.perf_counter() - t0
    db.dispose()
    return len(wire_events) / elapsed


def warm_up(url: str, token: str, batches: int = 3, per_batch: int = 100) -> None:
    """A few uploads to another stream first: a registry server runs for months,
    so its first request's one-off costs (imports, compiled statements, pools)
    do not belong in the drain rate."""
    template = event_for_wire({**EVENT, "time": "2026-02-01T08:00:00+00:00", "boot_id": "warm-up",
                               "mono_ns": 1, "wall_time": 1_769_932_800_000_000_000, "clock_synced": True,
                               "detail": {}})
    stream = f"warm-up-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        for b in range(batches):
            first = 1 + b * per_batch
            events = [{**template, "seq": first + i} for i in range(per_batch)]
            http.post(f"/api/v1/streams/{stream}/events", json={"first_seq": first, "events": events}).raise_for_status()


def drain(db_url: str, journal_path: Path, workdir: Path) -> dict:
    db = open_database(db_url)
    migrate(db)
    _, token = auth.add_gate(db, "site-1", "east-1")
    db.dispose()
    with ServerProcess(db_url) as server:
        config = workdir / "gate.toml"
        (workdir / "gate.token").write_text(token)
        config.write_text(f'[gate]\nid = "east-1"\nsite = "site-1"\n[journal]\npath = "{journal_path.name}"\n'
                          f'[sync]\nserver = "{server.url}"\ntoken_file = "gate.token"\n')
        settings = load_config(config)
        journal = Journal.open(journal_path)
        journal.mark_unacked_after(0)
        pending = journal.pending_count()
        warm_up(server.url, token)
        client = SyncClient(journal, settings)
        # The bench's test hook (off by default): slows every request of the drain.
        client._request = slowed(client._request)
        server_cpu0, cpu0 = server.cpu_s(), time.process_time()
        t0 = time.perf_counter()
        uploaded = retries = 0
        while journal.pending_count():
            try:
                uploaded += client.upload_pending()[0]
            except SyncError:  # counted and retried, as the worker would
                retries += 1
        elapsed = time.perf_counter() - t0
        client_cpu, server_cpu = time.process_time() - cpu0, server.cpu_s() - server_cpu0
        client.close()
        left = journal.pending_count()
        journal.close()
    per_event = 1e6 / max(1, uploaded)
    return {"events": pending, "uploaded": uploaded, "seconds": elapsed, "rate": uploaded / elapsed, "left": left,
            "retries": retries, "client_us": client_cpu * per_event, "server_us": server_cpu * per_event}


async def _fleet(url: str, tokens: list[str], batches: int, per_batch: int) -> tuple[list[float], int, float, int]:
    latencies: list[float] = []
    limited = errors = 0
    template = event_for_wire({**EVENT, "time": "2026-02-01T08:00:00+00:00", "boot_id": "bench",
                               "mono_ns": 1, "wall_time": 1_769_932_800_000_000_000, "clock_synced": True,
                               "detail": {}})
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def gate(token: str) -> int:
            nonlocal limited, errors
            stream = str(uuid.uuid4())
            sent = 0
            seq = 1
            for _ in range(batches):
                body = json.dumps({"first_seq": seq, "events": [
                    {**template, "seq": seq + i, "mono_ns": seq + i} for i in range(per_batch)]}).encode()
                while True:
                    t0 = time.perf_counter()
                    try:
                        r = await http.post(f"/api/v1/streams/{stream}/events", content=body,
                                            headers={"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"})
                    except httpx.TransportError:  # e.g. a keep-alive connection the server closed
                        errors += 1
                        continue
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code == 429:
                        limited += 1
                        await asyncio.sleep(float(r.headers.get("Retry-After", 1)))
                        continue
                    r.raise_for_status()
                    break
                seq += per_batch
                sent += per_batch
            return sent

        t0 = time.perf_counter()
        sent = sum(await asyncio.gather(*(gate(t) for t in tokens)))
        elapsed = time.perf_counter() - t0
    return latencies, sent, elapsed, limited, errors


def fleet(db_url: str, gates: int, batches: int = 10, per_batch: int = 50) -> dict:
    db = open_database(db_url)
    migrate(db)
    tokens = [auth.add_gate(db, "site-1", f"g-{i}")[1] for i in range(gates)]
    db.dispose()
    with ServerProcess(db_url) as server:
        latencies, sent, elapsed, limited, errors = asyncio.run(_fleet(server.url, tokens, batches, per_batch))
    latencies.sort()
    return {"events": sent, "rate": sent / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000, "requests": len(latencies), "limited": limited,
            "errors": errors}


def run_engine(name: str, url_factory, journal_path: Path, wire_events: list[dict], gates: int, target: float,
               share: float, workdir: Path) -> list[Row]:
    anchor_name = "plain COPY" if name == "PostgreSQL" else "plain executemany"
    urls = [url_factory() for _ in range(4 if gates else 3)]
    try:
        anchor = plain_bulk_load(urls[0][0], wire_events)
        inproc = in_process_ingest(urls[1][0], wire_events)
        d = drain(urls[2][0], journal_path, workdir)
        f = fleet(urls[3][0], gates) if gates else None
    finally:
        for _, cleanup in urls:
            cleanup()
    needed = min(target, share * anchor)
    print(f"\n== {name} ==")
    print(f"anchor: {anchor_name:<20} {anchor:10,.0f} events/s   (same rows, one transaction, no HTTP)")
    print(f"ingest() in process           {inproc:10,.0f} events/s   ({inproc / anchor:.2f}x anchor)")
    print(f"drain over HTTP               {d['rate']:10,.0f} events/s   ({d['rate'] / anchor:.2f}x anchor; "
          f"target {needed:,.0f}); {d['uploaded']:,} events in {d['seconds']:.1f} s, {d['left']} left, "
          f"{d['retries']} failed passes retried")
    print(f"  CPU per event: client {d['client_us']:.0f} us, server {d['server_us']:.0f} us")
    rows = [Row("sync", f"{name} drain", d["rate"], "events/s", anchor_name, anchor,
                f">= {needed:,.0f} (min of {target:,.0f}, {share}x anchor)", d["rate"] >= needed and d["left"] == 0,
                note=f"CPU/event client {d['client_us']:.0f} us, server {d['server_us']:.0f} us")]
    if f is not None:
        print(f"{gates} gates at once             {f['rate']:10,.0f} events/s   ({f['rate'] / anchor:.2f}x anchor); "
              f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms over {f['requests']} requests, "
              f"{f['limited']} got 429, {f['errors']} connection errors retried")
        rows.append(Row("sync", f"{name} {gates} gates at once", f["rate"], "events/s", anchor_name, anchor,
                        "none set (DESIGN.md #5)", True, note=f"p99 {f['p99_ms']:.0f} ms per request"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--gates", type=int, default=50, help="gates uploading at once (0: skip the fleet run)")
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--pg", default=os.environ.get("CHECKPOINT_TEST_PG", "postgresql://postgres@127.0.0.1/test"))
    args = parser.parse_args(argv)
    engines = {e.strip() for e in args.engines.split(",") if e.strip()}

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        journal = build_journal(workdir / "journal.db", args.events)
        wire = [event_for_wire(e) for e in journal.events()]
        journal.close()
        print(f"kiosk journal with {args.events:,} events built in {time.perf_counter() - t0:.1f} s")

        counter = iter(range(1000))

        def sqlite_url():
            return f"sqlite:///{workdir}/server-{next(counter)}.db", lambda: None

        if "sqlite" in engines:
            rows += run_engine("SQLite", sqlite_url, workdir / "journal.db", wire, args.gates, 5000, 0.15, workdir)
        if "postgres" in engines:
            try:
                pg_schema(args.pg)[1]()
            except Exception as exc:  # report and go on: the SQLite figures stand on their own
                print(f"\n== PostgreSQL == skipped: {args.pg} not reachable ({type(exc).__name__})")
            else:
                rows += run_engine("PostgreSQL", lambda: pg_schema(args.pg), workdir / "journal.db", wire,
                                   args.gates, 10_000, 0.5, workdir)
    return finish(rows)


if __name__ == "__main__":
    sys.exit(main())
