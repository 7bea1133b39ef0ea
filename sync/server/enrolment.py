"""Enrolling a gate with a one-time code, so its token never travels by hand.

Staff create a short-lived code for one gate of one site:
    POST /api/v1/staff/sites/{site}/enrolment-codes   {"gate": "east-1", "minutes": 30}   (staff token)
    or `checkpoint registry gate code --site site-1 east-1`
and type it into the kiosk's installer, which exchanges it once:
    POST /api/v1/enrol   {"gate": "east-1"}   Authorization: Bearer K7QF-M2XR-9PHD
for the gate's bearer token (`checkpoint enrol`, `install-kiosk.sh --enrol-code`).

- The code is the credential of the exchange: 12 characters from a 31-letter
  alphabet without look-alikes (about 59 bits), valid `minutes` (default 30,
  at most a day), usable once, stored only as its SHA-256. Every attempt goes
  through the server's global rate limit.
- A code names its gate: the kiosk must ask for that gate, so a code typed
  into the wrong Pi fails instead of enrolling it under another gate's name.
- Enrolling a gate that already has an active token revokes the old token in
  the same transaction (a replaced Pi, a re-installed SD card); the new gate
  row takes over the old one's journal streams (sync.server.ingest).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from sync import protocol as p
from sync.server import auth
from sync.server.db import Database
from sync.server.schema import enrol_codes, gates
from sync.server.web.core import site_guard

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
CODE_LENGTH = 12
DEFAULT_MINUTES = 30
MAX_MINUTES = 24 * 60
GATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SiteId = Annotated[str, Path(min_length=1, max_length=64, pattern=GATE_NAME)]


class EnrolmentRefused(ValueError):
    """The code is unknown, used, expired, or for another gate (one message for all: no oracle)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite drops the zone


def normalise(code: str) -> str:
    """As typed: any case, with or without dashes and spaces."""
    return "".join(ch for ch in code.upper() if ch not in "- ")


def _hash(code: str) -> str:
    return auth.hash_token(normalise(code))


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def create_code(db: Database, site_id: str, gate_name: str, *, by: str,
                minutes: int = DEFAULT_MINUTES) -> tuple[str, datetime]:
    """A one-time code for enrolling `gate_name` at `site_id`; returns it and its expiry."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise ValueError(f"minutes = {minutes}: must be 1 to {MAX_MINUTES}")
    code = new_code()
    now = _now()
    expires = now + timedelta(minutes=minutes)
    with db.write() as conn:
        conn.execute(enrol_codes.insert().values(
            site_id=site_id, gate_name=gate_name, code_hash=_hash(code), created_by=by,
            created_at=now, expires_at=expires))
    return code, expires


def redeem(db: Database, code: str, gate_name: str) -> tuple[auth.Gate, str]:
    """Exchange a code for the gate's new token (used up even if the exchange fails later)."""
    now = _now()
    token = auth.new_token()
    with db.write() as conn:
        row = conn.execute(select(enrol_codes).where(enrol_codes.c.code_hash == _hash(code))).first()
        if row is None or row.used_at is not None or _aware(row.expires_at) <= now or row.gate_name != gate_name:
            raise EnrolmentRefused("unknown, used or expired enrolment code, or a code for another gate")
        taken = conn.execute(enrol_codes.update().where(
            enrol_codes.c.id == row.id, enrol_codes.c.used_at.is_(None)).values(used_at=now)).rowcount
        if taken != 1:  # a concurrent exchange of the same code won
            raise EnrolmentRefused("unknown, used or expired enrolment code, or a code for another gate")
        conn.execute(gates.update().where(
            gates.c.site_id == row.site_id, gates.c.name == gate_name, gates.c.revoked_at.is_(None)
        ).values(revoked_at=now))
        gate_id = conn.execute(gates.insert().values(
            site_id=row.site_id, name=gate_name, token_hash=auth.hash_token(token), created_at=now,
        )).inserted_primary_key[0]
    auth.forget_gate(db, row.site_id, gate_name)  # the old token is refused at once here (issue 14 cache)
    return auth.Gate(gate_id, row.site_id, gate_name), token


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: str = Field(min_length=1, max_length=64, pattern=GATE_NAME)
    minutes: int = Field(DEFAULT_MINUTES, ge=1, le=MAX_MINUTES)


class CodeOut(BaseModel):
    code: str
    site: str
    gate: str
    expires_at: datetime


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: str = Field(min_length=1, max_length=64, pattern=GATE_NAME)


class EnrolOut(BaseModel):
    site: str
    gate: str
    token: str
    server_time: datetime


def enrolment_router(db: Database, limiter) -> APIRouter:
    """The two routes; included by sync.server.app.create_app."""
    router = APIRouter(tags=["enrolment"])
    bearer = HTTPBearer(auto_error=False)

    def refuse(status: int, error: str, detail: str, headers: dict | None = None):
        raise HTTPException(status, {"error": error, "detail": detail}, headers=headers)

    def credential(creds: HTTPAuthorizationCredentials | None, what: str) -> str:
        wait = limiter.take_global()
        if wait:
            refuse(429, "rate_limited", "the server is busy", {"Retry-After": str(wait)})
        if creds is None:
            refuse(401, "unauthorized", f"{what} is required", {"WWW-Authenticate": "Bearer"})
        return creds.credentials

    @router.post(f"{p.API_PREFIX}/staff/sites/{{site_id}}/enrolment-codes", response_model=CodeOut)
    def staff_enrolment_code(site_id: SiteId, body: CodeIn,
                             creds: HTTPAuthorizationCredentials | None = Depends(bearer)):
        """A one-time code the gate's installer exchanges for its token (staff token)."""
        member = auth.staff_for_token(db, credential(creds, "a staff bearer token"))
        if member is None:
            refuse(401, "unauthorized", "unknown or revoked staff token", {"WWW-Authenticate": "Bearer"})
        # Enrolling a gate hands out a credential for that site: the same people who enrol gates by hand.
        site_guard(member, site_id, change=True, roles=("admin", "worker"))
        code, expires = create_code(db, site_id, body.gate, by=member.name, minutes=body.minutes)
        return {"code": code, "site": site_id, "gate": body.gate, "expires_at": expires}

    @router.post(f"{p.API_PREFIX}/enrol", response_model=EnrolOut,
                 responses={401: {"model": p.ErrorReply}, 429: {"model": p.ErrorReply}})
    def enrol(body: EnrolIn, creds: HTTPAuthorizationCredentials | None = Depends(bearer)):
        """Exchange a one-time enrolment code (as the bearer token) for the gate's token."""
        code = credential(creds, "the one-time enrolment code as a bearer token")
        try:
            gate, token = redeem(db, code, body.gate)
        except EnrolmentRefused as exc:
            refuse(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
        return {"site": gate.site_id, "gate": gate.name, "token": token, "server_time": p.utcnow()}

    return router
