"""Gate and staff credentials: random bearer tokens, stored only as hashes.

A token is 32 random bytes (urlsafe base64, 43 characters), shown once at
enrolment. The database keeps its SHA-256: a slow password hash buys nothing
for a 256-bit random secret, and a fast one keeps every request cheap.
Revoking sets `revoked_at`; the row (and the gate's data) stay.

Staff accounts have a role (ROLES) and a scope: sites, or street offices for
a street officer. `Staff.can_read(site)` / `Staff.can_change(site)` are the
one place those rules live; the API and the pages both ask them. Page
passwords are argon2 hashes (argon2-cffi); sessions are in sync.server.sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

from sync.server import audit, hotpath
from sync.server.db import Database
from sync.server.schema import gates, staff, staff_accounts, staff_scopes, staff_sessions

TOKEN_BYTES = 32


class EnrolmentError(ValueError):
    """A gate or staff member cannot be added or revoked as asked."""


@dataclass(frozen=True)
class Gate:
    id: int
    site_id: str
    name: str


ROLES = ("admin", "worker", "guard_supervisor", "inspector", "street_officer")
# Roles that may change something at the sites they can read.
CHANGING_ROLES = ("admin", "worker", "guard_supervisor")
GLOBAL_SCOPE = "*"


@dataclass(frozen=True)
class Staff:
    """A staff member as a request sees them: who, in what role, where.

    `sites` holds the site ids the account may read, already resolved (a
    street officer's street offices become their sites); "*" in it means
    every site, including the city-wide entries stored under site "*".
    """

    id: int
    name: str
    role: str = "admin"
    sites: frozenset[str] = frozenset({GLOBAL_SCOPE})
    offices: frozenset[str] = frozenset()

    @property
    def is_global(self) -> bool:
        return GLOBAL_SCOPE in self.sites

    def can_read(self, site_id: str) -> bool:
        return self.is_global or (site_id != GLOBAL_SCOPE and site_id in self.sites)

    def can_read_office(self, street_office: str) -> bool:
        """A street office's summary: its own officers and global accounts."""
        return self.is_global or street_office in self.offices

    def can_change(self, site_id: str) -> bool:
        """Changes at site "*" (pushed to every gate) need a global administrator."""
        if self.role not in CHANGING_ROLES or not self.can_read(site_id):
            return False
        return site_id != GLOBAL_SCOPE or self.role == "admin"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def add_gate(db: Database, site_id: str, name: str, *, by: str = "system") -> tuple[Gate, str]:
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
        audit.record(conn, actor=by, action="gate.add", site_id=site_id, entity="gate", entity_id=name,
                     before=None, after={"id": gate_id})
    return Gate(gate_id, site_id, name), token


def revoke_gate(db: Database, site_id: str, name: str, *, by: str = "system") -> Gate:
    with db.write() as conn:
        row = conn.execute(
            select(gates).where(gates.c.site_id == site_id, gates.c.name == name, gates.c.revoked_at.is_(None))
        ).first()
        if row is None:
            raise EnrolmentError(f"site {site_id!r} has no active gate named {name!r}")
        conn.execute(gates.update().where(gates.c.id == row.id).values(revoked_at=_now()))
        audit.record(conn, actor=by, action="gate.revoke", site_id=site_id, entity="gate", entity_id=name,
                     before={"id": row.id, "active": True}, after={"id": row.id, "active": False})
    # After the commit, so no request in between can cache the row again:
    # this process refuses the token at once (others within REVOCATION_POLL_S).
    forget_gate(db, row.site_id, row.name)
    return Gate(row.id, row.site_id, row.name)


def list_gates(db: Database, site_id: str | None = None) -> list[dict]:
    query = select(gates.c.id, gates.c.site_id, gates.c.name, gates.c.created_at, gates.c.revoked_at)
    if site_id:
        query = query.where(gates.c.site_id == site_id)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(gates.c.id))]


# Gate-token cache (issue 14): a gate uploads every few seconds, and reading
# its row each time cost a pool checkout and four database round trips per
# request. An active gate found in the database is remembered, keyed by the
# token's SHA-256 (never the token). Every REVOCATION_POLL_S seconds the
# next request first reads which gates are revoked (one small query per
# process, not one per request) and drops them from the cache: a revocation
# made by another process (the CLI, another replica) is refused within
# REVOCATION_POLL_S, one made through this process (revoke_gate) at once.
# Unknown or revoked tokens are never cached, so every refusal reads the
# database. Entries are re-read after CACHE_MAX_AGE_S and the size is bounded.
REVOCATION_POLL_S = 5.0
CACHE_MAX_AGE_S = 600.0
_CACHE_MAX = 100_000
_gate_cache: dict[str, tuple[Database, Gate, float]] = {}
_last_poll: "weakref.WeakKeyDictionary[Database, float]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _forget_token_hash(token_hash: str) -> None:
    with _cache_lock:
        _gate_cache.pop(token_hash, None)


