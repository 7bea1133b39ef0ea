"""Gate and staff credentials: random bearer tokens, stored only as hashes.

A token is 32 random bytes (urlsafe base64, 43 characters), shown once at
enrolment. The database keeps its SHA-256: a slow password hash buys nothing
for a 256-bit random secret, and a fast one keeps every request cheap.
Revoking sets `revoked_at`; the row (and the gate's data) stay.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

from sync.server.db import Database
from sync.server.schema import gates, staff

TOKEN_BYTES = 32


class EnrolmentError(ValueError):
    """A gate or staff member cannot be added or revoked as asked."""


@dataclass(frozen=True)
class Gate:
    id: int
    site_id: str
    name: str


@dataclass(frozen=True)
class Staff:
    id: int
    name: str


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def add_gate(db: Database, site_id: str, name: str) -> tuple[Gate, str]:
    """Enrol a gate; returns it and its token (the only time the token exists)."""
    token = new_token()
    with db.write() as conn:
        clash = conn.execute(
            select(gates.c.id).where(
                gates.c.site_id == site_id, gates.c.name == name, gates.c.revoked_at.is_(None)
            )
        ).first()
        if clash:
            raise EnrolmentError(
                f"site {site_id!r} already has an active gate named {name!r} (id {clash.id}); "
                "revoke it first or choose another name"
            )
        gate_id = conn.execute(
            gates.insert().values(site_id=site_id, name=name, token_hash=hash_token(token), created_at=_now())
        ).inserted_primary_key[0]
    return Gate(gate_id, site_id, name), token


def revoke_gate(db: Database, site_id: str, name: str) -> Gate:
    with db.write() as conn:
        row = conn.execute(
            select(gates).where(gates.c.site_id == site_id, gates.c.name == name, gates.c.revoked_at.is_(None))
        ).first()
        if row is None:
            raise EnrolmentError(f"site {site_id!r} has no active gate named {name!r}")
        conn.execute(gates.update().where(gates.c.id == row.id).values(revoked_at=_now()))
    return Gate(row.id, row.site_id, row.name)


def list_gates(db: Database, site_id: str | None = None) -> list[dict]:
    query = select(gates.c.id, gates.c.site_id, gates.c.name, gates.c.created_at, gates.c.revoked_at)
    if site_id:
        query = query.where(gates.c.site_id == site_id)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(gates.c.id))]


def gate_for_token(db: Database, token: str) -> Gate | None:
    """The active gate holding this token, or None (unknown or revoked)."""
    with db.read() as conn:
        row = conn.execute(
            select(gates.c.id, gates.c.site_id, gates.c.name).where(
                gates.c.token_hash == hash_token(token), gates.c.revoked_at.is_(None)
            )
        ).first()
    return Gate(row.id, row.site_id, row.name) if row else None


def add_staff(db: Database, name: str) -> tuple[Staff, str]:
    token = new_token()
    with db.write() as conn:
        staff_id = conn.execute(
            staff.insert().values(name=name, token_hash=hash_token(token), created_at=_now())
        ).inserted_primary_key[0]
    return Staff(staff_id, name), token


def revoke_staff(db: Database, name: str) -> int:
    with db.write() as conn:
        count = conn.execute(
            staff.update().where(staff.c.name == name, staff.c.revoked_at.is_(None)).values(revoked_at=_now())
        ).rowcount
    if not count:
        raise EnrolmentError(f"no active staff member named {name!r}")
    return count


def staff_for_token(db: Database, token: str) -> Staff | None:
    with db.read() as conn:
        row = conn.execute(
            select(staff.c.id, staff.c.name).where(
                staff.c.token_hash == hash_token(token), staff.c.revoked_at.is_(None)
            )
        ).first()
    return Staff(row.id, row.name) if row else None
