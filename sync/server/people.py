"""Residents and households: the staff's record, and what the gates get of it.

A person lives at building-unit-room (their household) and has a kind:
resident, tenant, staff or volunteer. A new renter is a tenant with a
`landlord_id` (the landlord's person id; the renter's household is the
landlord's room) and a `moved_in` date. Moving out keeps the row with status
`moved_out`, so the gates refuse the person's passes.

Every change is `prepare()`d (validated, merged with the stored row, keyed)
and then `write()`n, which in the caller's transaction
- updates the `people` rows,
- appends `person` changes to the registry feed (what the kiosks download;
  the payload keeps the fields gateway/registry_copy.py reads, plus `kind`),
- writes audit records naming the staff member ("person.upsert", with `via`
  saying which page, import or command, and the reason where one is needed).
`save()` does both for one person; an import prepares thousands and writes
them at once. A change that changes nothing writes nothing: re-importing a
ledger is a no-op.

Returnees: the home observation runs from the arrival date through
arrival + 14 days (`observation_end()`); changing that end date later needs
a reason, which goes into the audit record.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from sqlalchemy import func, select

from sync.server import registry
from sync.server.db import Database
from sync.server.schema import people

KINDS = ("resident", "tenant", "staff", "volunteer")
# The pass kind printed for each person kind (gateway.passes.KIND_CODES).
PASS_KIND = {"resident": "resident", "tenant": "resident", "staff": "staff", "volunteer": "volunteer"}
STATUSES = registry.PERSON_STATUSES
RISKS = ("green", "yellow", "red")
OBSERVATION_DAYS = 14
# Fields a staff member may set; everything else is derived.
FIELDS = ("name", "phone", "building", "unit", "room", "kind", "status", "landlord_id", "moved_in",
          "returnee", "arrival_date", "origin", "contact", "observation_until", "risk")
LIMITS = {"name": 64, "phone": 32, "building": 32, "unit": 32, "room": 32, "origin": 64, "contact": 64,
          "landlord_id": 128}
# A mobile (11 digits), a landline (7-8, with area code 10-12) or an international number.
PHONE = re.compile(r"\+?[0-9]{7,15}")


class PersonError(registry.RegistryError):
    """A person record that cannot be saved; the message names the field."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def today_in_china() -> date:
    return datetime.now(timezone(timedelta(hours=8))).date()


def observation_end(arrival: date) -> date:
    """Last day of home observation for someone who arrived on `arrival`:
    the arrival day, then 14 full days ("到京后…观察14天")."""
    return arrival + timedelta(days=OBSERVATION_DAYS)


