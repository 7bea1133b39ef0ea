"""Retention of health data on the registry server.

Events (temperatures, decisions, visitor and vehicle ledgers), quarantined
raw events, clock anchors and acknowledged fever alerts are deleted once they
are older than the retention period, counted from when the server received
them. The default of 30 days covers the 14-day home observation and leaves
the street office two more weeks for its checks. With them go:
- staff follow-up notes on a fever alert, when their alert goes (they
  quote the case; a note never outlives it);
- notices to the street office (`outbox`, whose bodies name the person
  and the temperature) created before the cutoff, delivered or not: a
  notice that could not be delivered in the whole retention period is
  stale;
- import jobs (the uploaded ledger file and its preview) created before
  the cutoff, whatever their state;
- what audit entries quote about alerts and people (`before`/`after`):
  emptied once older than the cutoff; who did what when, and to which
  entity, stays;
- enrolment codes `ENROL_CODES_KEPT` after they expired (used or not):
  not health data, but a dead credential has no reason to stay.

Never deleted here:
- unacknowledged fever alerts: someone still has to act on them (they go
  once acknowledged, if received before the cutoff), and their follow-ups;
- `streams` (the per-stream watermark): exactly-once depends on it, so a
  kiosk re-sending a purged batch is still answered "duplicate";
- the registry change log and state, gates and staff: not health data.

On PostgreSQL `events` is partitioned by month of `received_at` (see schema):
a partition wholly before the cutoff is dropped in one statement, and the
boundary month and the default partition lose rows by DELETE. Rows go in
batches of `batch_rows`, one short transaction each, so uploads (which queue
on the same SQLite write lock) wait for one batch at most.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, exists, func, literal_column, not_, select, text, tuple_
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from gateway.clock import to_ns
from sync.server.db import Database
from sync.server.schema import (alert_followups, alerts, audit, clock_anchors, enrol_codes, ensure_partitions, events,
                                import_jobs, outbox, quarantine)

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
PURGE_INTERVAL_S = 3600.0
BATCH_ROWS = 5000
COUNT_KEYS = ("events", "event_partitions", "quarantine", "clock_anchors", "alert_followups", "alerts", "outbox",
              "import_jobs", "audit_redacted", "enrol_codes")
# Audit entries about these quote health data (follow-up notes, observation, risk).
HEALTH_AUDIT_ENTITIES = ("alert", "person")
# A used or expired enrolment code is kept this long after its expiry (to answer
# "who enrolled that gate?" together with the audit log), then deleted.
ENROL_CODES_KEPT = timedelta(days=7)
# Dropping a partition needs an exclusive lock on `events`; never queue
# uploads behind it for long - the rows are deleted by DELETE instead.
PARTITION_LOCK_TIMEOUT = "5s"
_PARTITION_NAME = re.compile(r"^events_y(\d{4})m(\d{2})$")


def check_retention_days(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention_days = {value!r}: must be a whole number of days from 1 to {MAX_RETENTION_DAYS}")
    return value


def cutoff_for(now: datetime, retention_days: int) -> datetime:
    """Rows received before this instant (UTC) are purged."""
    if now.tzinfo is None:
        raise ValueError(f"now = {now!r}: must carry a time zone")
    check_retention_days(retention_days)
    # UTC: SQLite stores these timestamps as text without a zone.
    return now.astimezone(timezone.utc) - timedelta(days=retention_days)


def purge(db: Database, now: datetime, retention_days: int, *, dry_run: bool = False,
          batch_rows: int = BATCH_ROWS, stop: threading.Event | None = None) -> dict[str, int]:
    """Delete what is older than `retention_days` before `now`; returns counts per kind.

    With `dry_run` nothing is deleted and the counts say what would be.
    `stop` (set on server shutdown) ends the purge between two batches; the
    next run carries on.
    """
    cutoff = cutoff_for(now, retention_days)
    cutoff_ns = to_ns(cutoff)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    stop = stop or threading.Event()

    if db.is_postgres:
        counts["events"], counts["event_partitions"] = _drop_old_partitions(db, cutoff, dry_run, stop)
    old_event = events.c.received_at < cutoff
    # (stream_id, seq) is unique by the watermark; on SQLite rowid is cheaper.
    event_key = (literal_column("rowid"),) if db.is_sqlite else (events.c.stream_id, events.c.seq)
    # An alert goes when it was received before the cutoff and someone acknowledged it.
    alert_goes = (alerts.c.received_at < cutoff, alerts.c.acknowledged_at.is_not(None))
    alert_stays = exists().where(alerts.c.id == alert_followups.c.alert_id, not_(and_(*alert_goes)))
    jobs = [
        ("events", events, event_key, (old_event,)),
        ("quarantine", quarantine, (quarantine.c.id,), (quarantine.c.received_at < cutoff,)),
        # An anchor's server time is the server's clock when the kiosk synced,
        # at or before its upload, so it goes no later than its event.
        ("clock_anchors", clock_anchors, (clock_anchors.c.stream_id, clock_anchors.c.seq),
         (clock_anchors.c.server_time_ns < cutoff_ns,)),
        # Before the alerts: a note goes with its alert, and one whose alert is gone goes too.
        ("alert_followups", alert_followups, (alert_followups.c.id,), (not_(alert_stays),)),
        ("alerts", alerts, (alerts.c.id,), alert_goes),
        ("outbox", outbox, (outbox.c.id,), (outbox.c.created_at < cutoff,)),
        ("import_jobs", import_jobs, (import_jobs.c.id,), (import_jobs.c.created_at < cutoff,)),
        ("enrol_codes", enrol_codes, (enrol_codes.c.id,),
         (enrol_codes.c.expires_at < now.astimezone(timezone.utc) - ENROL_CODES_KEPT,)),
    ]
    for name, table, key, where in jobs:
        if dry_run:
            counts[name] += _count(db, table, where)
        else:
            counts[name] += _delete_in_batches(db, table, key, where, batch_rows, stop)
    quoting = (audit.c.at < cutoff, audit.c.entity.in_(HEALTH_AUDIT_ENTITIES),
               (audit.c.before.is_not(None)) | (audit.c.after.is_not(None)))
    if dry_run:
        counts["audit_redacted"] = _count(db, audit, quoting)
    else:
        counts["audit_redacted"] = _redact_in_batches(db, quoting, batch_rows, stop)
    return counts


def _count(db: Database, table, where: tuple) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _redact_in_batches(db: Database, where: tuple, batch_rows: int, stop: threading.Event) -> int:
    """Empty what old audit entries quote; the entry itself (who, what, when) stays."""
    doomed = select(audit.c.id).where(*where).limit(batch_rows)
    return _in_batches(db, audit.update().where(audit.c.id.in_(doomed)).values(before=None, after=None),
                       batch_rows, stop)


def _delete_in_batches(db: Database, table, key: tuple, where: tuple, batch_rows: int,
                       stop: threading.Event) -> int:
    key_expr = key[0] if len(key) == 1 else tuple_(*key)
    doomed = select(*key).select_from(table).where(*where).limit(batch_rows)
    return _in_batches(db, table.delete().where(key_expr.in_(doomed), *where), batch_rows, stop)


def _in_batches(db: Database, statement, batch_rows: int, stop: threading.Event) -> int:
    """Run `statement` (which touches at most `batch_rows` rows) in short transactions
    until it touches fewer; returns the rows touched."""
    total = 0
    while not stop.is_set():
        with db.write() as conn:
            touched = conn.execute(statement).rowcount
        total += touched
        if touched < batch_rows:
            break
    return total


def _month_after(year: int, month: int) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)


def _drop_old_partitions(db: Database, cutoff: datetime, dry_run: bool, stop: threading.Event) -> tuple[int, int]:
    """Drop monthly partitions (named by schema.ensure_partitions) that end
    at or before the cutoff; returns (rows dropped, partitions dropped or,
    in a dry run, (0, partitions that would be))."""
    with db.read() as conn:
        names = conn.execute(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass ORDER BY c.relname"
        )).scalars().all()
    rows = dropped = 0
    for name in names:
        match = _PARTITION_NAME.match(name)
        if not match or _month_after(int(match[1]), int(match[2])) > cutoff or stop.is_set():
            continue
        if dry_run:  # its rows are in purge's count of old events
            dropped += 1
            continue
        try:
            with db.write() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"))
                n = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                conn.execute(text(f'DROP TABLE "{name}"'))
        except DBAPIError as exc:  # busy, or another replica dropped it first: rows go by DELETE
            log.warning("retention: could not drop partition %s: %s", name, str(exc.orig).splitlines()[0])
            continue
        rows += n
        dropped += 1
        log.info("retention: dropped partition %s (%d events)", name, n)
    return rows, dropped


def run_once(db: Database, retention_days: int, stop: threading.Event | None = None) -> dict[str, int] | None:
    """One scheduled purge (and, on PostgreSQL, next months' partitions); logs
    the outcome and never raises for a database error."""
    now = datetime.now(timezone.utc)
    try:
        if db.is_postgres:
            ensure_partitions(db, now)
        counts = purge(db, now, retention_days, stop=stop)
    except SQLAlchemyError as exc:
        log.error("retention: purge failed, retrying in an hour: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
        return None
    if any(counts.values()):
        log.info("retention: purged data received before %s: %s",
                 cutoff_for(now, retention_days).isoformat(timespec="seconds"), counts)
    return counts


async def purge_periodically(db: Database, retention_days: int, interval_s: float,
                             stop: threading.Event, wake: asyncio.Event) -> None:
    """Purge now, then every `interval_s`, in a worker thread so requests go on.

    Shut down by setting `stop` (ends a running purge between batches) and
    `wake` (ends the wait), then awaiting the task.
    """
    while not stop.is_set():
        await asyncio.to_thread(run_once, db, retention_days, stop)
        try:
            await asyncio.wait_for(wake.wait(), interval_s)
        except asyncio.TimeoutError:
            continue
