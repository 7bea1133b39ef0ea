"""The registry database: tables (SQLAlchemy Core), the legacy migration steps and `migrate`.

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
import uuid
from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Date,
    Float,
    Index,
    LargeBinary,
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
    # One row per fever case (gateway/fever_case.py), added by _v_fever_alert_cases;
    # a row without a case_id is an alert from a kiosk that predates cases (one per flagged reading).
    Column("case_id", String(64)),
    Column("status", String(8)),  # open | closed (NULL: a pre-case alert, open until acknowledged)
    Column("outcome", String(16)),  # admitted | referred | refused
    Column("clinical_c", Float),
    Column("gate_operator", String(64)),
    Column("note", Text),
    Column("closed_at", Timestamp),
    Column("readings", Integer),
    Column("max_c", Float),
    Index("ix_alerts_open", "site_id", "acknowledged_at"),
)

# The columns _v_fever_alert_cases adds to an existing alerts table.
_FEVER_CASE_COLUMNS = ("case_id", "status", "outcome", "clinical_c", "gate_operator", "note", "closed_at",
                       "readings", "max_c")

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

# Notices to the street office (sync.server.notify), written in the same
# transaction as the event that causes them and delivered by a worker.
# `ref` names the notice within this registry; the receiver's idempotency key
# is the registry's instance id plus `ref`. `due_ns` is NULL once every
# channel has it; `pending` lists the channels still to send to (NULL: not
# routed yet). Not in `metadata`: created by their own migration, not `_v1`.
street_metadata = MetaData()

outbox = Table(
    "outbox",
    street_metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("ref", String(200), nullable=False, unique=True),
    Column("site_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("due_ns", BigInteger, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("pending", Text),
    Column("delivered_at", Timestamp),
    Column("last_error", Text),
)

# Last time each gate called the server (flushed from memory every few
# seconds), for the gate-offline notice.
gate_contact = Table(
    "gate_contact",
    street_metadata,
    Column("gate_id", BigInteger, primary_key=True),
    Column("last_contact_ns", BigInteger, nullable=False),
)

# --- residents, passes and imports (branch reg-people; created by _v_reg_people_registry) ---
# Kept out of `metadata` so that _v1's create_all stays exactly what it was.
people_metadata = MetaData()

# The staff's record of each person. The gates never read this table: every
# change here also appends a `person` change to the registry feed
# (sync.server.people), which is what the kiosks download.
people = Table(
    "people",
    people_metadata,
    Column("site_id", String(64), primary_key=True),
    Column("person_id", String(128), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("phone", String(32), nullable=False, default=""),
    Column("building", String(32), nullable=False, default=""),
    Column("unit", String(32), nullable=False, default=""),
    Column("room", String(32), nullable=False, default=""),
    Column("kind", String(16), nullable=False, default="resident"),
    Column("status", String(16), nullable=False, default="active"),
    Column("landlord_id", String(128)),
    Column("moved_in", Date),
    Column("returnee", Boolean, nullable=False, default=False),
    Column("arrival_date", Date),
    Column("origin", String(64)),
    Column("contact", String(64)),
    Column("observation_until", Date),
    Column("risk", String(8)),
    # building|unit|room|name, normalised: what makes re-importing a ledger a no-op.
    Column("natural_key", String(200), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", String(64)),
    Index("ix_people_natural_key", "site_id", "natural_key", unique=True),
    Index("ix_people_building", "site_id", "building", "unit", "room"),
)

# The community's pass-issuing key, private half encrypted with a passphrase
# that is never stored in the database (given to `registry serve`).
issuer_keys = Table(
    "issuer_keys",
    people_metadata,
    Column("site_id", String(64), primary_key=True),
    Column("kid", String(8), nullable=False),
    Column("public_pem", Text, nullable=False),
    Column("private_pem_encrypted", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(64)),
)

# Every pass the server issued, so a lost one is revoked by finding its person.
passes = Table(
    "passes",
    people_metadata,
    Column("pass_id", String(16), primary_key=True),
    Column("site_id", String(64), nullable=False),
    Column("person_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("kid", String(8), nullable=False),
    Column("valid_from", Timestamp, nullable=False),
    Column("valid_to", Timestamp, nullable=False),
    Column("text", String(160), nullable=False),
    Column("batch_id", String(32), nullable=False),
    Column("issued_at", Timestamp, nullable=False),
    Column("issued_by", String(64)),
    Column("revoked_at", Timestamp),
    Column("revoked_by", String(64)),
    Column("revoke_reason", String(200)),
    Index("ix_passes_person", "site_id", "person_id"),
    Index("ix_passes_batch", "batch_id"),
)

# An uploaded ledger between preview and commit: nothing reaches `people`
# until the clerk confirms. The file is dropped once committed or cancelled.
import_jobs = Table(
    "import_jobs",
    people_metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("site_id", String(64), nullable=False),
    Column("list_kind", String(16), nullable=False),
    Column("filename", String(200), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content", LargeBinary),
    Column("mapping", Text),
    Column("status", String(16), nullable=False),
    Column("summary", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(64)),
    Column("finished_at", Timestamp),
    # How far a commit got, and when it last said so (added by _v_tidy_import_progress):
    # every replica's progress bar reads it, and a stale one means the import was abandoned.
    Column("progress_done", Integer),
    Column("progress_total", Integer),
    Column("progress_at", Timestamp),
)

# The columns _v_tidy_import_progress adds to an existing import_jobs table.
_IMPORT_PROGRESS_COLUMNS = ("progress_done", "progress_total", "progress_at")

# --- reg-staff: accounts, sessions, audit (created by _v_reg_staff_accounts) ---------

# A staff member's role and password (argon2 hash), one row per `staff` row.
staff_accounts = Table(
    "staff_accounts",
    metadata,
    Column("staff_id", BigInteger, primary_key=True),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(200)),
)

# A community (site) and the street office it reports to.
sites = Table(
    "sites",
    metadata,
    Column("site_id", String(64), primary_key=True),
    Column("name", String(100), nullable=False, default=""),
    Column("street_office", String(64)),
    Column("created_at", Timestamp, nullable=False),
)

# What an account may see: kind 'site' (a site id, or '*' for every site) or
# kind 'office' (every site of that street office).
staff_scopes = Table(
    "staff_scopes",
    metadata,
    Column("staff_id", BigInteger, primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("value", String(64), primary_key=True),
)

# Page log-ins. Only the SHA-256 of the cookie's random id is stored.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("staff_id", BigInteger, nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

# Failed log-ins per account ('account:NAME') and for the whole server
# ('global'); kept in the database so a restart does not reset them.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start", Timestamp, nullable=False),
    Column("locked_until", Timestamp),
)

# Who changed what, when, from what to what.
audit = Table(
    "audit",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("site_id", String(64)),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Index("ix_audit_site_at", "site_id", "at"),
)

# Staff follow-up notes on a fever alert (the board's "处置" column).
alert_followups = Table(
    "alert_followups",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, nullable=False, index=True),
    Column("at", Timestamp, nullable=False),
    Column("by", String(64), nullable=False),
    Column("note", Text, nullable=False),
)

_REG_STAFF_TABLES = {staff_accounts, sites, staff_scopes, staff_sessions, login_throttle, audit, alert_followups}
_NOT_EVENTS = [t for t in metadata.sorted_tables if t is not events and t not in _REG_STAFF_TABLES]

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



def _v_reg_staff_accounts(db: Database, conn) -> None:
    """Staff roles, site scopes, street offices, password sessions, login
    throttling, the audit log and staff follow-ups of fever alerts.

    Staff tokens made before this migration were all-powerful; they become
    global administrators so nothing that worked stops working.
    """
    metadata.create_all(conn, tables=sorted(_REG_STAFF_TABLES, key=lambda t: t.name))
    conn.execute(text("INSERT INTO staff_accounts (staff_id, role) SELECT id, 'admin' FROM staff"))
    conn.execute(text("INSERT INTO staff_scopes (staff_id, kind, value) SELECT id, 'site', '*' FROM staff"))


def _v_reg_people_registry(db: Database, conn) -> None:
    """Residents, issuer keys, issued passes and import jobs; existing persons copied in."""
    import json

    people_metadata.create_all(conn)
    now = datetime.now(timezone.utc)
    rows = conn.execute(text(
        "SELECT site_id, entity_id, payload FROM registry_state WHERE entity = 'person'")).all()
    for site_id, person_id, payload in rows:
        data = json.loads(payload)
        name = str(data.get("name") or person_id)[:64]
        until = data.get("observation_until")
        conn.execute(people.insert().values(
            site_id=site_id, person_id=person_id, name=name, phone="", building="", unit=str(data.get("unit") or "")[:32],
            room="", kind="resident", status=data.get("status") or "active", returnee=bool(data.get("returnee")),
            observation_until=date.fromisoformat(until) if until else None, risk=data.get("risk"),
            natural_key=f"id:{person_id}", updated_at=now, updated_by="migration"))




def _v_street_outbox(db: Database, conn) -> None:
    street_metadata.create_all(conn)
    # Names this registry in idempotency keys and shared rate-limit counters,
    # so two registries on one receiver or one Redis never collide.
    conn.execute(meta.insert().values(key="instance_id", value=uuid.uuid4().hex))


def _v_fever_alert_cases(db: Database, conn) -> None:
    """alerts: one row per fever case, closed from the gate (issue 10).

    A database made by this version's _v1 has the columns already (create_all
    uses the current table); an older one gets them added.
    """
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    have = {c["name"] for c in inspect(conn).get_columns("alerts")}
    for name in _FEVER_CASE_COLUMNS:
        if name not in have:
            ddl = CreateColumn(alerts.c[name]).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE alerts ADD COLUMN {ddl}"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_alerts_case ON alerts (site_id, case_id)"))


def _v_tidy_legacy_fever_acks(db: Database, conn) -> None:
    """Alerts an older kiosk acknowledged with `fever_ack` before the server folded those
    (sync.server.cases.fold_legacy_acks) become cases closed at the gate, as new uploads do.
    An acknowledgement whose alert is gone is left alone (its fever was purged or never raised)."""
    import hashlib
    import json

    acks = conn.execute(text(
        "SELECT site_id, stream_id, event_time_ns, payload FROM events WHERE kind = 'fever_ack' "
        "ORDER BY stream_id, seq")).all()
    for site_id, stream_id, time_ns, payload in acks:
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        detail = body.get("detail") if isinstance(body, dict) and isinstance(body.get("detail"), dict) else {}
        target = detail.get("seq")
        if not isinstance(target, int) or isinstance(target, bool):
            continue
        case_id = f"ack-{stream_id}-{target}"
        if len(case_id) > 64:
            case_id = "ack-" + hashlib.sha256(case_id.encode()).hexdigest()[:60]
        operator, note = body.get("operator"), detail.get("note")
        conn.execute(alerts.update().where(
            alerts.c.site_id == site_id, alerts.c.stream_id == stream_id, alerts.c.seq == target,
            alerts.c.case_id.is_(None),
        ).values(case_id=case_id, status="closed",
                 gate_operator=operator[:64] if isinstance(operator, str) and operator else None,
                 note=note[:1000] if isinstance(note, str) and note else None,
                 closed_at=datetime.fromtimestamp(time_ns / 1e9, timezone.utc)))


def _v_tidy_import_progress(db: Database, conn) -> None:
    """import_jobs: the commit's progress in the database (was one process's memory).
    A database made by this version's _v_reg_people_registry has the columns already."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    have = {c["name"] for c in inspect(conn).get_columns("import_jobs")}
    for name in _IMPORT_PROGRESS_COLUMNS:
        if name not in have:
            ddl = CreateColumn(import_jobs.c[name]).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE import_jobs ADD COLUMN {ddl}"))


