"""Passes issued by the registry server, with the community's key held there.

Each site has one Ed25519 issuing key (`issuer_keys`), made on first use.
Its private half is stored as PKCS#8 PEM encrypted with a passphrase that
never enters the database: `registry serve` reads it from the file named by
--issuer-passphrase-file or from $CHECKPOINT_ISSUER_PASSPHRASE. A stolen
database copy therefore cannot mint passes. The public half is published to
the site's gates through the registry feed (a `key` change), so passes the
server signs verify at the gates without copying files around.

Every pass is recorded (`passes`: id, person, kind, validity, the QR text for
reprinting, who issued it and in which batch), so a lost pass is revoked by
finding its person. Revoking appends a `revocation` change to the feed.

- `issue()`: one person, a household or a whole import in one transaction;
- `reissue()`: revoke a person's passes (lost, damaged) and issue a new one;
- `renew()`: new passes for people whose passes run out, old ones untouched
  (they expire on their own, so nobody is locked out before the new paper
  reaches them);
- `revoke()` / `revoke_person()`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from gateway.passes import PassFormatError, issue_pass, key_id, public_pem
from sync.server import people, registry
from sync.server.db import Database
from sync.server.people import _audit
from sync.server.schema import issuer_keys, passes

PASSPHRASE_ENV = "CHECKPOINT_ISSUER_PASSPHRASE"
PASS_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I: read aloud over the phone
CHINA_TZ = timezone(timedelta(hours=8))
MAX_DAYS = 366
MIN_PASSPHRASE = 8


class IssuingError(registry.RegistryError):
    """Passes cannot be issued or revoked as asked (no passphrase, wrong one, bad days)."""


def load_passphrase(path: Path | str | None = None) -> bytes | None:
    """The issuing-key passphrase from a file (first line) or the environment; None if neither."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise IssuingError(f"{path}: cannot read the issuer passphrase: {exc.strerror or exc}") from None
        value = text[0].strip() if text else ""
        source = str(path)
    else:
        value = os.environ.get(PASSPHRASE_ENV, "").strip()
        source = f"${PASSPHRASE_ENV}"
        if not value:
            return None
    if len(value) < MIN_PASSPHRASE:
        raise IssuingError(f"{source}: the issuer passphrase needs at least {MIN_PASSPHRASE} characters")
    return value.encode("utf-8")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_pass_id() -> str:
    """10 random characters (50 bits); 32 letters, so a byte % 32 is uniform."""
    return "".join(PASS_ID_ALPHABET[b % 32] for b in secrets.token_bytes(10))


def _need(passphrase: bytes | None) -> bytes:
    if not passphrase:
        raise IssuingError("this server was started without an issuer passphrase "
                           f"(--issuer-passphrase-file or ${PASSPHRASE_ENV}); it cannot sign passes")
    return passphrase


def signing_key(db: Database, conn, site_id: str, passphrase: bytes | None, by: str) -> Ed25519PrivateKey:
    """The site's issuing key, made (and published to its gates) on first use."""
    passphrase = _need(passphrase)
    row = conn.execute(select(issuer_keys).where(issuer_keys.c.site_id == site_id)).first()
    if row is not None:
        try:
            key = serialization.load_pem_private_key(row.private_pem_encrypted.encode("ascii"), password=passphrase)
        except (ValueError, TypeError):
            raise IssuingError(f"the issuing key of site {site_id} does not open with this passphrase") from None
        return key
    key = Ed25519PrivateKey.generate()
    pem = public_pem(key.public_key()).decode("ascii")
    kid = key_id(key)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(passphrase)).decode("ascii")
    conn.execute(issuer_keys.insert().values(site_id=site_id, kid=kid, public_pem=pem,
                                             private_pem_encrypted=encrypted, created_at=_now(), created_by=by))
    registry.record_change(db, conn, site_id, "key", kid, "upsert", {"public_pem": pem}, by)  # audited there
    return key


def public_key_pem(db: Database, site_id: str) -> str | None:
    with db.read() as conn:
        row = conn.execute(select(issuer_keys.c.public_pem).where(issuer_keys.c.site_id == site_id)).first()
    return row[0] if row else None