def forget_gate(db: Database, site_id: str, name: str) -> None:
    """Drop a gate's cached tokens at once: call it after committing any
    revocation made through this process (revoke_gate, re-enrolment). Every
    Database object of this process forgets it (a CLI command may have
    opened its own)."""
    with _cache_lock:
        for token_hash, (_db, gate, _at) in list(_gate_cache.items()):
            if gate.site_id == site_id and gate.name == name:
                del _gate_cache[token_hash]


def _poll_revocations(db: Database, now: float) -> None:
    with _cache_lock:
        last = _last_poll.get(db)
        if last is not None and now - last < REVOCATION_POLL_S:
            return
        _last_poll[db] = now  # one thread polls; the others go on meanwhile
    try:
        with db.read() as conn:
            revoked = set(conn.execute(select(gates.c.token_hash).where(gates.c.revoked_at.is_not(None))).scalars())
    except Exception:
        with _cache_lock:  # poll again on the next request
            _last_poll.pop(db, None)
        raise
    with _cache_lock:
        for token_hash in revoked & _gate_cache.keys():
            del _gate_cache[token_hash]


def cached_gate(db: Database, token: str) -> Gate | None:
    """The gate from the cache without touching the database, or None (not
    cached, or a revocation poll is due: then ask gate_for_token)."""
    if hotpath.BASELINE or REVOCATION_POLL_S <= 0:
        return None
    now = time.monotonic()
    last = _last_poll.get(db)
    if last is None or now - last >= REVOCATION_POLL_S:
        return None
    hit = _gate_cache.get(hash_token(token))
    return hit[1] if hit is not None and hit[0] is db and now - hit[2] < CACHE_MAX_AGE_S else None


def gate_for_token(db: Database, token: str) -> Gate | None:
    """The active gate holding this token, or None (unknown or revoked)."""
    token_hash = hash_token(token)
    cached = not hotpath.BASELINE and REVOCATION_POLL_S > 0
    if cached:
        now = time.monotonic()
        _poll_revocations(db, now)
        hit = _gate_cache.get(token_hash)
        # Same Database object: a process serving several databases (tests) never mixes them.
        if hit is not None and hit[0] is db and now - hit[2] < CACHE_MAX_AGE_S:
            return hit[1]
    with db.read() as conn:
        row = conn.execute(
            select(gates.c.id, gates.c.site_id, gates.c.name).where(
                gates.c.token_hash == token_hash, gates.c.revoked_at.is_(None)
            )
        ).first()
    if row is None:
        _forget_token_hash(token_hash)
        return None
    gate = Gate(row.id, row.site_id, row.name)
    if cached:
        with _cache_lock:
            if len(_gate_cache) >= _CACHE_MAX:
                _gate_cache.clear()
            _gate_cache[token_hash] = (db, gate, time.monotonic())
    return gate


def _check_account(role: str, sites: list[str], offices: list[str]) -> None:
    if role not in ROLES:
        raise EnrolmentError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if role == "street_officer":
        if not offices or sites:
            raise EnrolmentError("a street_officer is scoped to street offices (--office), not sites")
    elif not sites or offices:
        raise EnrolmentError(f"a {role} is scoped to one or more sites (--site; '*' for every site)")
    for value in [*sites, *offices]:
        if not value or len(value) > 64:
            raise EnrolmentError(f"scope {value!r}: expected a site or street office id of 1-64 characters")


def password_hasher():
    """argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane):
    a log-in costs a fraction of a second even on an old office PC or a Pi,
    and a stolen hash still costs an attacker 19 MiB per guess."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise EnrolmentError("a password needs at least 8 characters")
    if len(password) > 200:
        raise EnrolmentError("a password has at most 200 characters")
    return password_hasher().hash(password)


def add_staff(db: Database, name: str, *, role: str = "admin", sites: list[str] | tuple | None = None,
              offices: list[str] | tuple = (), password: str | None = None,
              by: str = "system") -> tuple[Staff, str]:
    """Create an account; returns it and its API token (shown once).

    A password (argon2-hashed) lets it log in to the pages; without one the
    account has only its bearer token. Names are unique among active accounts.
    """
    if sites is None:  # add_staff(db, name): a global administrator, as staff tokens used to be
        sites = () if role == "street_officer" else (GLOBAL_SCOPE,)
    sites, offices = list(dict.fromkeys(sites)), list(dict.fromkeys(offices))
    _check_account(role, sites, offices)
    if not name or len(name) > 64:
        raise EnrolmentError(f"name {name!r}: expected 1-64 characters")
    password_hash = hash_password(password) if password is not None else None
    token = new_token()
    with db.write() as conn:
        if conn.execute(select(staff.c.id).where(staff.c.name == name, staff.c.revoked_at.is_(None))).first():
            raise EnrolmentError(f"an active staff account named {name!r} exists; revoke it first or choose another")
        staff_id = conn.execute(
            staff.insert().values(name=name, token_hash=hash_token(token), created_at=_now())
        ).inserted_primary_key[0]
        conn.execute(staff_accounts.insert().values(staff_id=staff_id, role=role, password_hash=password_hash))
        for kind, values in (("site", sites), ("office", offices)):
            for value in values:
                conn.execute(staff_scopes.insert().values(staff_id=staff_id, kind=kind, value=value))
        audit.record(conn, actor=by, action="staff.add", site_id=sites[0] if len(sites) == 1 else None,
                     entity="staff", entity_id=name, before=None,
                     after={"role": role, "sites": sites, "offices": offices, "password": password is not None})
        member = _resolve(conn, staff_id, name, role)
    return member, token


def set_password(db: Database, name: str, password: str, *, by: str) -> None:
    """Set an active account's password; its open page sessions end."""
    password_hash = hash_password(password)
    with db.write() as conn:
        row = conn.execute(select(staff.c.id).where(staff.c.name == name, staff.c.revoked_at.is_(None))).first()
        if row is None:
            raise EnrolmentError(f"no active staff member named {name!r}")
        conn.execute(staff_accounts.update().where(staff_accounts.c.staff_id == row.id)
                     .values(password_hash=password_hash))
        conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id == row.id))
        audit.record(conn, actor=by, action="staff.passwd", site_id=None, entity="staff", entity_id=name,
                     before=None, after={"password": "changed"})