# The steps before Alembic (issue 14), frozen: the baseline revision
# (sync/server/migrations/versions/0001_baseline.py) runs them. A schema
# change is now an Alembic revision; an old-style step becomes one with
# `run_step` (see sync/server/migrations/__init__.py).
MIGRATIONS = [_v1, _v_street_outbox, _v_fever_alert_cases, _v_reg_staff_accounts, _v_reg_people_registry, _v_deploy_enrol_codes]
LEGACY_VERSION = 6


def legacy_version(conn) -> int:
    """meta.schema_version: how many legacy steps the database has had (0: a new database)."""
    if not conn.dialect.has_table(conn, "meta"):
        return 0
    row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def run_legacy_steps(db: Database, conn) -> int:
    """The legacy steps this database has not had, each recorded in meta.schema_version."""
    version = legacy_version(conn)
    if version > LEGACY_VERSION:
        raise RuntimeError(f"schema_version {version} is newer than this release's legacy steps "
                           f"({LEGACY_VERSION}); was the database made by a newer release?")
    for number, step in enumerate(MIGRATIONS[version:LEGACY_VERSION], start=version + 1):
        step(db, conn)
        conn.execute(meta.delete().where(meta.c.key == "schema_version"))
        conn.execute(meta.insert().values(key="schema_version", value=str(number)))
        version = number
    return version


def migrate(db: Database) -> str:
    """Bring the schema up to date (`alembic upgrade head`); returns the revision.

    Safe to run concurrently: one process migrates, the others wait and then
    find nothing to do (sync.server.schema_upgrade).
    """
    from sync.server.schema_upgrade import upgrade

    if len(MIGRATIONS) != LEGACY_VERSION:
        raise RuntimeError(
            "schema.MIGRATIONS is frozen at the legacy steps; add the new step as an Alembic revision "
            "instead (sync/server/migrations/__init__.py says how)")
    revision = upgrade(db)
    if db.is_postgres:
        ensure_partitions(db)
    return revision


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