def validity(days: int, start: date | None = None) -> tuple[datetime, datetime]:
    """From 00:00 China time of `start` (default today) for `days` days: a
    printed pass works all of its first day, whatever the gate's clock says."""
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise IssuingError(f"days = {days!r}: from 1 to {MAX_DAYS}")
    start = start or datetime.now(CHINA_TZ).date()
    begin = datetime.combine(start, time(0), CHINA_TZ)
    return begin.astimezone(timezone.utc), (begin + timedelta(days=days)).astimezone(timezone.utc)


@dataclass
class IssueResult:
    batch_id: str
    issued: list[dict]
    refused: list[tuple[str, str]]  # (person_id, why)


def _pass_row(row) -> dict:
    data = dict(row._mapping)
    for key in ("valid_from", "valid_to", "issued_at", "revoked_at"):
        if isinstance(data.get(key), datetime) and data[key].tzinfo is None:
            data[key] = data[key].replace(tzinfo=timezone.utc)
    return data


def _issue_in(db: Database, conn, site_id: str, person_ids: list[str], *, days: int, start: date | None,
              passphrase: bytes | None, by: str, batch_id: str, action: str) -> IssueResult:
    key = signing_key(db, conn, site_id, passphrase, by)
    kid = key_id(key)
    valid_from, valid_to = validity(days, start)
    now = _now()
    issued, refused, rows = [], [], []
    wanted = list(dict.fromkeys(person_ids))
    found = {}
    for start in range(0, len(wanted), 500):
        found.update((r.person_id, r) for r in conn.execute(
            select(people.people.c.person_id, people.people.c.status, people.people.c.kind).where(
                people.people.c.site_id == site_id, people.people.c.person_id.in_(wanted[start:start + 500]))))
    for person_id in wanted:
        person = found.get(person_id)
        if person is None:
            refused.append((person_id, "no such person"))
            continue
        if person.status != "active":
            refused.append((person_id, "moved out"))
            continue
        kind = people.PASS_KIND[person.kind]
        pass_id = new_pass_id()
        try:
            text = issue_pass(key, pass_id=pass_id, person_id=person_id, site_id=site_id, kind=kind,
                              valid_from=valid_from, valid_to=valid_to)
        except PassFormatError as exc:
            refused.append((person_id, str(exc)))
            continue
        row = {"pass_id": pass_id, "site_id": site_id, "person_id": person_id, "kind": kind, "kid": kid,
               "valid_from": valid_from, "valid_to": valid_to, "text": text, "batch_id": batch_id,
               "issued_at": now, "issued_by": by, "revoked_at": None, "revoked_by": None, "revoke_reason": None}
        rows.append(row)
        issued.append(row)
    if rows:
        conn.execute(passes.insert(), rows)
        # One audit record per batch, listing every pass: the `passes` table has the rest.
        _audit(conn, actor=by, action=action, site_id=site_id, entity="pass_batch", entity_id=batch_id, before=None,
               after={"valid_from": valid_from.isoformat(), "valid_to": valid_to.isoformat(), "count": len(rows),
                      "passes": [[r["pass_id"], r["person_id"]] for r in rows]})
    return IssueResult(batch_id, issued, refused)


def issue(db: Database, site_id: str, person_ids: list[str], *, days: int, passphrase: bytes | None, by: str,
          start: date | None = None) -> IssueResult:
    """Issue one pass to each person, all in one transaction (one batch id for printing)."""
    batch_id = "b" + _now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)
    with db.write() as conn:
        return _issue_in(db, conn, site_id, person_ids, days=days, start=start, passphrase=passphrase, by=by,
                         batch_id=batch_id, action="pass.issue")


def _revoke_in(db: Database, conn, site_id: str, pass_ids: list[str], reason: str, by: str) -> list[str]:
    done = []
    now = _now()
    for pass_id in pass_ids:
        row = conn.execute(select(passes).where(passes.c.site_id == site_id, passes.c.pass_id == pass_id)).first()
        if row is None:
            raise IssuingError(f"site {site_id!r} has no issued pass {pass_id!r}")
        if row.revoked_at is not None:
            continue
        conn.execute(passes.update().where(passes.c.pass_id == pass_id)
                     .values(revoked_at=now, revoked_by=by, revoke_reason=reason))
        # Audited by record_change (entity "revocation", the pass id, the reason).
        registry.record_change(db, conn, site_id, "revocation", pass_id, "upsert",
                               {"reason": reason, "revoked_at": now.isoformat(timespec="seconds"),
                                "person_id": row.person_id}, by)
        done.append(pass_id)
    return done


