"""The kiosk does not wait behind a stalled server: a short per-request
timeout ([sync] request_timeout_s), then a retry, and every event exactly once."""

from __future__ import annotations

import time

import pytest

from gateway.config import load_config, parse_config
from gateway.journal import Journal
from sync.client import ServerUnavailable, SyncClient
from sync.server import auth
from tests.sync.sync_harness import FaultProxy, decision, server_rows, write_kiosk_config

STALL_S = 6.0


def test_request_timeout_defaults_to_five_seconds_and_is_checked():
    base = '[gate]\nid = "east-1"\nsite = "site-1"\n[sync]\nserver = "http://x"\ntoken = "0123456789abcdef0123"\n'
    assert parse_config(base).sync.request_timeout_s == 5.0
    with pytest.raises(Exception, match="request_timeout_s"):
        parse_config(base + "request_timeout_s = 0\n")


def test_a_stalled_upload_times_out_early_and_the_retry_stores_each_event_once(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    # The proxy forwards each request (the server commits) and then holds
    # the reply past the kiosk's timeout.
    proxy = FaultProxy(server, fault_rate=1.0, weights={"stall": 1}, stall_s=STALL_S).start()
    config = write_kiosk_config(tmp_path / "kiosk", proxy.url, token)
    with open(config, "a", encoding="utf-8") as f:
        f.write("request_timeout_s = 0.5\n")
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    client = SyncClient(journal, settings)
    try:
        for n in range(1, 3):
            journal.append(decision(n))
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match="timed out"):
            client.upload_pending()
        assert time.monotonic() - started < STALL_S / 2  # gave up long before the reply would come
        assert journal.pending_count() == 2
        assert sorted(seq for seq, _ in server_rows(server.db_url, journal.stream_id)) == [1, 2]  # committed

        proxy.enabled = False
        journal.append(decision(3))
        summary = client.sync_once()  # (the server's time may add a clock anchor: sent too)
        assert summary["pending"] == 0 and summary["acked_through"] == journal.last_seq()
        rows = server_rows(server.db_url, journal.stream_id)
        assert sorted(seq for seq, _ in rows) == list(range(1, journal.last_seq() + 1))
        # The re-sent two were skipped as duplicates: each decision once.
        assert sorted(n for _, n in rows if n is not None) == [1, 2, 3]
        assert proxy.counts["stall"] == 1
    finally:
        client.close()
        journal.close()
        proxy.stop()