def clean_text(value: Any) -> str:
    """Trimmed text with full-width digits and letters made ASCII (NFKC), as
    typed into Excel by hand: "３号楼 " -> "3号楼"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(unicodedata.normalize("NFKC", str(value)).split())


def natural_key(building: str, unit: str, room: str, name: str) -> str:
    """What identifies a person in a ledger: their address and name.
    Phones are shared within households, and ledgers have no id column."""
    return "|".join(clean_text(v).lower() for v in (building, unit, room, name))


def new_person_id(site_id: str, key: str) -> str:
    """A short ASCII id derived from the natural key (passes carry it, within
    a 37-character budget shared with the pass id and site id)."""
    return "p" + hashlib.sha256(f"{site_id}|{key}".encode()).hexdigest()[:11]


def address(row) -> str:
    """building-unit-room, e.g. 3-2-101, as the gates and the sheets show it."""
    parts = [str(v) for v in (_get(row, "building"), _get(row, "unit"), _get(row, "room")) if v]
    return "-".join(parts)


def split_unit(text: str) -> tuple[str, str, str]:
    """A free-text unit as the API and CLI take it ("3-2-101") as (building, unit, room);
    `address()` joins them back to the same text."""
    text = clean_text(text)
    if not text:
        return "", "", ""
    parts = text.split("-")
    if len(parts) == 1:
        return "", "", text
    if len(parts) == 2:
        return parts[0], parts[1], ""
    return parts[0], parts[1], "-".join(parts[2:])


def _get(row, key):
    return row[key] if isinstance(row, dict) else getattr(row, key)


def gate_payload(row: dict) -> dict:
    """The `person` entity the kiosks download (compatible with registry_copy)."""
    until = row.get("observation_until")
    return {
        "name": row["name"], "unit": address(row), "site": row["site_id"],
        "status": row["status"],
        "observation_until": until.isoformat() if until else None,
        "risk": row.get("risk"), "returnee": bool(row.get("returnee")), "kind": row["kind"],
    }


def validate(fields: dict) -> dict:
    """Normalise and check person fields; raises PersonError naming the field."""
    out = dict(fields)
    for key in ("name", "phone", "building", "unit", "room", "origin", "contact", "landlord_id"):
        if key in out:
            out[key] = clean_text(out[key]) or ("" if key in ("phone", "building", "unit", "room") else None)
            if out[key] and len(out[key]) > LIMITS[key]:
                raise PersonError(f"{key} = {out[key]!r}: at most {LIMITS[key]} characters")
    if "name" in out and not out["name"]:
        raise PersonError("name: required")
    if out.get("phone") and not PHONE.fullmatch(re.sub(r"[\s-]", "", out["phone"])):
        raise PersonError(f"phone = {out['phone']!r}: expected digits, e.g. 13800138000")
    if "kind" in out and out["kind"] not in KINDS:
        raise PersonError(f"kind = {out['kind']!r}: expected one of {', '.join(KINDS)}")
    if "status" in out and out["status"] not in STATUSES:
        raise PersonError(f"status = {out['status']!r}: expected one of {', '.join(STATUSES)}")
    if out.get("risk") not in (None, *RISKS):
        raise PersonError(f"risk = {out['risk']!r}: expected green, yellow, red or none")
    for key in ("moved_in", "arrival_date", "observation_until"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].date()
        if out.get(key) is not None and not isinstance(out[key], date):
            raise PersonError(f"{key} = {out[key]!r}: expected a date")
    if "returnee" in out:
        out["returnee"] = bool(out["returnee"])
    return out


def _row_dict(row) -> dict:
    return dict(row._mapping) if row is not None else None


def get(conn, site_id: str, person_id: str) -> dict | None:
    return _row_dict(conn.execute(select(people).where(
        people.c.site_id == site_id, people.c.person_id == person_id)).first())


def find_by_key(conn, site_id: str, key: str) -> dict | None:
    return _row_dict(conn.execute(select(people).where(
        people.c.site_id == site_id, people.c.natural_key == key)).first())


def _audit_value(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v)
            for k, v in row.items() if k in FIELDS or k == "person_id"}


def _audit(conn, *, actor, action, site_id, entity, entity_id, before, after) -> None:
    from sync.server import audit

    audit.record(conn, actor=actor, action=action, site_id=site_id, entity=entity, entity_id=entity_id,
                 before=before, after=after)


def _audit_many(conn, records: list[dict]) -> None:
    """The rows `audit.record` writes, for an import's thousands of people in one
    INSERT (audit.record builds a statement per call: half an import's time)."""
    import json

    from sync.server.schema import audit as audit_table

    def encode(value):
        return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)

    at = _now()
    conn.execute(audit_table.insert(), [
        {"at": at, "actor": r["actor"][:64], "action": r["action"][:64], "site_id": r["site_id"],
         "entity": r["entity"][:32], "entity_id": str(r["entity_id"])[:128], "before": encode(r["before"]),
         "after": encode(r["after"])} for r in records])


@dataclass(frozen=True)
class Saved:
    person_id: str
    created: bool
    changed: bool
    row: dict


_LOOK_UP = object()


