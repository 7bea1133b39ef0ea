"""One staleness rule (issue 11): decide, the health panel and sync status agree."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway import health as healthmod
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal import Journal
from gateway.registry_copy import registry_stale
from sync.client import SyncWorker
from sync.protocol import SNAPSHOT_IN_PROGRESS

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "g.token").write_text("t" * 43, encoding="utf-8")
    cfg = tmp_path / "gate.toml"
    cfg.write_text('[gate]\nid = "g1"\nsite = "site-1"\n[journal]\npath = "j.db"\n'
                   '[sync]\nserver = "http://127.0.0.1:9"\ntoken_file = "g.token"\nstaleness_limit_h = 24\n',
                   encoding="utf-8")
    settings = load_config(cfg)
    clock = FakeClock(T0)
    journal = Journal.open(settings.journal.path, clock=clock)
    worker = SyncWorker(journal, settings)
    yield settings, journal, clock, worker
    worker.stop()
    journal.close()


def views(settings, journal, worker):
    from gateway.staleness import journal_staleness

    reason = journal_staleness(journal, settings.sync.staleness_limit_h)
    return (registry_stale(journal, settings, journal.trusted_now()),
            healthmod.registry_status(reason, journal.registry_synced_at())["status"],
            worker.status()["degraded_reason"])


def page(journal, cursor):
    journal.apply_registry_page([{"entity": "person", "entity_id": "p1", "op": "upsert", "payload": {},
                                  "change_seq": 1}], cursor, replace=True)


def test_decide_screen_and_status_agree_mid_snapshot_and_when_stale(setup):
    settings, journal, clock, worker = setup
    assert views(settings, journal, worker) == (True, "warn", "registry_never_synced")
    page(journal, "5")
    assert views(settings, journal, worker) == (False, "ok", None)
    page(journal, SNAPSHOT_IN_PROGRESS)  # a snapshot cut short: fresh time, incomplete copy
    assert views(settings, journal, worker) == (True, "warn", "registry_incomplete")
    page(journal, "9")
    clock.advance(25 * 3600)
    assert views(settings, journal, worker) == (True, "warn", "registry_stale")
