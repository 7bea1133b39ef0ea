"""Baseline: the schema of the last release without Alembic (legacy version 6).

Runs the legacy steps (sync.server.schema.MIGRATIONS) the database has not
had yet: all six on a new database, the rest on one made by an older
release, none on one at version 6 - which is so adopted (stamped at this
revision) without anything being run again. `meta.schema_version` is still
written, so a replica of the previous release that starts meanwhile finds
nothing to do.
"""

from alembic import op

from sync.server.migrations import comment, database, offline

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from sync.server.schema import run_legacy_steps

    if offline():
        comment("0001_baseline: the legacy schema (steps 1-6) is made by Python code; create or adopt the "
                "database with `checkpoint registry migrate --db URL`, then --sql shows what follows")
        return
    run_legacy_steps(database(), op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be undone: restore a backup instead")