def prepare(conn, site_id: str, fields: dict, *, person_id: str | None = None, before: Any = _LOOK_UP,
            find_key: Callable[[str], dict | None] | None = None) -> tuple[dict | None, dict | None]:
    """Work out one person's new row: (before, row), row None when nothing changes.

    Without `person_id` the person is found by natural key (building, unit,
    room, name) or is new. Bulk callers pass `before` and `find_key` from
    what they already read, so nothing is read per row.
    """
    fields = validate(fields)
    find_key = find_key or (lambda key: find_by_key(conn, site_id, key))
    if before is _LOOK_UP:
        before = get(conn, site_id, person_id) if person_id else None
        if before is None and person_id is None:
            before = find_key(natural_key(fields.get("building", ""), fields.get("unit", ""),
                                          fields.get("room", ""), fields.get("name", "")))
    if before is None:
        if not fields.get("name"):
            raise PersonError("name: required")
        row = {"site_id": site_id, "phone": "", "building": "", "unit": "", "room": "", "kind": "resident",
               "status": "active", "landlord_id": None, "moved_in": None, "returnee": False,
               "arrival_date": None, "origin": None, "contact": None, "observation_until": None, "risk": None}
    else:
        row = dict(before)
    row.update({k: v for k, v in fields.items() if k in FIELDS})
    if row.get("returnee") and row.get("arrival_date") and row.get("observation_until") is None \
            and "observation_until" not in fields:
        row["observation_until"] = observation_end(row["arrival_date"])
    if row.get("landlord_id"):
        landlord = get(conn, site_id, row["landlord_id"])
        if landlord is None:
            raise PersonError(f"landlord_id = {row['landlord_id']!r}: no such person at site {site_id}")
        if before is None or not (row["building"] or row["unit"] or row["room"]):
            # A new renter lives in the landlord's household.
            for part in ("building", "unit", "room"):
                row[part] = row[part] or landlord[part]
    row["natural_key"] = natural_key(row["building"], row["unit"], row["room"], row["name"])
    if before is not None and before.get("natural_key", "").startswith("id:") \
            and all(before.get(k) == row.get(k) for k in FIELDS):
        return before, None
    if before is not None and all(before.get(k) == row.get(k) for k in (*FIELDS, "natural_key")):
        return before, None
    clash = find_key(row["natural_key"])
    if clash is not None and (before is None or clash["person_id"] != before["person_id"]):
        if person_id is None:
            raise PersonError(f"{row['name']} at {address(row) or 'no address'} is already person {clash['person_id']}")
        # The API and CLI name their own ids, and may have two people with
        # one name and no address: such a person is keyed by id instead.
        row["natural_key"] = f"id:{person_id}"
    if before is None:
        row["person_id"] = person_id or new_person_id(site_id, row["natural_key"])
    else:
        row["person_id"] = before["person_id"]
    return before, row


def write(db: Database, conn, site_id: str, changes: list[tuple[dict | None, dict]], *, by: str, action: str,
          reason: str | None = None) -> None:
    """Write prepared rows: the people table, the gate feed and the audit, in the caller's transaction."""
    from sqlalchemy import bindparam

    now = _now()
    for _, row in changes:
        row["updated_at"], row["updated_by"] = now, by
    new = [row for before, row in changes if before is None]
    old = [row for before, row in changes if before is not None]
    if new:
        conn.execute(people.insert(), new)
    if old:
        columns = [k for k in old[0] if k not in ("site_id", "person_id")]
        statement = people.update().where(people.c.site_id == bindparam("b_site"),
                                          people.c.person_id == bindparam("b_person")) \
            .values({k: bindparam(f"v_{k}") for k in columns})
        conn.execute(statement, [{"b_site": site_id, "b_person": row["person_id"],
                                  **{f"v_{k}": row[k] for k in columns}} for row in old])
    registry.record_changes(db, conn, site_id, "person",
                            [(row["person_id"], "upsert", gate_payload(row)) for _, row in changes], by)
    records = []
    for before, row in changes:
        # "person.upsert", as registry.record_change audits a person (the daily
        # report reads returnees from it); `via` says which page, import or command.
        after = {**_audit_value(row), "via": action}
        if reason:
            after["reason"] = reason
        records.append(dict(actor=by, action="person.upsert", site_id=site_id, entity="person",
                            entity_id=row["person_id"], before=_audit_value(before), after=after))
    if len(records) == 1:
        _audit(conn, **records[0])
    else:
        _audit_many(conn, records)


def save(db: Database, conn, site_id: str, fields: dict, *, by: str, person_id: str | None = None,
         action: str = "person.save", reason: str | None = None) -> Saved:
    """Create or update one person inside an open write transaction; writes nothing when nothing changed."""
    before, row = prepare(conn, site_id, fields, person_id=person_id)
    if row is None:
        return Saved(before["person_id"], False, False, before)
    write(db, conn, site_id, [(before, row)], by=by, action=action, reason=reason)
    return Saved(row["person_id"], before is None, True, row)


def save_one(db: Database, site_id: str, fields: dict, *, by: str, person_id: str | None = None,
             action: str = "person.save", reason: str | None = None) -> Saved:
    with db.write() as conn:
        return save(db, conn, site_id, fields, by=by, person_id=person_id, action=action, reason=reason)


