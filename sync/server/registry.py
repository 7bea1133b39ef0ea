"""The registry: an append-only change feed of what the gates need to know.

Staff functions (`add_person`, `revoke_pass`, `set_observation`, `add_key`,
`set_policy`, `add_visitor_case`, `remove`) each append one change to
`registry_changes` and update `registry_state` in the same transaction.
Kiosks read the feed with a `since` cursor (`feed_page`); once the log has
been compacted past a kiosk's cursor (`compact`), it gets `FeedExpired` (HTTP
410) and reads the current state in pages (`snapshot_page`) instead.

Entities and payloads are those the kiosk's decision core reads
(interfaces.md): person, revocation, key, policy, visitor_case. Site "*"
holds changes every site receives (e.g. a city-wide issuer key).

Ordering: a kiosk that has seen change N must never later miss a change < N.
Writers are therefore serialised (SQLite's write lock; on PostgreSQL a table
lock on registry_changes), so change_seq order is commit order.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select, text, tuple_

from sync.server import audit
from sync.protocol import registry_payload
from sync.server.db import Database
from sync.server.schema import alerts, meta, registry_changes, registry_state

GLOBAL_SITE = "*"
ENTITIES = ("person", "revocation", "key", "policy", "visitor_case")
PERSON_STATUSES = ("active", "moved_out")
RISKS = ("green", "yellow", "red", None)


class RegistryError(ValueError):
    """A staff change that cannot be made (unknown person, stale policy, bad key)."""


class FeedExpired(Exception):
    """The cursor is older than the retained change log: read a snapshot."""

    def __init__(self, horizon: int):
        super().__init__(f"the change log before {horizon} was compacted; read the snapshot")
        self.horizon = horizon


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _sites(site_id: str):
    return registry_changes.c.site_id.in_([site_id, GLOBAL_SITE])


def _change_dict(row) -> dict[str, Any]:
    return {
        "change_seq": row.change_seq,
        "entity": row.entity,
        "entity_id": row.entity_id,
        "op": row.op,
        "payload": json.loads(row.payload) if row.payload else None,
    }


# --- writing -------------------------------------------------------------------


def record_change(db: Database, conn, site_id: str, entity: str, entity_id: str, op: str,
                  payload: dict | None, by: str | None) -> int:
    """Append one change and update the current state; returns its change_seq."""
    if entity not in ENTITIES:
        raise RegistryError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
    if op == "upsert":
        try:  # the shape the kiosks read (sync.protocol), checked where it is written
            registry_payload(entity, payload)
        except ValidationError as exc:
            raise RegistryError(f"{entity} {entity_id}: {exc.errors()[0]['msg']}") from None
    if db.is_postgres:
        conn.execute(text("LOCK TABLE registry_changes IN SHARE ROW EXCLUSIVE MODE"))
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True) if payload is not None else None
    audit.record(conn, actor=by or "unknown", action=f"{entity}.{op}", site_id=site_id, entity=entity,
                 entity_id=entity_id, before=_current(conn, site_id, entity, entity_id), after=payload)
    seq = conn.execute(
        registry_changes.insert().values(
            site_id=site_id, entity=entity, entity_id=entity_id, op=op, payload=body,
            created_at=_now(), created_by=by,
        )
    ).inserted_primary_key[0]
    key = (registry_state.c.site_id == site_id, registry_state.c.entity == entity,
           registry_state.c.entity_id == entity_id)
    conn.execute(registry_state.delete().where(*key))
    if op == "upsert":
        conn.execute(registry_state.insert().values(
            site_id=site_id, entity=entity, entity_id=entity_id, payload=body, change_seq=seq))
    return seq


def record_changes(db: Database, conn, site_id: str, entity: str, items: list[tuple[str, str, dict | None]],
                   by: str | None) -> list[int]:
    """`record_change` for many (entity_id, op, payload) at once: one lock and
    prepared statements, for imports and bulk issuing; returns the change_seqs."""
    if entity not in ENTITIES:
        raise RegistryError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
    from sqlalchemy import bindparam

    if not items:
        return []
    if db.is_postgres:
        conn.execute(text("LOCK TABLE registry_changes IN SHARE ROW EXCLUSIVE MODE"))
    now = _now()
    bodies = [json.dumps(payload, ensure_ascii=False, sort_keys=True) if payload is not None else None
              for _, _, payload in items]
    # One multi-row INSERT ... RETURNING, in parameter order (SQLite >= 3.35, PostgreSQL).
    insert = registry_changes.insert().returning(registry_changes.c.change_seq, sort_by_parameter_order=True)
    seqs = list(conn.execute(insert, [
        {"site_id": site_id, "entity": entity, "entity_id": entity_id, "op": op, "payload": body,
         "created_at": now, "created_by": by} for (entity_id, op, _), body in zip(items, bodies)]).scalars())
    states = [{"site_id": site_id, "entity": entity, "entity_id": entity_id, "payload": body, "change_seq": seq}
              for (entity_id, op, _), body, seq in zip(items, bodies, seqs) if op == "upsert"]
    state = registry_state.c
    conn.execute(registry_state.delete().where(state.site_id == bindparam("b_site"), state.entity == bindparam("b_entity"),
                                               state.entity_id == bindparam("b_id")),
                 [{"b_site": site_id, "b_entity": entity, "b_id": entity_id} for entity_id, _, _ in items])
    if states:
        conn.execute(registry_state.insert(), states)
    return seqs


def _current(conn, site_id: str, entity: str, entity_id: str) -> dict | None:
    row = conn.execute(select(registry_state.c.payload).where(
        registry_state.c.site_id == site_id, registry_state.c.entity == entity,
        registry_state.c.entity_id == entity_id)).first()
    return json.loads(row.payload) if row else None


def upsert(db: Database, site_id: str, entity: str, entity_id: str, payload: dict, by: str | None = None) -> int:
    with db.write() as conn:
        return record_change(db, conn, site_id, entity, entity_id, "upsert", payload, by)


def remove(db: Database, site_id: str, entity: str, entity_id: str, by: str | None = None) -> int:
    with db.write() as conn:
        if _current(conn, site_id, entity, entity_id) is None:
            raise RegistryError(f"site {site_id!r} has no {entity} {entity_id!r}")
        return record_change(db, conn, site_id, entity, entity_id, "delete", None, by)


def add_person(db: Database, site_id: str, person_id: str, *, name: str, unit: str = "",
               status: str = "active", observation_until: date | None = None, risk: str | None = None,
               returnee: bool = False, by: str | None = None) -> dict:
    if status not in PERSON_STATUSES:
        raise RegistryError(f"status {status!r}: expected one of {PERSON_STATUSES}")
    if risk not in RISKS:
        raise RegistryError(f"risk {risk!r}: expected green, yellow, red or none")
    # Kept in the staff's `people` table too (sync.server.people), which writes the feed.
    from sync.server import people

    building, unit_, room = people.split_unit(unit)
    fields = {"name": name, "building": building, "unit": unit_, "room": room, "status": status,
              "observation_until": observation_until, "risk": risk, "returnee": bool(returnee)}
    saved = people.save_one(db, site_id, fields, by=by or "unknown", person_id=person_id, action="person.add")
    return people.gate_payload(saved.row)


def set_observation(db: Database, site_id: str, person_id: str, until: date | None, *,
                    risk: str | None = None, returnee: bool | None = None, by: str | None = None,
                    reason: str | None = None) -> dict:
    """Start (or end, with until=None) a person's home observation period.
    Changing an end date already set needs a `reason` (audited)."""
    if risk not in RISKS:
        raise RegistryError(f"risk {risk!r}: expected green, yellow, red or none")
    from sync.server import people

    fields: dict[str, Any] = {"observation_until": until}
    if risk is not None:
        fields["risk"] = risk
    if returnee is not None:
        fields["returnee"] = returnee
    with db.write() as conn:
        current = people.get(conn, site_id, person_id)
        if current is None:
            raise RegistryError(f"site {site_id!r} has no person {person_id!r}; add them first")
        if current["observation_until"] is not None and current["observation_until"] != until \
                and not (reason or "").strip():
            raise RegistryError(f"{person_id}'s observation already ends on {current['observation_until']}: "
                                "changing it needs a reason")
        saved = people.save(db, conn, site_id, fields, by=by or "unknown", person_id=person_id,
                            action="person.observation", reason=(reason or "").strip() or None)
    return people.gate_payload(saved.row)


def revoke_pass(db: Database, site_id: str, pass_id: str, reason: str, by: str | None = None) -> dict:
    payload = {"reason": reason, "revoked_at": _now().isoformat(timespec="seconds")}
    upsert(db, site_id, "revocation", pass_id, payload, by)
    return payload


def add_key(db: Database, site_id: str, public_pem: str, by: str | None = None) -> str:
    """Publish an issuer public key (PEM) to the site's gates; returns its kid."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gateway.passes import key_id

    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise RegistryError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RegistryError("issuer keys must be Ed25519 public keys")
    kid = key_id(key)
    upsert(db, site_id, "key", kid, {"public_pem": public_pem}, by)
    return kid


