"""A kiosk's day written through the real journal and uploaded by the real
sync client: the source the boards and reports are checked against."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import SyncClient
from sync.server import auth
from tests.sync.sync_harness import write_kiosk_config

# 2026-02-01 09:00 in Asia/Shanghai.
DAY_START = datetime(2026, 2, 1, 1, 0, tzinfo=timezone.utc)


def passage(direction: str, decision: str, reasons: list[str], *, person: str | None = None,
            body_c: float = 36.5, flagged: bool = False) -> dict:
    return {"kind": "decision", "gate": "east-1", "direction": direction, "decision": decision, "reasons": reasons,
            "person_id": person, "pass_id": f"ps-{person}" if person else None, "body_c": body_c,
            "object_c": body_c - 1, "ambient_c": 20.0, "threshold_c": 37.3, "flagged": flagged}


class KioskDay:
    """One gate at `site`, its journal on a fake clock, synced on demand."""

    def __init__(self, server, directory: Path, *, site: str = "site-a", gate: str = "east-1",
                 start: datetime = DAY_START):
        _, token = auth.add_gate(server.db, site, gate)
        config = write_kiosk_config(directory, server.url, token, gate=gate, site=site)
        self.settings = load_config(config)
        self.clock = FakeClock(start)
        self.journal = Journal.open(self.settings.journal.path, clock=self.clock)

    def append(self, fields: dict) -> dict:
        self.clock.advance(60)
        return self.journal.append(fields)

    def ledger(self, table: str, entry: dict, operator: str = "老李") -> dict:
        self.clock.advance(60)
        return self.journal.add_ledger_entry(table, entry, operator=operator, gate="east-1")

    def sync(self) -> dict:
        client = SyncClient(self.journal, self.settings)
        try:
            return client.sync_once()
        finally:
            client.close()

    def close(self) -> None:
        self.journal.close()
