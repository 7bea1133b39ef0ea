"""The slow fault run, extended (issue 11): through a proxy that breaks requests,
a kiosk meets its clock jumping a month ahead and back, a disk that fills up
mid-run (and a sync on it), a full disk at start-up, a journal rolled back to
an older copy, and events the server must quarantine (NUL, Infinity, NaN and
70-bit integers); the server ends with every event exactly once - one copy per
(stream, seq), the content the kiosk recorded - at a plausible time."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
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


DISK_FILLS_MID_RUN = """
import json, resource, signal, sys
from gateway.config import load_config
from gateway.journal import Journal, JournalWriteError
from sync.client import SyncWorker
from tests.sync.sync_harness import decision
from tests.sync.test_sync_faults_more import hostile

settings = load_config(sys.argv[1])
n = first = int(sys.argv[2])
journal = Journal.open(settings.journal.path)
worker = SyncWorker(journal, settings, timeout_s=0.4)  # the kiosk's sync, as `sync now` uses it
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))


def append(m):
    event = decision(m, **hostile(m))
    event["detail"] = {**event["detail"], "pad": "x" * 1500}
    journal.append(event)


full_errors = 0
while full_errors < 3 and n - first < 5000:
    try:
        append(n + 1)
        n += 1
    except JournalWriteError:
        full_errors += 1  # the event is not recorded; the kiosk goes on
filled_after = n - first
try:
    worker.sync_once()  # sync now, on the full disk
    sync_error = None
except Exception as exc:  # the test checks what escaped
    sync_error = type(exc).__name__
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space freed
for _ in range(200):
    append(n + 1)
    n += 1
worker.stop()
journal.close()
print(json.dumps({"first": first + 1, "last": n, "full_errors": full_errors, "filled_after": filled_after,
                  "after_space_freed": n - first - filled_after, "sync_error": sync_error}))
