"""When each gate last reached the server, for the gate board.

An idle gate uploads nothing but still reads the registry feed every sync
interval, so "last upload" alone would call it offline at night. Every
authenticated gate request calls `GateContacts.seen(gate_id)`; the time is
written at most once per `min_interval_s` per gate (per server process), so
this costs one small write a minute per gate, not one per request.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from sync.server.db import Database
from sync.server.schema import gate_contacts


class GateContacts:
    def __init__(self, db: Database, *, min_interval_s: float = 60.0, clock=time.monotonic):
        self.db = db
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._written: dict[int, float] = {}
        self._lock = threading.Lock()

    def seen(self, gate_id: int) -> None:
        now = self.clock()
        with self._lock:
            last = self._written.get(gate_id)
            if last is not None and now - last < self.min_interval_s:
                return
            self._written[gate_id] = now
        try:
            with self.db.write() as conn:
                stamp = datetime.now(timezone.utc)
                upsert = self.db.insert(gate_contacts).values(gate_id=gate_id, last_seen_at=stamp)
                conn.execute(upsert.on_conflict_do_update(index_elements=["gate_id"], set_={"last_seen_at": stamp}))
        except SQLAlchemyError:
            # A busy database must not fail the gate's request; try again next time.
            with self._lock:
                self._written.pop(gate_id, None)


def last_seen(conn, gate_id: int) -> datetime | None:
    value = conn.execute(select(gate_contacts.c.last_seen_at).where(gate_contacts.c.gate_id == gate_id)).scalar()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value