def revoke(db: Database, site_id: str, pass_ids: list[str], *, reason: str, by: str) -> list[str]:
    """Revoke passes by id; returns those newly revoked."""
    with db.write() as conn:
        return _revoke_in(db, conn, site_id, pass_ids, reason, by)


def _active_ids(conn, site_id: str, person_id: str) -> list[str]:
    return [r[0] for r in conn.execute(select(passes.c.pass_id).where(
        passes.c.site_id == site_id, passes.c.person_id == person_id, passes.c.revoked_at.is_(None)))]


def revoke_person(db: Database, site_id: str, person_id: str, *, reason: str, by: str) -> list[str]:
    """Revoke every pass a person holds (a lost pass: find the person, not the code)."""
    with db.write() as conn:
        return _revoke_in(db, conn, site_id, _active_ids(conn, site_id, person_id), reason, by)


def reissue(db: Database, site_id: str, person_id: str, *, days: int, passphrase: bytes | None, by: str,
            reason: str = "reissued") -> IssueResult:
    """Revoke the person's passes and issue a new one, in one transaction."""
    batch_id = "r" + _now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)
    with db.write() as conn:
        result = _issue_in(db, conn, site_id, [person_id], days=days, start=None, passphrase=passphrase, by=by,
                           batch_id=batch_id, action="pass.reissue")
        if result.issued:
            old = [p for p in _active_ids(conn, site_id, person_id) if p != result.issued[0]["pass_id"]]
            _revoke_in(db, conn, site_id, old, reason, by)
        return result


def renew(db: Database, site_id: str, *, expiring_before: datetime, days: int, passphrase: bytes | None,
          by: str) -> IssueResult:
    """New passes for every active person whose newest unrevoked pass ends before
    `expiring_before`, valid from the day that pass ends (or today if later)."""
    with db.read() as conn:
        rows = conn.execute(select(passes.c.person_id, passes.c.valid_to).where(
            passes.c.site_id == site_id, passes.c.revoked_at.is_(None))).all()
    newest: dict[str, datetime] = {}
    for person_id, valid_to in rows:
        valid_to = valid_to if valid_to.tzinfo else valid_to.replace(tzinfo=timezone.utc)
        newest[person_id] = max(newest.get(person_id, valid_to), valid_to)
    due = [pid for pid, end in newest.items() if end < expiring_before]
    today = datetime.now(CHINA_TZ).date()
    batch_id = "n" + _now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)
    by_start: dict[date, list[str]] = {}
    for pid in due:
        start = max(today, newest[pid].astimezone(CHINA_TZ).date())
        by_start.setdefault(start, []).append(pid)
    total = IssueResult(batch_id, [], [])
    with db.write() as conn:
        for start, ids in sorted(by_start.items()):
            part = _issue_in(db, conn, site_id, sorted(ids), days=days, start=start, passphrase=passphrase, by=by,
                             batch_id=batch_id, action="pass.renew")
            total.issued += part.issued
            total.refused += part.refused
    return total


def passes_of(db: Database, site_id: str, person_id: str) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(select(passes).where(passes.c.site_id == site_id, passes.c.person_id == person_id)
                            .order_by(passes.c.issued_at.desc(), passes.c.pass_id)).all()
    return [_pass_row(r) for r in rows]


def batch(db: Database, site_id: str, batch_id: str) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(select(passes).where(passes.c.site_id == site_id, passes.c.batch_id == batch_id)
                            .order_by(passes.c.pass_id)).all()
    return [_pass_row(r) for r in rows]


def get_passes(db: Database, site_id: str, pass_ids: list[str]) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(select(passes).where(passes.c.site_id == site_id,
                                                 passes.c.pass_id.in_(pass_ids))).all()
    return [_pass_row(r) for r in rows]
