"""Page log-ins: password check, throttling and server-side sessions.

Log-in (`log_in`):
1. Throttle check and attempt count, in one write transaction, *before* the
   password is checked, so parallel guesses cannot all slip through while
   the first is being verified. Per account: FREE_FAILURES attempts, then a
   lock that doubles from BACKOFF_BASE_S up to BACKOFF_MAX_S. For the whole
   server: at most GLOBAL_MAX_FAILURES failed attempts per GLOBAL_WINDOW_S.
   The counts live in `login_throttle`, so a restart does not reset them.
2. argon2 verify (argon2-cffi). An unknown name is checked against a dummy
   hash, so the answer takes as long as for a real one.
3. On success the account's count is cleared (and the attempt taken off the
   global count) and a session is made.

Sessions: the cookie holds 32 random bytes; the table holds only their
SHA-256, the account, a CSRF token for the session's forms, and an absolute
expiry (SESSION_HOURS). Log-out deletes the row; so do revoking the account
and changing its password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sync.server import auth
from sync.server.db import Database
from sync.server.schema import login_throttle, staff_sessions

FREE_FAILURES = 5
BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 15 * 60
GLOBAL_WINDOW_S = 60
GLOBAL_MAX_FAILURES = 100
SESSION_HOURS = 12
_GLOBAL_KEY = "global"


class LoginRefused(Exception):
    """Wrong name or password (`throttled` False), or too many attempts."""

    def __init__(self, throttled: bool, retry_after_s: int = 0):
        super().__init__("too many attempts" if throttled else "wrong name or password")
        self.throttled = throttled
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Session:
    staff: auth.Staff
    csrf_token: str
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive (they were stored as UTC).
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(auth.hash_password(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def backoff_s(failures: int) -> int:
    """Seconds an account stays locked after `failures` attempts in a row."""
    if failures < FREE_FAILURES:
        return 0
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (failures - FREE_FAILURES))


def _take_attempt(db: Database, name: str, now: datetime) -> None:
    """Count one attempt for the account and the server, or refuse it."""
    account_key = "account:" + name[:64]
    try:
        _count_attempt(db, account_key, now)
    except IntegrityError:  # a parallel first attempt made the same row: treat as busy
        raise LoginRefused(True, 1) from None


def _count_attempt(db: Database, account_key: str, now: datetime) -> None:
    with db.write() as conn:
        # FOR UPDATE (PostgreSQL): parallel attempts queue, none is lost.
        rows = {r.key: r for r in conn.execute(
            select(login_throttle).where(login_throttle.c.key.in_([account_key, _GLOBAL_KEY])).with_for_update())}
        glob, account = rows.get(_GLOBAL_KEY), rows.get(account_key)
        if account is not None and _aware(account.locked_until) and _aware(account.locked_until) > now:
            raise LoginRefused(True, int((_aware(account.locked_until) - now).total_seconds()) + 1)
        window_end = _aware(glob.window_start) + timedelta(seconds=GLOBAL_WINDOW_S) if glob else now
        if glob is None or window_end <= now:
            conn.execute(login_throttle.delete().where(login_throttle.c.key == _GLOBAL_KEY))
            conn.execute(login_throttle.insert().values(key=_GLOBAL_KEY, failures=1, window_start=now))
            # Forget stale unlocked accounts once a window (names an attacker made up).
            conn.execute(login_throttle.delete().where(
                login_throttle.c.window_start < now - timedelta(days=1),
                (login_throttle.c.locked_until.is_(None)) | (login_throttle.c.locked_until < now)))
        elif glob.failures >= GLOBAL_MAX_FAILURES:
            raise LoginRefused(True, int((window_end - now).total_seconds()) + 1)
        else:
            conn.execute(login_throttle.update().where(login_throttle.c.key == _GLOBAL_KEY)
                         .values(failures=glob.failures + 1))
        failures = (account.failures if account else 0) + 1
        lock = backoff_s(failures)
        values = {"failures": failures, "window_start": now,
                  "locked_until": now + timedelta(seconds=lock) if lock else None}
        if account is None:
            conn.execute(login_throttle.insert().values(key=account_key, **values))
        else:
            conn.execute(login_throttle.update().where(login_throttle.c.key == account_key).values(**values))


def _clear_attempt(db: Database, name: str) -> None:
    with db.write() as conn:
        conn.execute(login_throttle.delete().where(login_throttle.c.key == "account:" + name[:64]))
        glob = conn.execute(select(login_throttle.c.failures).where(login_throttle.c.key == _GLOBAL_KEY)).scalar()
        if glob:
            conn.execute(login_throttle.update().where(login_throttle.c.key == _GLOBAL_KEY)
                         .values(failures=glob - 1))


def log_in(db: Database, name: str, password: str, *, now: datetime | None = None) -> tuple[str, Session]:
    """Check a name and password; returns (session id for the cookie, session).

    Raises LoginRefused. The session id is never stored.
    """
    from argon2.exceptions import InvalidHashError, VerificationError

    now = now or _now()
    name = name.strip()
    _take_attempt(db, name, now)
    with db.read() as conn:
        found = auth.password_hash_for(conn, name)
    hasher = auth.password_hasher()
    try:
        hasher.verify(found[1] if found else _dummy_hash(), password[:200])
        ok = found is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        raise LoginRefused(False)
    _clear_attempt(db, name)
    return create_session(db, found[0], now=now)


def create_session(db: Database, staff_id: int, *, now: datetime | None = None) -> tuple[str, Session]:
    now = now or _now()
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=SESSION_HOURS)
    with db.write() as conn:
        conn.execute(staff_sessions.delete().where(staff_sessions.c.expires_at < now))
        conn.execute(staff_sessions.insert().values(id_hash=_hash(session_id), staff_id=staff_id, csrf_token=csrf,
                                                    created_at=now, expires_at=expires))
        member = auth.staff_by_id(conn, staff_id)
    return session_id, Session(member, csrf, expires)


def session_for(db: Database, session_id: str | None, *, now: datetime | None = None) -> Session | None:
    """The live session behind a cookie value, or None (unknown, expired, revoked)."""
    if not session_id or len(session_id) > 100:
        return None
    now = now or _now()
    with db.read() as conn:
        row = conn.execute(select(staff_sessions).where(staff_sessions.c.id_hash == _hash(session_id))).first()
        if row is None or _aware(row.expires_at) <= now:
            return None
        member = auth.staff_by_id(conn, row.staff_id)
    return Session(member, row.csrf_token, _aware(row.expires_at)) if member else None


def end_session(db: Database, session_id: str | None) -> None:
    if session_id:
        with db.write() as conn:
            conn.execute(staff_sessions.delete().where(staff_sessions.c.id_hash == _hash(session_id)))