def set_policy(db: Database, site_id: str, document: dict, by: str | None = None) -> int:
    """Publish a new version of the site's policy document; versions only go up."""
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RegistryError("a policy document needs an integer \"version\" >= 1")
    with db.write() as conn:
        current = _current(conn, site_id, "policy", site_id)
        if current and current.get("version", 0) >= version:
            raise RegistryError(f"policy version {version} is not newer than the current {current['version']}")
        record_change(db, conn, site_id, "policy", site_id, "upsert", document, by)
    return version


def add_visitor_case(db: Database, site_id: str, case_id: str, *, name: str, phone: str, visiting: str,
                     valid_until: date, by: str | None = None) -> dict:
    payload = {"name": name, "phone": phone, "visiting": visiting,
               "valid_until": valid_until.isoformat(), "filed_by": by}
    upsert(db, site_id, "visitor_case", case_id, payload, by)
    return payload


def compact(db: Database, through_seq: int) -> int:
    """Drop changes up to `through_seq`; older cursors then get a snapshot."""
    with db.write() as conn:
        removed = conn.execute(registry_changes.delete().where(registry_changes.c.change_seq <= through_seq)).rowcount
        current = _horizon(conn)
        if through_seq > current:
            conn.execute(meta.delete().where(meta.c.key == "feed_horizon"))
            conn.execute(meta.insert().values(key="feed_horizon", value=str(through_seq)))
    return removed


