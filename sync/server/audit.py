"""The audit log: who changed what on the registry, when, from what to what.

Every change made from a staff page, the staff API or the CLI calls
`record(conn, ...)` inside the transaction that makes the change, so a change
and its audit row are committed (or rolled back) together. The actor is a
person's name: the logged-in staff member, the staff token's owner, or the
CLI's `--by NAME`.

`before` and `after` are stored as JSON (None for "did not exist" / "gone").
Secrets never go in: callers pass what a reviewer needs (role, sites), not
password hashes or tokens.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from sync.server.db import Database
from sync.server.schema import audit


def _json(value: dict | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def record(conn, *, actor: str, action: str, site_id: str | None, entity: str, entity_id: str,
           before: dict | None, after: dict | None) -> int:
    """Write one audit row in the caller's transaction; returns its id.

    `action` is a dotted verb such as "person.upsert" or "staff.add".
    """
    if not actor:
        raise ValueError("an audit record needs the name of the person who made the change")
    return conn.execute(audit.insert().values(
        at=datetime.now(timezone.utc), actor=actor[:64], action=action[:64], site_id=site_id,
        entity=entity[:32], entity_id=str(entity_id)[:128], before=_json(before), after=_json(after),
    )).inserted_primary_key[0]


def entries(db: Database, *, site_ids: list[str] | None = None, entity: str | None = None,
            entity_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first. `site_ids` None means every site (a global reader)."""
    query = select(audit)
    if site_ids is not None:
        query = query.where(audit.c.site_id.in_(site_ids))
    if entity:
        query = query.where(audit.c.entity == entity)
    if entity_id:
        query = query.where(audit.c.entity_id == entity_id)
    with db.read() as conn:
        rows = conn.execute(query.order_by(audit.c.id.desc()).limit(limit)).all()
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["before"] = json.loads(item["before"]) if item["before"] else None
        item["after"] = json.loads(item["after"]) if item["after"] else None
        out.append(item)
    return out
