"""A kiosk that moved a corrupt journal aside still uploads what the old file holds (issue 11)."""

from __future__ import annotations

import sqlite3

from gateway.config import load_config
from gateway.journal import Journal
from sync.client import SyncClient
from sync.server import auth
from tests.sync.sync_harness import decision, server_rows, write_kiosk_config


def damage_an_index(path):
    """Scribble over one index page: integrity_check fails, the event rows stay readable."""
    conn = sqlite3.connect(path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ix_events_wall'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * size
    data[start + size - 600:start + size] = b"\x07" * 600
    path.write_bytes(bytes(data))


def test_a_journal_moved_aside_still_reaches_the_server(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", server.url, token))
    journal = Journal.open(settings.journal.path)
    for n in range(1, 11):
        journal.append(decision(n))
    client = SyncClient(journal, settings)
    client.sync_once()
    client.close()
    for n in range(11, 51):  # 40 fever events the server has not seen
        journal.append(decision(n, decision="deny", flagged=True, reasons=["fever"], body_c=38.4))
    old_stream = journal.stream_id
    journal.checkpoint_wal()
    journal.close()
    damage_an_index(settings.journal.path)

    journal = Journal.open(settings.journal.path)
    assert journal.stream_id != old_stream  # really corrupt: moved aside
    client = SyncClient(journal, settings)
    summary = client.sync_once()
    client.close()
    assert summary["aside_uploaded"] == 40  # the 40 fevers the server had not seen
    numbers = sorted(n for _, n in server_rows(server.db_url, old_stream) if n is not None)
    assert numbers == list(range(1, 51))
    seqs = sorted(seq for seq, _ in server_rows(server.db_url, old_stream))
    assert seqs == list(range(1, len(seqs) + 1))
    (done,) = journal.events(kind="journal_aside_uploaded")
    assert done["detail"]["stream"] == old_stream and done["detail"]["error"] is None
    client = SyncClient(journal, settings)  # once only
    assert client.sync_once()["aside_uploaded"] == 0
    client.close()
    journal.close()
