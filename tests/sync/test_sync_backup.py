"""Back up the registry while a kiosk syncs into it, lose the server, restore
the backup, and carry on: every event ends on the server exactly once, and the
kiosk's registry copy matches the restored server's (SQLite and PostgreSQL).

The backup and restore are the real commands (`checkpoint registry backup` /
`restore`: SQLite's online backup API, pg_dump/pg_restore)."""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import select

from gateway.cli import main as cli_main
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import RateLimited, SyncClient, SyncError
from sync.server import auth, registry
from sync.server.db import open_database
from sync.server.schema import streams
from tests.sync.sync_harness import decision, server_rows, write_kiosk_config
from tests.sync.test_sync_faults import check_exactly_once, check_registry_matches


def sync_until_drained(client, journal):
    while True:
        try:
            if client.sync_once()["pending"] == 0:
                return
        except RateLimited as exc:
            time.sleep(exc.retry_after)


def server_watermark(db_url, stream_id):
    db = open_database(db_url)
    try:
        with db.read() as conn:
            return conn.execute(select(streams.c.acked_through).where(streams.c.stream_id == stream_id)).scalar()
    finally:
        db.dispose()


def test_a_registry_restored_from_a_backup_taken_mid_sync_ends_with_every_event_once(server, tmp_path, capsys):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    for i in range(20):
        registry.add_person(server.db, "site-1", f"p-{i}", name=f"n{i}")
    config = write_kiosk_config(tmp_path / "kiosk", server.url, token)
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    client = SyncClient(journal, settings, timeout_s=5)
    total = 1200
    recorded = threading.Event()

    backup_taken = threading.Event()

    def record():
        for n in range(1, total + 1):
            if n == total // 2 + 1:
                # The rest of the day's events come after the backup, however slow pg_dump is
                # on a busy machine; uploads still go on while it runs.
                backup_taken.wait(120)
            journal.append(decision(n))
            if n % 10 == 0:
                time.sleep(0.005)
        recorded.set()

    writer = threading.Thread(target=record)
    writer.start()
    backup_dir = tmp_path / "backups"
    backed_up = False
    try:
        # Sync continuously; take the backup in the middle, while uploads go on.
        while not (recorded.is_set() and journal.pending_count() == 0):
            try:
                client.sync_once()
            except SyncError:
                pass
            if not backed_up and len(server_rows(server.db_url, journal.stream_id)) >= 300:
                done = threading.Thread(target=cli_main, args=(
                    ["registry", "backup", "--db", server.db_url, "--out", str(backup_dir), "--keep", "3"],))
                done.start()
                client.sync_once()  # an upload while the backup is being written
                done.join(60)
                backed_up = True
                backup_taken.set()
                # Registry changes after the backup: the kiosk's cursor will be ahead of the restored feed.
                for i in range(20, 30):
                    registry.add_person(server.db, "site-1", f"p-{i}", name=f"n{i}")
        backup_taken.set()
        writer.join()
        sync_until_drained(client, journal)
        assert backed_up
        backup_file = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["backup"]

        # The server is lost and restored from last night's backup.
        server.stop()
        assert cli_main(["registry", "restore", "--db", server.db_url, backup_file]) == 0
        rows = server_rows(server.db_url, journal.stream_id)
        seqs = sorted(seq for seq, _ in rows)
        # A consistent snapshot: the watermark and the events in the backup agree, and it is behind the kiosk.
        assert seqs == list(range(1, len(seqs) + 1))
        assert server_watermark(server.db_url, journal.stream_id) == len(seqs)
        assert 300 <= len(seqs) < journal.last_seq()
        server.start()

        # The kiosk carries on: new events, and a re-send of what the backup is missing.
        for n in range(total + 1, total + 51):
            journal.append(decision(n))
        sync_until_drained(client, journal)
        check_exactly_once(server, journal)
        check_registry_matches(server, journal)
    finally:
        writer.join()
        client.close()
        journal.close()


def test_restore_refuses_a_backup_of_the_other_engine(server, tmp_path, capsys):
    wrong = tmp_path / ("registry-x.pgdump" if server.db.is_sqlite else "registry-x.sqlite3")
    wrong.write_bytes(b"not a backup")
    server.stop()
    assert cli_main(["registry", "restore", "--db", server.db_url, str(wrong)]) == 1
    assert ("not an SQLite backup" if server.db.is_sqlite else "not a PostgreSQL backup") in capsys.readouterr().err
    server.start()


def test_backups_are_pruned_to_keep(server, tmp_path, capsys):
    for _ in range(4):
        assert cli_main(["registry", "backup", "--db", server.db_url, "--out", str(tmp_path), "--keep", "2"]) == 0
    kept = sorted(p.name for p in tmp_path.glob("registry-*"))
    assert len(kept) == 2
    written = [json.loads(line)["backup"] for line in capsys.readouterr().out.splitlines()]
    assert [p.split("/")[-1] for p in written[-2:]] == kept
