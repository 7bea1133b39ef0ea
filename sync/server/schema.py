"""The registry database: tables (SQLAlchemy Core) and numbered migrations.

Both engines get the same tables. The one difference is `events`:
- on SQLite it is a plain table with a UNIQUE (stream_id, seq) index as a
  belt-and-braces check behind the watermark;
- on PostgreSQL it is range-partitioned by `received_at` (one partition per
  month plus a default), so old months can be detached and dropped. A unique
  index there would have to include `received_at` and so would prove nothing;
  exactly-once comes from the per-stream watermark (`streams.acked_through`,
  locked FOR UPDATE during an upload).

Times that need arithmetic (event time correction) are epoch nanoseconds in
BIGINT columns, which behave the same on both engines.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

from sqlalchemy.exc import DBAPIError

from sync.server.db import Database

log = logging.getLogger(__name__)

metadata = MetaData()
# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer, "sqlite")
Timestamp = DateTime(timezone=True)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

gates = Table(
    "gates",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("site_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
)

staff = Table(
    "staff",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
)

streams = Table(
    "streams",
    metadata,
    Column("stream_id", String(64), primary_key=True),
    Column("gate_id", BigInteger, nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("acked_through", BigInteger, nullable=False, default=0),
    Column("created_at", Timestamp, nullable=False),
    Column("last_upload_at", Timestamp),
)

events = Table(
    "events",
    metadata,
    Column("stream_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("gate_id", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    # Best known time: the kiosk's clock if it was synced, else corrected
    # from a clock anchor of the same boot, else the kiosk's wall time
    # (time_source says which).
    Column("event_time_ns", BigInteger, nullable=False),
    Column("time_source", String(8), nullable=False),
    Column("wall_time_ns", BigInteger, nullable=False),
    Column("boot_id", String(64), nullable=False),
    Column("mono_ns", BigInteger, nullable=False),
    Column("clock_synced", Boolean, nullable=False),
    Column("decision", String(16)),
    Column("flagged", Boolean, nullable=False),
    Column("person_id", String(128)),
    Column("pass_id", String(128)),
    Column("body_c", Float),
    Column("received_at", Timestamp, nullable=False),
    Column("payload", Text, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("stream_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("gate_id", BigInteger, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("error", Text, nullable=False),
    Column("payload", Text, nullable=False),
)

clock_anchors = Table(
    "clock_anchors",
    metadata,
    Column("stream_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("boot_id", String(64), nullable=False, index=True),
    Column("mono_ns", BigInteger, nullable=False),
    Column("server_time_ns", BigInteger, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("site_id", String(64), nullable=False),
    Column("gate_id", BigInteger, nullable=False),
    Column("gate_name", String(64), nullable=False),
    Column("stream_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("person_id", String(128)),
    Column("pass_id", String(128)),
    Column("body_c", Float),
    Column("event_time_ns", BigInteger, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("acknowledged_at", Timestamp),
    Column("acknowledged_by", String(64)),
    Index("ix_alerts_open", "site_id", "acknowledged_at"),
)

registry_changes = Table(
    "registry_changes",
    metadata,
    Column("change_seq", AutoId, primary_key=True, autoincrement=True),
    Column("site_id", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("op", String(8), nullable=False),
    Column("payload", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(64)),
    Index("ix_registry_changes_site", "site_id", "change_seq"),
    # Never reuse a change_seq, even after compaction deleted every row
    # (SQLite would otherwise restart at max(rowid) + 1).
    sqlite_autoincrement=True,
)

# Current state per entity, for snapshots (the change log may be compacted).
registry_state = Table(
    "registry_state",
    metadata,
    Column("site_id", String(64), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("entity_id", String(128), primary_key=True),
    Column("payload", Text, nullable=False),
    Column("change_seq", BigInteger, nullable=False),
)

_NOT_EVENTS = [t for t in metadata.sorted_tables if t is not events]

_PG_EVENTS_DDL = """
CREATE TABLE events (
    stream_id varchar(64) NOT NULL,
    seq bigint NOT NULL,
    site_id varchar(64) NOT NULL,
    gate_id bigint NOT NULL,
    kind varchar(64) NOT NULL,
    event_time_ns bigint NOT NULL,
    time_source varchar(8) NOT NULL,
    wall_time_ns bigint NOT NULL,
    boot_id varchar(64) NOT NULL,
    mono_ns bigint NOT NULL,
    clock_synced boolean NOT NULL,
    decision varchar(16),
    flagged boolean NOT NULL,
    person_id varchar(128),
    pass_id varchar(128),
    body_c double precision,
    received_at timestamptz NOT NULL,
    payload text NOT NULL
) PARTITION BY RANGE (received_at)
"""


def _v1(db: Database, conn) -> None:
    metadata.create_all(conn, tables=_NOT_EVENTS)
    if db.is_postgres:
        conn.execute(text(_PG_EVENTS_DDL))
        conn.execute(text("CREATE TABLE events_default PARTITION OF events DEFAULT"))
        conn.execute(text("CREATE INDEX ix_events_stream_seq ON events (stream_id, seq)"))
    else:
        events.create(conn)
        conn.execute(text("CREATE UNIQUE INDEX ix_events_stream_seq ON events (stream_id, seq)"))
    conn.execute(text("CREATE INDEX ix_events_site_time ON events (site_id, event_time_ns)"))
    # Events waiting for a clock anchor of their boot.
    conn.execute(text("CREATE INDEX ix_events_unanchored ON events (boot_id) WHERE time_source = 'unknown'"))


enrol_codes = Table(
    "enrol_codes",
    MetaData(),  # created by its migration, not by _v1's create_all
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("site_id", String(64), nullable=False),
    Column("gate_name", String(64), nullable=False),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp),
)


def _v_deploy_enrol_codes(db: Database, conn) -> None:
    """One-time enrolment codes (sync.server.enrolment)."""
    enrol_codes.create(conn)


MIGRATIONS = [_v1, _v_deploy_enrol_codes]


def migrate(db: Database) -> int:
    """Bring the schema up to date; returns the version. Safe to run concurrently."""
    with db.write() as conn:
        if db.is_postgres:
            # Two replicas starting together: one migrates, the other waits.
            conn.execute(text("SELECT pg_advisory_xact_lock(73190001)"))
        if not db.engine.dialect.has_table(conn, "meta"):
            version = 0
        else:
            row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
            version = int(row[0]) if row else 0
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db, conn)
            conn.execute(meta.delete().where(meta.c.key == "schema_version"))
            conn.execute(meta.insert().values(key="schema_version", value=str(number)))
            version = number
    if db.is_postgres:
        ensure_partitions(db)
    return version


def _month_start(year: int, month: int) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=timezone.utc)


def ensure_partitions(db: Database, now: datetime | None = None, months_ahead: int = 2) -> list[str]:
    """Create monthly event partitions from this month to `months_ahead` on.

    Called at start-up; a row for a month without a partition lands in the
    default partition, so nothing fails if the server runs for months.
    """
    now = now or datetime.now(timezone.utc)
    made = []
    for i in range(months_ahead + 1):
        lo, hi = _month_start(now.year, now.month + i), _month_start(now.year, now.month + i + 1)
        name = f"events_y{lo:%Y}m{lo:%m}"
        try:
            with db.write() as conn:
                conn.execute(text(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events "
                    f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
                ))
            made.append(name)
        except DBAPIError as exc:  # e.g. rows for that month already sit in the default partition
            log.warning("could not create partition %s: %s", name, exc)
    return made
