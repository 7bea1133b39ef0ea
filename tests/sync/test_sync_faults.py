"""Exactly once under faults: a proxy between kiosk and server breaks requests
at random (drops after commit, 500s, 429s, stalls past the timeout, server
restarts) while the kiosk keeps recording; the server ends with every event
exactly once. Plus kill -9 of a kiosk in the middle of a sync."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.journal import Journal
from sync.client import RateLimited, SyncClient, SyncError
from sync.server import auth, registry
from tests.sync.sync_harness import FaultProxy, decision, server_rows, write_kiosk_config

ROOT = Path(__file__).resolve().parents[2]


def run_under_faults(server, tmp_path, *, events: int, fault_rate: float, seed: int, registry_changes: int):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    proxy = FaultProxy(server, seed=seed, fault_rate=fault_rate, stall_s=0.6).start()
    config = write_kiosk_config(tmp_path / "kiosk", proxy.url, token)
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    client = SyncClient(journal, settings, timeout_s=0.4, compress=seed % 2 == 0)
    rng = random.Random(seed)
    done = threading.Event()

    def record():
        n = 0
        while n < events:
            for _ in range(rng.randint(1, 12)):
                n += 1
                journal.append(decision(n))
                if n >= events:
                    break
            time.sleep(rng.uniform(0, 0.012))
        done.set()

    def staff():
        for i in range(registry_changes):
            registry.add_person(server.db, "site-1", f"p-{i}", name=f"n{i}")
            if i % 7 == 3:
                registry.remove(server.db, "site-1", "person", f"p-{i - 1}")
            if i == registry_changes // 2:
                registry.compact(server.db, registry.head(server.db, "site-1"))
            time.sleep(0.005)

    writer = threading.Thread(target=record)
    changer = threading.Thread(target=staff)
    writer.start()
    changer.start()
    errors = 0
    try:
        while not (done.is_set() and not changer.is_alive() and journal.pending_count() == 0):
            try:
                client.sync_once()
            except SyncError:
                errors += 1
        # The faults stop; one clean pass reads the registry to its head.
        proxy.enabled = False
        writer.join()
        changer.join()
        while True:
            try:
                summary = client.sync_once()
                break
            except RateLimited as exc:  # the real server's own admission control
                time.sleep(exc.retry_after)
        return journal, proxy, summary, errors
    finally:
        client.close()
        proxy.stop()


def check_exactly_once(server, journal):
    rows = server_rows(server.db_url, journal.stream_id)
    seqs = [seq for seq, _ in rows]
    assert len(seqs) == len(set(seqs)), "an event was stored twice"
    assert sorted(seqs) == list(range(1, journal.last_seq() + 1)), "an event is missing"
    if server.db.is_sqlite:
        assert seqs == sorted(seqs), "events were stored out of order"
    stored = {e["seq"]: e["detail"].get("n") for e in journal.events()}
    assert dict(rows) == stored


def check_registry_matches(server, journal):
    with server.db.read() as conn:
        from sqlalchemy import select

        from sync.server.schema import registry_state

        expected = {r.entity_id for r in conn.execute(
            select(registry_state.c.entity_id).where(registry_state.c.entity == "person"))}
    assert set(journal.registry_all("person")) == expected


def test_exactly_once_under_faults_short(server, tmp_path):
    journal, proxy, summary, errors = run_under_faults(
        server, tmp_path, events=1500, fault_rate=0.35, seed=11, registry_changes=60)
    try:
        assert summary["pending"] == 0
        assert proxy.faults >= 25, proxy.counts
        assert errors > 0
        check_exactly_once(server, journal)
        check_registry_matches(server, journal)
    finally:
        journal.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_exactly_once_under_faults_long(server, tmp_path, seed):
    journal, proxy, summary, errors = run_under_faults(
        server, tmp_path, events=20_000, fault_rate=0.35, seed=seed, registry_changes=400)
    try:
        print(f"faults: {dict(proxy.counts)}; failed passes: {errors}; restarts: {server.restarts}")
        assert summary["pending"] == 0
        assert proxy.faults >= 300, proxy.counts
        assert proxy.counts["restart"] >= 5
        check_exactly_once(server, journal)
        check_registry_matches(server, journal)
    finally:
        journal.close()


KIOSK_SYNC_LOOP = """
import sys
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import RateLimited, SyncClient, SyncError
settings = load_config(sys.argv[1])
journal = Journal.open(settings.journal.path)
client = SyncClient(journal, settings, timeout_s=2)
print("ready", flush=True)
while True:
    try:
        client.sync_once()
    except SyncError:
        pass
"""


def test_kill_9_of_the_kiosk_during_a_sync(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    # Slow replies widen the window in which a kill lands mid-request.
    proxy = FaultProxy(server, fault_rate=0.0, delay_s=0.08).start()
    config = write_kiosk_config(tmp_path / "kiosk", proxy.url, token)
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    for n in range(1, 1201):
        journal.append(decision(n))
    journal.close()
    rng = random.Random(4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    partial_kills = 0
    try:
        for _ in range(4):
            proc = subprocess.Popen([sys.executable, "-c", KIOSK_SYNC_LOOP, str(config)], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.25))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            journal = Journal.open(settings.journal.path)
            stored = len(server_rows(server.db_url, journal.stream_id))
            partial_kills += 0 < stored < journal.last_seq()
            for n in range(journal.last_seq() + 1, journal.last_seq() + 101):
                journal.append(decision(10_000 + n))
            journal.close()
        assert partial_kills >= 1, "no kill landed in the middle of the upload"
        journal = Journal.open(settings.journal.path)
        client = SyncClient(journal, settings)
        assert client.sync_once()["pending"] == 0
        client.close()
        check_exactly_once(server, journal)
        journal.close()
    finally:
        proxy.stop()

