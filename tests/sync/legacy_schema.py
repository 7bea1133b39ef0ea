"""A registry database as the releases before Alembic made it (for the migration tests).

`make_legacy_database` is the old `schema.migrate` (issue 14 replaced it),
stopped after `version` legacy steps: the same steps, the same advisory lock,
the same `meta.schema_version` counter and no alembic_version table.
"""

from __future__ import annotations

from sqlalchemy import select, text

from sync.server.db import Database
from sync.server.schema import MIGRATIONS, ensure_partitions, meta


def make_legacy_database(db: Database, version: int = len(MIGRATIONS)) -> None:
    with db.write() as conn:
        if db.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(73190001)"))
        if not db.engine.dialect.has_table(conn, "meta"):
            done = 0
        else:
            row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
            done = int(row[0]) if row else 0
        for number, step in enumerate(MIGRATIONS[done:version], start=done + 1):
            step(db, conn)
            conn.execute(meta.delete().where(meta.c.key == "schema_version"))
            conn.execute(meta.insert().values(key="schema_version", value=str(number)))
    if db.is_postgres:
        ensure_partitions(db)