def revoke_staff(db: Database, name: str, *, by: str = "system") -> int:
    with db.write() as conn:
        ids = [r.id for r in conn.execute(
            select(staff.c.id).where(staff.c.name == name, staff.c.revoked_at.is_(None)))]
        if not ids:
            raise EnrolmentError(f"no active staff member named {name!r}")
        conn.execute(staff.update().where(staff.c.id.in_(ids)).values(revoked_at=_now()))
        conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id.in_(ids)))
        audit.record(conn, actor=by, action="staff.revoke", site_id=None, entity="staff", entity_id=name,
                     before={"active": True}, after={"active": False})
    return len(ids)


def list_staff(db: Database) -> list[dict]:
    """Every account (active and revoked) with its role and scopes; no secrets."""
    with db.read() as conn:
        rows = conn.execute(
            select(staff.c.id, staff.c.name, staff.c.created_at, staff.c.revoked_at, staff_accounts.c.role,
                   staff_accounts.c.password_hash.is_not(None).label("has_password"))
            .join(staff_accounts, staff_accounts.c.staff_id == staff.c.id, isouter=True)
            .order_by(staff.c.id)
        ).all()
        scopes = conn.execute(select(staff_scopes)).all()
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["sites"] = sorted(s.value for s in scopes if s.staff_id == row.id and s.kind == "site")
        item["offices"] = sorted(s.value for s in scopes if s.staff_id == row.id and s.kind == "office")
        item["has_password"] = bool(item["has_password"])
        out.append(item)
    return out


def _resolve(conn, staff_id: int, name: str, role: str) -> Staff:
    """The account's readable sites: its own, plus those of its street offices."""
    from sync.server.schema import sites as sites_table

    scopes = conn.execute(select(staff_scopes.c.kind, staff_scopes.c.value)
                          .where(staff_scopes.c.staff_id == staff_id)).all()
    readable = {v for k, v in scopes if k == "site"}
    offices = [v for k, v in scopes if k == "office"]
    if offices:
        readable |= {r.site_id for r in conn.execute(
            select(sites_table.c.site_id).where(sites_table.c.street_office.in_(offices)))}
    return Staff(staff_id, name, role, frozenset(readable), frozenset(offices))


def staff_by_id(conn, staff_id: int) -> Staff | None:
    """The active account with this id (used by page sessions), or None."""
    row = conn.execute(
        select(staff.c.id, staff.c.name, staff_accounts.c.role)
        .join(staff_accounts, staff_accounts.c.staff_id == staff.c.id)
        .where(staff.c.id == staff_id, staff.c.revoked_at.is_(None))
    ).first()
    return _resolve(conn, row.id, row.name, row.role) if row else None


def password_hash_for(conn, name: str) -> tuple[int, str] | None:
    """(staff id, argon2 hash) of the active account with a password, or None."""
    row = conn.execute(
        select(staff.c.id, staff_accounts.c.password_hash)
        .join(staff_accounts, staff_accounts.c.staff_id == staff.c.id)
        .where(staff.c.name == name, staff.c.revoked_at.is_(None), staff_accounts.c.password_hash.is_not(None))
    ).first()
    return (row.id, row.password_hash) if row else None


def staff_for_token(db: Database, token: str) -> Staff | None:
    with db.read() as conn:
        row = conn.execute(
            select(staff.c.id).where(staff.c.token_hash == hash_token(token), staff.c.revoked_at.is_(None))
        ).first()
        return staff_by_id(conn, row.id) if row else None