# --- reading -------------------------------------------------------------------


def _horizon(conn) -> int:
    row = conn.execute(select(meta.c.value).where(meta.c.key == "feed_horizon")).first()
    return int(row[0]) if row else 0


def head(db: Database, site_id: str) -> int:
    """The newest change_seq this site's gates can see (0 when none)."""
    with db.read() as conn:
        value = conn.execute(select(func.max(registry_changes.c.change_seq)).where(_sites(site_id))).scalar()
        return max(value or 0, _horizon(conn))


def feed_page(db: Database, site_id: str, since: int, limit: int) -> tuple[list[dict], int, bool]:
    """Changes after `since`: (changes, next_cursor, up_to_date)."""
    with db.read() as conn:
        horizon = _horizon(conn)
        if since < horizon:
            raise FeedExpired(horizon)
        rows = conn.execute(
            select(registry_changes)
            .where(_sites(site_id), registry_changes.c.change_seq > since)
            .order_by(registry_changes.c.change_seq)
            .limit(limit + 1)
        ).all()
    more = len(rows) > limit
    changes = [_change_dict(r) for r in rows[:limit]]
    cursor = changes[-1]["change_seq"] if changes else since
    return changes, cursor, not more


def snapshot_page(db: Database, site_id: str, after: tuple[str, str, str] | None,
                  limit: int) -> tuple[list[dict], int, tuple[str, str, str] | None]:
    """One page of the site's current registry, keyed by (entity, entity_id, site).

    Returns (changes, cursor, next_after). Rows changed while the snapshot is
    read may come with a change_seq above `cursor`; the deltas read after it
    repeat them, which the kiosk ignores as stale.
    """
    state = registry_state
    with db.read() as conn:
        cursor = conn.execute(select(func.max(registry_changes.c.change_seq)).where(_sites(site_id))).scalar()
        cursor = max(cursor or 0, _horizon(conn))
        query = select(state).where(or_(state.c.site_id == site_id, state.c.site_id == GLOBAL_SITE))
        if after:
            query = query.where(tuple_(state.c.entity, state.c.entity_id, state.c.site_id) > tuple_(*after))
        rows = conn.execute(
            query.order_by(state.c.entity, state.c.entity_id, state.c.site_id).limit(limit + 1)
        ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    changes = [
        {"change_seq": r.change_seq, "entity": r.entity, "entity_id": r.entity_id, "op": "upsert",
         "payload": json.loads(r.payload)}
        for r in rows
    ]
    next_after = (rows[-1].entity, rows[-1].entity_id, rows[-1].site_id) if more else None
    return changes, cursor, next_after


# --- fever alerts ----------------------------------------------------------------


def open_alerts(db: Database, site_id: str, limit: int = 200) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(
            select(alerts).where(alerts.c.site_id == site_id, alerts.c.acknowledged_at.is_(None))
            .order_by(alerts.c.id).limit(limit)
        ).all()
    return [_alert_dict(r) for r in rows]


def acknowledge_alert(db: Database, alert_id: int, by: str, *, site_id: str | None = None) -> dict:
    """Acknowledge an open alert (audited). With `site_id`, an alert of
    another site is "no alert", so a scoped caller cannot reach it."""
    with db.write() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None or (site_id is not None and row.site_id != site_id):
            raise RegistryError(f"no alert {alert_id}")
        if row.acknowledged_at is None:
            conn.execute(alerts.update().where(alerts.c.id == alert_id)
                         .values(acknowledged_at=_now(), acknowledged_by=by))
            audit.record(conn, actor=by, action="alert.ack", site_id=row.site_id, entity="alert",
                         entity_id=str(alert_id), before={"acknowledged_at": None},
                         after={"acknowledged_by": by})
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()
    return _alert_dict(row)


def _alert_dict(row) -> dict:
    # A reading stored before input was checked (NaN, Infinity; body_c, max_c,
    # clinical_c) is shown as unknown: never a 500 for the whole list.
    data = {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in row._mapping.items()}
    data["event_time"] = datetime.fromtimestamp(data.pop("event_time_ns") / 1e9, timezone.utc).isoformat()
    for key in ("received_at", "acknowledged_at", "closed_at"):
        value = data.get(key)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            data[key] = value.isoformat()
    return data


def alert_site(db: Database, alert_id: int) -> str | None:
    """The site of an alert, or None if there is no such alert."""
    with db.read() as conn:
        return conn.execute(select(alerts.c.site_id).where(alerts.c.id == alert_id)).scalar()
