"""Run the registry's Alembic revisions (sync/server/migrations) without alembic.ini.

`upgrade(db)` is what `schema.migrate(db)` does: bring the database to the
newest revision, one process at a time.
- SQLite: the whole upgrade is one BEGIN IMMEDIATE transaction, which
  serialises processes by itself.
- PostgreSQL: a session advisory lock, taken by polling pg_try_advisory_lock
  on the connection that then runs the revisions. Not by waiting in
  pg_advisory_lock: a waiting statement holds a snapshot, and CREATE INDEX
  CONCURRENTLY (run by the lock holder) waits for every older snapshot in the
  database, so a second replica starting during the build would deadlock
  with it. For the same reason the key is not the one the legacy `migrate`
  waited on: a replica of the previous release that starts meanwhile must not
  queue behind the build. It need not: it finds `schema_version` 6 (the
  baseline keeps it) and does nothing. The key includes the schema, so
  registries in several schemas of one database do not wait for each other.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from sync.server.db import Database

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).with_name("migrations")
# pg_try_advisory_lock(int, int): a key space apart from the legacy single-key lock.
PG_LOCK = "73190001, hashtext(current_schema())"
LOCK_POLL_S = 0.2


def alembic_config(db: Database | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["database"] = db
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(db: Database, target: str = "head") -> str:
    """Upgrade to `target`; returns the revision the database is at afterwards."""
    if not db.is_postgres:
        with db.write() as conn:
            _run(db, conn, target)
            return _current(conn)
    with db.engine.connect() as conn:
        _take_lock(conn)
        try:
            _run(db, conn, target)
            return _current(conn)
        finally:
            try:
                conn.rollback()  # whatever alembic's last read (or a failed revision) left open
                conn.execute(text(f"SELECT pg_advisory_unlock({PG_LOCK})"))
                conn.commit()
            except SQLAlchemyError as exc:  # a lost connection: the server released the lock with it
                log.warning("could not release the migration lock: %s", str(exc).splitlines()[0])


def _run(db: Database, conn: Connection, target: str) -> None:
    cfg = alembic_config(db)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, target)


def _take_lock(conn: Connection) -> None:
    waited_since = time.monotonic()
    said = 0.0
    while True:
        got = conn.execute(text(f"SELECT pg_try_advisory_lock({PG_LOCK})")).scalar()
        conn.commit()  # no transaction (and no snapshot) held between tries
        if got:
            return
        waited = time.monotonic() - waited_since
        if waited - said >= 30:
            log.warning("waiting %.0f s for another process's schema migration", waited)
            said = waited
        time.sleep(LOCK_POLL_S)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@dataclass
class Status:
    current: str | None  # None: not under Alembic yet (new, or made by a release before it)
    head: str
    legacy_version: int | None  # meta.schema_version, the pre-Alembic counter

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(db: Database) -> Status:
    with db.read() as conn:
        legacy = None
        if inspect(conn).has_table("meta"):
            row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
            legacy = int(row[0]) if row else None
        return Status(current=_current(conn), head=head(), legacy_version=legacy)


def upgrade_sql(dialect_name: str, start: str | None, target: str = "head") -> str:
    """The SQL of the revisions after `start` (None: from nothing) up to `target`, for a DBA to read or run."""
    cfg = alembic_config()
    cfg.attributes["dialect_name"] = dialect_name
    out = io.StringIO()
    cfg.output_buffer = out
    command.upgrade(cfg, f"{start}:{target}" if start else target, sql=True)
    return out.getvalue()
