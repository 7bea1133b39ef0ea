"""Trusted time end to end (issue 11): a kiosk whose clock jumped a month ahead
syncs with a real server; the server refuses its times, the watermark is not
poisoned, and the guard's health panel says the kiosk's time was refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway import health as healthmod
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import SyncClient
from sync.server import auth
from tests.sync.sync_harness import decision, write_kiosk_config


def test_a_clock_a_month_ahead_is_refused_and_shown_to_the_guard(server, tmp_path):
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", server.url, token))
    now = datetime.now(timezone.utc)
    clock = FakeClock(now + timedelta(days=30), synced=True)  # NTP says "synced", the clock is wrong
    journal = Journal.open(settings.journal.path, clock=clock)
    journal.append(decision(1))  # before any server contact: nothing bounds it yet
    client = SyncClient(journal, settings)
    client.sync_once()
    assert journal.clock_refused()
    check = healthmod.clock(True, journal.clock_refused())
    assert check["status"] == "warn" and check["key"] == "health.clock.refused"
    # The server's time took over: passes are judged by it, and the watermark came back down.
    assert abs((journal.trusted_now() - now).total_seconds()) < 60
    assert abs((journal.watermark() - now).total_seconds()) < 60
    journal.append(decision(2))
    assert abs((journal.watermark() - now).total_seconds()) < 60

    clock.wall = datetime.now(timezone.utc)  # NTP fixes the clock
    client.sync_once()
    assert journal.clock_refused() is None
    client.close()
    journal.close()
