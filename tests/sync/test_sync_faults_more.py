"""The slow fault run, extended (issue 11): through a proxy that breaks requests,
a kiosk meets a full disk at start-up, a journal rolled back to an older copy,
its clock jumping a month ahead and back, and events the server must
quarantine; the server ends with every event exactly once, at a plausible time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.clock import FakeClock, to_ns
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import RateLimited, SyncClient, SyncError
from sync.server import auth
from sync.server.schema import events, quarantine
from tests.sync.sync_harness import FaultProxy, decision, write_kiosk_config

FULL_DISK = Path(__file__).resolve().parents[1] / "journal" / "full_disk.py"
ROOT = Path(__file__).resolve().parents[2]


def copy_journal(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        s, d = Path(str(src) + suffix), Path(str(dst) + suffix)
        d.unlink(missing_ok=True)
        if s.exists():
            shutil.copyfile(s, d)


def sync_until_done(client, journal, *, faults_ok=True):
    for _ in range(2000):
        try:
            if client.sync_once()["pending"] == 0 and journal.pending_count() == 0:
                return
        except RateLimited as exc:
            import time
            time.sleep(exc.retry_after)
        except SyncError:
            if not faults_ok:
                raise
    raise AssertionError("sync never caught up")


def numbers_on_server(db, gate_id) -> list[int]:
    with db.read() as conn:
        payloads = [r[0] for r in conn.execute(select(events.c.payload).where(events.c.gate_id == gate_id))]
        payloads += [r[0] for r in conn.execute(select(quarantine.c.payload).where(quarantine.c.gate_id == gate_id))]
    numbers = []
    for text in payloads:
        n = (json.loads(text).get("detail") or {}).get("n")
        if n is not None:
            numbers.append(n)
    return sorted(numbers)


@pytest.mark.slow
def test_rollback_full_disk_clock_jumps_and_bad_input_lose_nothing(server, tmp_path):
    gate, token = auth.add_gate(server.db, "site-1", "east-1")
    proxy = FaultProxy(server, seed=23, fault_rate=0.3, stall_s=0.6).start()
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", proxy.url, token))
    path = settings.journal.path
    backup = path.with_name("backup.db")
    started = datetime.now(timezone.utc)
    clock = FakeClock(started, synced=True)
    journal = Journal.open(path, clock=clock)
    client = SyncClient(journal, settings, timeout_s=0.4)
    n = 0

    def record(count, **extra):
        nonlocal n
        for _ in range(count):
            n += 1
            bad = {"person_id": f"p\x00{n}"} if n % 97 == 0 else {}  # NUL: quarantined, still stored once
            journal.append(decision(n, **{**bad, **extra}))
            clock.advance(0.05)

    try:
        for _ in range(5):
            record(200)
            try:
                client.sync_once()
            except SyncError:
                pass
        sync_until_done(client, journal)
        journal.checkpoint_wal()
        copy_journal(path, backup)  # an SD image taken here (1..1000 on the server)

        record(300)
        clock.wall += timedelta(days=30)  # the OS clock jumps a month ahead, still "synced"
        record(300)
        sync_until_done(client, journal)
        clock.wall = datetime.now(timezone.utc)  # and comes back
        record(400)
        sync_until_done(client, journal)  # 1..2000 on the server
        client.close()
        journal.close()

        # The disk is full at start-up: one clear error, the journal stays where it is.
        done = subprocess.run([sys.executable, str(FULL_DISK), str(path), "0", "open"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert json.loads(done.stdout.strip().splitlines()[-1])["error"].startswith("JournalWriteError")
        assert not list(path.parent.glob("*corrupt*"))

        copy_journal(backup, path)  # ...and the old image is restored
        journal = Journal.open(path, clock=clock)
        client = SyncClient(journal, settings, timeout_s=0.4)
        record(1000)  # 2001..3000 reuse seqs the server already holds
        sync_until_done(client, journal)
        proxy.enabled = False
        sync_until_done(client, journal, faults_ok=False)
    finally:
        client.close()
        proxy.stop()

    assert numbers_on_server(server.db, gate.id) == list(range(1, n + 1))  # every event, exactly once
    assert journal.events(kind="stream_rotated")
    with server.db.read() as conn:
        times = [r[0] for r in conn.execute(select(events.c.event_time_ns).where(events.c.gate_id == gate.id))]
    latest = to_ns(datetime.now(timezone.utc) + timedelta(minutes=10))
    assert all(to_ns(started - timedelta(hours=1)) <= t <= latest for t in times)  # no 1970, no next month
    journal.close()
