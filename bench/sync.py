"""Sync throughput: drain a kiosk backlog, and 200 gates uploading at once.

    .venv/bin/python -m bench.sync [--events 100000] [--gates 200] [--pg postgresql://postgres@127.0.0.1/test]

1. Drain: a real kiosk journal holding N unacked events is uploaded by the
   real sync client (gzip batches of 500, one in flight) to `checkpoint
   registry serve` running as its own process on loopback. Targets: >= 5,000
   events/s on SQLite, >= 10,000 on PostgreSQL.
2. Fleet: G gates upload at once (10 batches of 50 events each, over HTTP,
   concurrently): events/s and per-request p50/p99 latency.
Baseline, measured in the same run: the same rows bulk-inserted straight into
the same kind of database (no HTTP, no validation, no watermark) - the
ratio says what the protocol costs on top of the raw insert.

PostgreSQL runs in a fresh schema that is dropped afterwards; without a
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

from gateway.config import load_config  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from sync.client import SyncClient, SyncError  # noqa: E402
from sync.protocol import event_for_wire  # noqa: E402
from sync.server import auth, open_database  # noqa: E402
from sync.server.ingest import ingest  # noqa: E402
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


def baseline_insert(db_url: str, wire_events: list[dict]) -> float:
    """Events/s of a plain bulk insert of the same rows, 500 per transaction."""
    from sync.server.schema import events as events_table

    db = open_database(db_url)
    migrate(db)
    now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    rows = [{
        "stream_id": "baseline", "seq": e["seq"], "site_id": "site-1", "gate_id": 1, "kind": e["kind"],
        "event_time_ns": e["wall_time"], "time_source": "clock", "wall_time_ns": e["wall_time"],
        "boot_id": e["boot_id"], "mono_ns": e["mono_ns"], "clock_synced": e["clock_synced"],
        "decision": e["decision"], "flagged": e["flagged"], "person_id": e["person_id"], "pass_id": e["pass_id"],
        "body_c": e["body_c"], "received_at": now, "payload": json.dumps(e, ensure_ascii=False),
    } for e in wire_events]
    t0 = time.perf_counter()
    for i in range(0, len(rows), 500):
        with db.write() as conn:
            conn.execute(events_table.insert(), rows[i:i + 500])
    elapsed = time.perf_counter() - t0
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
        client = SyncClient(journal, settings)
        t0 = time.perf_counter()
        uploaded = retries = 0
        while journal.pending_count():
            try:
                uploaded += client.upload_pending()[0]
            except SyncError:  # counted and retried, as the worker would
                retries += 1
        elapsed = time.perf_counter() - t0
        client.close()
        left = journal.pending_count()
        journal.close()
    return {"events": pending, "uploaded": uploaded, "seconds": elapsed, "rate": uploaded / elapsed, "left": left,
            "retries": retries}


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
               workdir: Path) -> None:
    urls = [url_factory() for _ in range(4)]
    try:
        base = baseline_insert(urls[0][0], wire_events)
        inproc = in_process_ingest(urls[1][0], wire_events)
        d = drain(urls[2][0], journal_path, workdir)
        f = fleet(urls[3][0], gates)
    finally:
        for _, cleanup in urls:
            cleanup()
    verdict = "meets" if d["rate"] >= target else "BELOW"
    print(f"\n== {name} ==")
    print(f"baseline raw bulk insert      {base:10,.0f} events/s")
    print(f"ingest() in process           {inproc:10,.0f} events/s   ({inproc / base:.2f}x baseline)")
    print(f"drain over HTTP               {d['rate']:10,.0f} events/s   ({d['rate'] / base:.2f}x baseline; "
          f"target {target:,.0f}: {verdict}); {d['uploaded']:,} events in {d['seconds']:.1f} s, {d['left']} left, "
          f"{d['retries']} failed passes retried")
    print(f"{gates} gates at once             {f['rate']:10,.0f} events/s   ({f['rate'] / base:.2f}x baseline); "
          f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms over {f['requests']} requests, {f['limited']} got 429, "
          f"{f['errors']} connection errors retried")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--gates", type=int, default=200)
    parser.add_argument("--pg", default=os.environ.get("CHECKPOINT_TEST_PG", "postgresql://postgres@127.0.0.1/test"))
    args = parser.parse_args()

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

        run_engine("SQLite", sqlite_url, workdir / "journal.db", wire, args.gates, 5000, workdir)
        try:
            pg_schema(args.pg)[1]()
        except Exception as exc:  # report and go on: the SQLite figures stand on their own
            print(f"\n== PostgreSQL == skipped: {args.pg} not reachable ({type(exc).__name__})")
            return 0
        run_engine("PostgreSQL", lambda: pg_schema(args.pg), workdir / "journal.db", wire, args.gates, 10_000,
                   workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