"""


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


def hostile(n: int) -> dict:
    """What the kiosk records as event n: now and then a value the server must
    quarantine (NUL, Infinity, a NaN or a 70-bit integer in the detail) or that
    the journal stores as NULL (a NaN reading). Deterministic, to check content."""
    if n % 97 == 0:
        return {"person_id": f"p\x00{n}"}
    if n % 89 == 0:
        return {"body_c": math.inf}
    if n % 83 == 0:
        return {"detail": {"n": n, "nan": math.nan}}
    if n % 79 == 0:
        return {"detail": {"n": n, "big": 2**70}}
    if n % 73 == 0:
        return {"body_c": math.nan}
    return {}


def server_copies(db, gate_id) -> list[tuple[str, int, dict]]:
    """(stream, seq, payload) of every event of the gate on the server, stored or quarantined."""
    rows = []
    with db.read() as conn:
        for table in (events, quarantine):
            query = select(table.c.stream_id, table.c.seq, table.c.payload).where(table.c.gate_id == gate_id)
            rows += [(stream, seq, json.loads(text)) for stream, seq, text in conn.execute(query)]
    return rows


def check_every_event_once(db, gate_id, recorded: dict[int, dict]) -> None:
    """Every event the kiosk recorded is on the server exactly once: one copy
    per (stream, seq), one (stream, seq) per event, with the content the kiosk
    recorded (an event stored in one place and quarantined in another counts twice)."""
    copies = server_copies(db, gate_id)
    places = Counter((stream, seq) for stream, seq, _ in copies)
    assert not [key for key, count in places.items() if count > 1], "a (stream, seq) is on the server twice"
    decisions = [payload for _, _, payload in copies if _number(payload) is not None]
    assert sorted(_number(p) for p in decisions) == sorted(recorded), "an event is missing or stored twice"
    for payload in decisions:
        sent = recorded[_number(payload)]
        for field in ("kind", "person_id", "pass_id", "decision", "flagged", "reasons"):
            assert payload.get(field) == sent.get(field), (field, payload, sent)
    # The kiosk's own events (clock anchors, the stream rotation) have no number: once each by content.
    own = Counter(json.dumps([p["kind"], p["boot_id"], p["mono_ns"], p["detail"]], sort_keys=True)
                  for _, _, p in copies if _number(p) is None)
    assert not [key for key, count in own.items() if count > 1], "a kiosk event is on the server twice"


def _number(payload: dict) -> int | None:
    return (payload.get("detail") or {}).get("n")


def numbers_on_server(db, gate_id) -> list[int]:
    return sorted(n for _, _, p in server_copies(db, gate_id) if (n := _number(p)) is not None)


@pytest.mark.slow
def test_rollback_full_disk_clock_jumps_and_bad_input_lose_nothing(server, tmp_path):
    gate, token = auth.add_gate(server.db, "site-1", "east-1")
    proxy = FaultProxy(server, seed=23, fault_rate=0.3, stall_s=0.6).start()
    config = write_kiosk_config(tmp_path / "kiosk", proxy.url, token)
    settings = load_config(config)
    path = settings.journal.path
    backup = path.with_name("backup.db")
    started = datetime.now(timezone.utc)
    clock = FakeClock(started, synced=True)
    journal = Journal.open(path, clock=clock)
    client = SyncClient(journal, settings, timeout_s=0.4)
    n = 0

    recorded: dict[int, dict] = {}

    def record(count):
        nonlocal n
        for _ in range(count):
            n += 1
            recorded[n] = decision(n, **hostile(n))  # quarantined or not, each stored once
            journal.append(recorded[n])
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
        check_every_event_once(server.db, gate.id, recorded)
        client.close()
        journal.close()

        # The disk fills up while the kiosk runs: every append in the meantime is
        # a clear error, a sync on the full disk moves nothing aside, and once
        # space is freed the same process records and uploads again.
        limit = max(p.stat().st_size for p in path.parent.glob(path.name + "*")) + 256 * 1024
        done = subprocess.run([sys.executable, "-c", DISK_FILLS_MID_RUN, str(config), str(n), str(limit)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        mid_run = json.loads(done.stdout.strip().splitlines()[-1])
        assert mid_run["full_errors"] == 3 and mid_run["first"] == n + 1, mid_run
        assert mid_run["filled_after"] > 0 and mid_run["after_space_freed"] == 200, mid_run
        assert mid_run["sync_error"] in (None, "SyncError"), mid_run  # the worker's one error type
        for m in range(n + 1, mid_run["last"] + 1):
            recorded[m] = decision(m, **hostile(m))
        n = mid_run["last"]
        assert not list(path.parent.glob("*corrupt*"))
        journal = Journal.open(path, clock=clock)
        client = SyncClient(journal, settings, timeout_s=0.4)
        sync_until_done(client, journal)
        check_every_event_once(server.db, gate.id, recorded)
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
        record(1000)  # on local seqs the server already holds with other events
        sync_until_done(client, journal)
        proxy.enabled = False
        sync_until_done(client, journal, faults_ok=False)
    finally:
        client.close()
        proxy.stop()

    assert numbers_on_server(server.db, gate.id) == list(range(1, n + 1))
    check_every_event_once(server.db, gate.id, recorded)
    with server.db.read() as conn:
        quarantined = [json.loads(r[0])["detail"]["n"] for r in
                       conn.execute(select(quarantine.c.payload).where(quarantine.c.gate_id == gate.id))]
    # NUL and Infinity are quarantined; a NaN reading is stored as NULL by the
    # journal, and a NaN or a big integer inside the detail is kept as text.
    assert sorted(quarantined) == [m for m in recorded if m % 97 == 0 or m % 89 == 0]
    assert journal.events(kind="stream_rotated")
    with server.db.read() as conn:
        times = [r[0] for r in conn.execute(select(events.c.event_time_ns).where(events.c.gate_id == gate.id))]
    latest = to_ns(datetime.now(timezone.utc) + timedelta(minutes=10))
    assert all(to_ns(started - timedelta(hours=1)) <= t <= latest for t in times)  # no 1970, no next month
    journal.close()
