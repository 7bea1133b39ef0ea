"""Alembic revisions of the registry database (issue 14).

`sync.server.schema.migrate(db)` is the one entry point: it runs `alembic
upgrade head` with the scripts in this package (no alembic.ini), one process
at a time. `checkpoint registry migrate` does the same by hand, shows the
current and head revision (`--status`) or prints the SQL (`--sql`).

Revisions must be safe while older replicas keep serving (expand/contract):
- a release may add tables, nullable columns (or columns with a default) and
  indexes; on PostgreSQL an index on a table that takes writes is built with
  `create_index_online` (CREATE INDEX CONCURRENTLY), never a plain CREATE INDEX;
- it never drops, renames or retypes what the previous release reads or
  writes: that is a later release's revision, once every replica runs code
  that no longer uses it.

A step written in the old style - `def _v_name(db, conn)` as in
`schema.MIGRATIONS` - becomes a revision in two lines (copy
`versions/0002_gate_board_indexes.py` for the header, with `down_revision` set
to the current head):

    from sync.server.migrations import run_step
    from sync.server.schema import _v_name

    def upgrade() -> None:
        run_step(_v_name)

The legacy list stays frozen at the six steps the baseline revision runs.
"""

from __future__ import annotations

from typing import Callable, Sequence

from alembic import op
from sqlalchemy import text

# Passed in by sync.server.upgrade through Config.attributes.
DATABASE = "database"


def database():
    """The `sync.server.db.Database` being migrated (None when printing SQL)."""
    return op.get_context().config.attributes.get(DATABASE)


def offline() -> bool:
    return op.get_context().as_sql


def comment(line: str) -> None:
    """A `-- line` in the `--sql` output (and nothing when running)."""
    if offline():
        op.get_context().impl.static_output(f"-- {line}")


def run_step(step: Callable) -> None:
    """Run an old-style migration step `step(db, conn)` on this revision's connection."""
    if offline():
        comment(f"{step.__name__}: runs Python code; apply it with `checkpoint registry migrate --db URL`")
        return
    step(database(), op.get_bind())


def create_index_online(name: str, table: str, columns: Sequence[str]) -> None:
    """CREATE INDEX without blocking writers for the build.

    SQLite: a plain CREATE INDEX in the migration's transaction (one writer at
    a time there anyway). PostgreSQL: CREATE INDEX CONCURRENTLY, which cannot
    run in a transaction. A partitioned table (events) cannot be indexed
    concurrently at all, so the index is made on the parent only (invalid,
    instant), built concurrently on each partition and attached; the parent's
    index becomes valid when every partition has one, and partitions made
    later get it by themselves. A build that failed half-way leaves an
    invalid index, which the next run drops and builds again.
    """
    cols = ", ".join(columns)
    if op.get_context().dialect.name != "postgresql":
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})")
        return
    suffix = name.removeprefix(f"ix_{table}_")
    with op.get_context().autocommit_block():
        if offline():
            _index_sql_for_psql(name, table, cols, suffix)
            return
        partitioned = op.get_bind().execute(text(
            "SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = to_regclass(:t)"), {"t": table}).scalar()
        if not partitioned:
            _build_concurrently(name, table, cols)
            return
        # Waits for running uploads to finish and holds new ones for as long as
        # it waits; give up (the migration fails and can be run again) rather
        # than queue every upload behind a long transaction.
        op.execute("SET lock_timeout = '10s'")
        try:
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON ONLY {table} ({cols})")
        finally:
            op.execute("RESET lock_timeout")
        # A partition made after the parent index (or by an earlier, interrupted
        # run) has its own index attached already.
        for partition in sorted(set(_partitions(table)) - _indexed_partitions(name)):
            child = f"{partition}_{suffix}"[:63]
            _build_concurrently(child, partition, cols)
            op.execute(f"ALTER INDEX {name} ATTACH PARTITION {child}")


def _build_concurrently(name: str, table: str, cols: str) -> None:
    valid = op.get_bind().execute(text(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:n)"), {"n": name}).scalar()
    if valid is False:  # left by a build that was interrupted
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({cols})")


def _partitions(table: str) -> list[str]:
    rows = op.get_bind().execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:t) ORDER BY c.relname"), {"t": table}).all()
    return [r[0] for r in rows]


def _indexed_partitions(parent_index: str) -> set[str]:
    """The partitions whose index is attached to `parent_index`."""
    rows = op.get_bind().execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
        "JOIN pg_class c ON c.oid = x.indrelid WHERE i.inhparent = to_regclass(:p)"), {"p": parent_index}).all()
    return {r[0] for r in rows}


def _index_sql_for_psql(name: str, table: str, cols: str, suffix: str) -> None:
    """The --sql form: the partitions are only known in the database, so psql
    writes the per-partition statements itself (\\gexec)."""
    out = op.get_context().impl.static_output
    child = f"left(c.relname || '_{suffix}', 63)"
    partitions = f"FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{table}'::regclass"
    comment(f"{name}: for psql; if {table} is not partitioned, run instead: "
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({cols});")
    out(f"CREATE INDEX IF NOT EXISTS {name} ON ONLY {table} ({cols});")
    not_attached = (f"AND NOT EXISTS (SELECT 1 FROM pg_inherits a JOIN pg_index x ON x.indexrelid = a.inhrelid "
                    f"WHERE a.inhparent = '{name}'::regclass AND x.indrelid = c.oid)")
    out(f"SELECT format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %I ({cols})', {child}, c.relname) "
        f"{partitions} {not_attached} \\gexec")
    out(f"SELECT format('ALTER INDEX {name} ATTACH PARTITION %I', {child}) {partitions} {not_attached} \\gexec")


def drop_index_online(name: str) -> None:
    """DROP INDEX without blocking readers and writers (on a partitioned
    table's index PostgreSQL cannot drop concurrently; that drop takes a
    moment's lock on the table)."""
    if op.get_context().dialect.name != "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {name}")
        return
    with op.get_context().autocommit_block():
        partitioned = False if offline() else bool(op.get_bind().execute(text(
            "SELECT c.relkind = 'I' FROM pg_class c WHERE c.oid = to_regclass(:n)"), {"n": name}).scalar())
        op.execute(f"DROP INDEX {'' if partitioned else 'CONCURRENTLY '}IF EXISTS {name}")
