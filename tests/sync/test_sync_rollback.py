"""A journal rolled back to an older copy loses nothing (issue 11).

After an SD image or a backup is restored, new events reuse seqs the server
already acked. The server compares content, answers `stream_diverged`, and the
kiosk uploads the diverged tail on a new stream: every event on the server
exactly once, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil

from gateway.config import load_config
from gateway.journal import Journal
from sync.client import SyncClient
from tests.sync.sync_harness import decision, server_rows, write_kiosk_config
from sync.server import auth


def fill(journal, count, start):
    for n in range(start, start + count):
        journal.append(decision(n))


def copy_journal(src, dst):
    for suffix in ("", "-wal", "-shm"):
        s = src.with_name(src.name + suffix)
        d = dst.with_name(dst.name + suffix)
        d.unlink(missing_ok=True)
        if s.exists():
            shutil.copyfile(s, d)


def sync(journal, settings) -> dict:
    client = SyncClient(journal, settings)
    try:
        return client.sync_once()
    finally:
        client.close()


def numbers_on_server(db_url, streams) -> list[int]:
    return sorted(n for stream in streams for _, n in server_rows(db_url, stream) if n is not None)


def test_a_journal_restored_from_an_older_copy_loses_no_event(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", server.url, token))
    path = settings.journal.path
    backup = path.with_name("backup.db")

    journal = Journal.open(path)
    fill(journal, 20, start=1)
    sync(journal, settings)
    fill(journal, 10, start=21)  # 21..30 not yet uploaded when the backup is taken
    journal.checkpoint_wal()
    journal.close()
    copy_journal(path, backup)

    journal = Journal.open(path)
    fill(journal, 50, start=31)  # 31..80, uploaded
    assert sync(journal, settings)["pending"] == 0
    old_stream = journal.stream_id
    journal.close()

    copy_journal(backup, path)  # the SD card is restored from the older image
    journal = Journal.open(path)
    assert journal.stream_id == old_stream
    fill(journal, 50, start=1001)  # new people, reusing seqs 31..80 of the old stream
    fever = journal.append({**decision(2000), "decision": "deny", "flagged": True, "reasons": ["fever"],
                            "body_c": 38.6})
    summary = sync(journal, settings)
    assert summary["pending"] == 0
    assert journal.stream_id != old_stream  # the diverged tail went to a new stream
    (rotated,) = journal.events(kind="stream_rotated")
    assert rotated["detail"]["previous_stream"] == old_stream

    expected = list(range(1, 81)) + list(range(1001, 1051)) + [2000]
    assert numbers_on_server(server.db_url, [old_stream, journal.stream_id]) == expected
    new_rows = server_rows(server.db_url, journal.stream_id)
    assert sorted(seq for seq, _ in new_rows) == list(range(1, len(new_rows) + 1))  # contiguous from 1
    assert fever["detail"]["n"] == 2000

    fill(journal, 5, start=3001)  # and the new stream carries on
    assert sync(journal, settings)["pending"] == 0
    assert numbers_on_server(server.db_url, [old_stream, journal.stream_id]) == expected + list(range(3001, 3006))
    journal.close()


def test_a_resend_of_the_same_events_is_still_a_duplicate(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", server.url, token))
    journal = Journal.open(settings.journal.path)
    fill(journal, 30, start=1)
    sync(journal, settings)
    stream = journal.stream_id
    journal.mark_unacked_after(10)  # a lost reply: the kiosk sends 11..30 again
    assert sync(journal, settings)["pending"] == 0
    assert journal.stream_id == stream and not journal.events(kind="stream_rotated")
    assert numbers_on_server(server.db_url, [stream]) == list(range(1, 31))
    journal.close()
