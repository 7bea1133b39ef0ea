"""When each gate last reached the server, for the gate board.

An idle gate uploads nothing but still reads the registry feed every sync
interval, so "last upload" alone would call it offline at night. Every
authenticated gate request is noted by `notify.ContactLog.saw` (in memory)
and flushed to `gate_contact` every few seconds by the notify worker, which
also uses it for the gate-offline notice: one record of contact, two readers.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from sync.server.schema import gate_contact


def last_seen(conn, gate_id: int) -> datetime | None:
    ns = conn.execute(select(gate_contact.c.last_contact_ns).where(gate_contact.c.gate_id == gate_id)).scalar()
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, timezone.utc)