def register_returnee(db: Database, site_id: str, person_id: str, *, arrival_date: date, origin: str,
                      contact: str = "", risk: str | None = None, by: str) -> Saved:
    """Mark a resident as returned on `arrival_date`: 14 days of home observation from then."""
    fields = {"returnee": True, "arrival_date": arrival_date, "origin": origin, "contact": contact,
              "observation_until": observation_end(arrival_date)}
    if risk:
        fields["risk"] = risk
    with db.write() as conn:
        if get(conn, site_id, person_id) is None:
            raise PersonError(f"site {site_id!r} has no person {person_id!r}; add them first")
        return save(db, conn, site_id, fields, by=by, person_id=person_id, action="person.returnee")


def set_observation_end(db: Database, site_id: str, person_id: str, until: date | None, *, reason: str,
                        by: str) -> Saved:
    """Change (or end, with None) a home observation: only with a reason, which is audited."""
    reason = clean_text(reason)
    if not reason:
        raise PersonError("reason: changing the end of a home observation needs a reason")
    with db.write() as conn:
        if get(conn, site_id, person_id) is None:
            raise PersonError(f"site {site_id!r} has no person {person_id!r}")
        return save(db, conn, site_id, {"observation_until": until}, by=by, person_id=person_id,
                    action="person.observation", reason=reason)


def move_out(db: Database, site_id: str, person_id: str, *, by: str) -> Saved:
    with db.write() as conn:
        if get(conn, site_id, person_id) is None:
            raise PersonError(f"site {site_id!r} has no person {person_id!r}")
        return save(db, conn, site_id, {"status": "moved_out"}, by=by, person_id=person_id,
                    action="person.move_out")


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    building: str = ""
    name: str = ""
    phone: str = ""
    kind: str = ""
    observation: str = ""  # "", "under" (observation not over today), "returnee"
    status: str = "active"  # "", "active", "moved_out"


def search(db: Database, site_id: str, filters: Filters = Filters(), *, today: date | None = None,
           limit: int = 200, offset: int = 0) -> tuple[list[dict], int]:
    """People matching the filters, ordered by address: (page, total)."""
    today = today or today_in_china()
    c = people.c
    where = [c.site_id == site_id]
    if filters.building:
        where.append(c.building == clean_text(filters.building))
    if filters.name:
        where.append(c.name.contains(clean_text(filters.name), autoescape=True))
    if filters.phone:
        where.append(c.phone.contains(clean_text(filters.phone), autoescape=True))
    if filters.kind:
        where.append(c.kind == filters.kind)
    if filters.status:
        where.append(c.status == filters.status)
    if filters.observation == "under":
        where.append(c.observation_until >= today)
    elif filters.observation == "returnee":
        where.append(c.returnee.is_(True))
    with db.read() as conn:
        total = conn.execute(select(func.count()).select_from(people).where(*where)).scalar()
        rows = conn.execute(select(people).where(*where)
                            .order_by(c.building, c.unit, c.room, c.name).limit(limit).offset(offset)).all()
    return [_row_dict(r) for r in rows], total


def buildings(db: Database, site_id: str) -> list[str]:
    with db.read() as conn:
        rows = conn.execute(select(people.c.building).where(people.c.site_id == site_id)
                            .distinct().order_by(people.c.building)).all()
    return [r[0] for r in rows if r[0]]


def household(db: Database, site_id: str, person_id: str) -> list[dict]:
    """Everyone at the person's building-unit-room (renters included)."""
    with db.read() as conn:
        person = get(conn, site_id, person_id)
        if person is None:
            raise PersonError(f"site {site_id!r} has no person {person_id!r}")
        rows = conn.execute(select(people).where(
            people.c.site_id == site_id, people.c.building == person["building"],
            people.c.unit == person["unit"], people.c.room == person["room"],
        ).order_by(people.c.name)).all()
    return [_row_dict(r) for r in rows]


def get_person(db: Database, site_id: str, person_id: str) -> dict | None:
    with db.read() as conn:
        return get(conn, site_id, person_id)


def people_by_ids(db: Database, site_id: str, person_ids: Iterable[str]) -> list[dict]:
    ids = list(dict.fromkeys(person_ids))
    out = []
    with db.read() as conn:
        for start in range(0, len(ids), 500):
            out += [_row_dict(r) for r in conn.execute(select(people).where(
                people.c.site_id == site_id, people.c.person_id.in_(ids[start:start + 500])))]
    order = {pid: i for i, pid in enumerate(ids)}
    return sorted(out, key=lambda r: order[r["person_id"]])
