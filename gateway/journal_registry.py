"""The journal's copy of the registry (people, passes revoked, visitor cases,
keys, policies), kept by the sync client's feed; a mixin of `gateway.journal.Journal`."""

from __future__ import annotations

import json
from datetime import datetime


class RegistryCopy:
    """Registry-copy methods of `Journal` (its connection, meta and clock live there)."""

    def apply_registry_page(self, changes: list[dict], cursor: str, *, replace: bool = False) -> None:
        """Apply one page of the registry feed and its cursor atomically.

        `changes` are dicts with entity, entity_id, op ("upsert"|"delete"),
        payload and change_seq. Redelivered or stale changes are ignored.
        `replace` clears the copy first (the first page of a snapshot).
        """
        with self._write() as conn:
            if replace:
                conn.execute("DELETE FROM registry")
            for change in changes:
                key = (change["entity"], str(change["entity_id"]))
                current = conn.execute(
                    "SELECT change_seq FROM registry WHERE entity = ? AND entity_id = ?", key
                ).fetchone()
                if current and current[0] is not None and current[0] >= change["change_seq"]:
                    continue
                if change.get("op") == "delete":
                    conn.execute("DELETE FROM registry WHERE entity = ? AND entity_id = ?", key)
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO registry (entity, entity_id, payload, change_seq) VALUES (?, ?, ?, ?)",
                    (*key, json.dumps(change.get("payload") or {}, ensure_ascii=False), change["change_seq"]),
                )
            self._set_meta(conn, "registry_cursor", cursor)
            self._set_meta(conn, "registry_synced_wall", self.clock.read().wall.isoformat())

    def touch_registry(self) -> None:
        """The registry answered 'nothing new': our copy is fresh as of now."""
        self.set_meta("registry_synced_wall", self.clock.read().wall.isoformat())

    def registry_get(self, entity: str, entity_id: str) -> dict | None:
        rows = self._select(
            "SELECT payload FROM registry WHERE entity = ? AND entity_id = ?", [entity, str(entity_id)]
        )
        return json.loads(rows[0]["payload"]) if rows else None

    def registry_all(self, entity: str) -> dict[str, dict]:
        rows = self._select("SELECT entity_id, payload FROM registry WHERE entity = ?", [entity])
        return {r["entity_id"]: json.loads(r["payload"]) for r in rows}

    def registry_cursor(self) -> str | None:
        return self.get_meta("registry_cursor")

    def registry_synced_at(self) -> datetime | None:
        value = self.get_meta("registry_synced_wall")
        return datetime.fromisoformat(value) if value else None
