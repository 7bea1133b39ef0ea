"""Alembic migrations of the registry (issue 14), on SQLite and PostgreSQL:
new database, adoption of a database made before Alembic, an older legacy
version, concurrent starts, the CLI, and the index the second revision adds."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from gateway.cli import main
from sync.server import auth, open_database, schema
from sync.server.schema import (
    LEGACY_VERSION,
    MIGRATIONS,
    _v_reg_staff_accounts,
    events,
    meta,
    migrate,
    registry_state,
    staff,
    staff_accounts,
)
from sync.server.schema_upgrade import PG_LOCK, head, status, upgrade
from tests.sync.legacy_schema import make_legacy_database

BASELINE = "0001_baseline"
NOW = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def _event_row(gate_id: int, stream: str, seq: int, site: str = "site-1") -> dict:
    return dict(stream_id=stream, seq=seq, site_id=site, gate_id=gate_id, kind="decision", event_time_ns=seq,
                time_source="kiosk", wall_time_ns=seq, boot_id="b", mono_ns=seq, clock_synced=True,
                decision="admit", flagged=False, body_c=36.5, received_at=NOW, payload="{}")


def _index_names(db, table: str) -> set[str]:
    with db.read() as conn:
        return {i["name"] for i in inspect(conn).get_indexes(table)}


def _instance_id(db) -> str:
    with db.read() as conn:
        return conn.execute(select(meta.c.value).where(meta.c.key == "instance_id")).scalar_one()


def test_a_new_database_goes_to_head(db_url):
    db = open_database(db_url)
    try:
        assert migrate(db) == head() == "0004_import_progress"
        st = status(db)
        assert (st.current, st.legacy_version, st.up_to_date) == (head(), LEGACY_VERSION, True)
        assert {"ix_events_gate_received", "ix_events_gate_kind_time"} <= _index_names(db, "events")
        assert migrate(db) == head()  # nothing left to do
        auth.add_gate(db, "site-1", "east-1")  # today's code works on it
    finally:
        db.dispose()


def test_a_database_of_the_last_release_is_adopted_with_its_data(db_url):
    db = open_database(db_url)
    try:
        make_legacy_database(db)  # schema_version 6, no alembic_version
        gate, _ = auth.add_gate(db, "site-1", "east-1")
        _, _ = auth.add_staff(db, "wang")
        with db.write() as conn:
            conn.execute(events.insert(), [_event_row(gate.id, "s-1", n) for n in range(1, 101)])
        instance = _instance_id(db)
        assert status(db).current is None

        assert migrate(db) == head()

        # Nothing ran again: a second instance id or staff account would show it
        # (and _v1 would have failed on the existing tables).
        assert _instance_id(db) == instance
        with db.read() as conn:
            assert conn.execute(select(func.count()).select_from(events)).scalar() == 100
            assert conn.execute(select(func.count()).select_from(staff_accounts)).scalar() == 1
            assert conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == "6"
        assert {"ix_events_gate_received", "ix_events_gate_kind_time"} <= _index_names(db, "events")
    finally:
        db.dispose()


def test_an_older_legacy_database_runs_the_remaining_steps_first(db_url):
    db = open_database(db_url)
    try:
        upto = MIGRATIONS.index(_v_reg_staff_accounts)  # 3: no staff accounts, no people table yet
        make_legacy_database(db, upto)
        with db.write() as conn:
            conn.execute(staff.insert().values(name="wang", token_hash="h" * 64, created_at=NOW))
            conn.execute(registry_state.insert().values(
                site_id="site-1", entity="person", entity_id="p-1", change_seq=1,
                payload=json.dumps({"name": "张三", "unit": "3-201", "returnee": True})))
        assert migrate(db) == head()
        with db.read() as conn:
            # _v_reg_staff_accounts made the old all-powerful token an administrator,
            # _v_reg_people_registry copied the person.
            assert conn.execute(select(staff_accounts.c.role)).scalars().all() == ["admin"]
            assert conn.execute(text("SELECT name, unit FROM people")).all() == [("张三", "3-201")]
            assert conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == "6"
        assert {"enrol_codes", "people", "outbox", "alembic_version"} <= set(inspect(db.engine).get_table_names())
    finally:
        db.dispose()


def test_the_legacy_list_is_frozen(db_url, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", [*MIGRATIONS, lambda db, conn: None])
    db = open_database(db_url)
    try:
        with pytest.raises(RuntimeError, match="Alembic revision"):
            migrate(db)
    finally:
        db.dispose()


@pytest.mark.parametrize("query, index", [
    # how far behind a gate is (boards.gate_board): had no index led by gate_id
    (select(func.min(events.c.event_time_ns)).where(events.c.gate_id == 7, events.c.received_at >= NOW),
     "gate_received"),
    # a gate's newest staffing event (gate_rules.staffing_of; the health column asks the same way)
    (select(events.c.payload).where(events.c.site_id == "site-1", events.c.gate_id == 7,
                                    events.c.kind.in_(("ledger.shifts", "unstaffed", "staffed")))
     .order_by(events.c.event_time_ns.desc(), events.c.seq.desc()).limit(1), "gate_kind_time"),
])
def test_the_gates_board_queries_use_the_new_indexes(db_url, query, index):
    db = open_database(db_url)
    try:
        # A registry of the last release with a few weeks of events, then upgraded.
        upgrade(db, BASELINE)
        with db.write() as conn:
            conn.execute(events.insert(), [_event_row(n % 20, f"s-{n % 20}", n) for n in range(1, 4001)])
        migrate(db)
        with db.read() as conn:
            sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
            if db.is_postgres:
                conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table is scanned otherwise
                plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
            else:
                plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert index in plan, plan
    finally:
        db.dispose()


# --- PostgreSQL only ---------------------------------------------------------------------


@pytest.fixture
def pg_url(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    return db_url


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_two_replicas_starting_together_migrate_once(pg_url, caplog):
    # Hold the migration lock so both start while it is taken, then let go.
    holder = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    results, errors = {}, []

    def start(name):
        db = open_database(pg_url, pool_size=2)
        try:
            results[name] = migrate(db)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            db.dispose()

    caplog.set_level(logging.INFO, logger="alembic.runtime.migration")
    with holder.connect() as conn:
        conn.execute(text(f"SELECT pg_advisory_lock({PG_LOCK})"))
        conn.commit()
        threads = [threading.Thread(target=start, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        time.sleep(0.6)
        assert results == {} and all(t.is_alive() for t in threads), "they must wait for the lock"
        conn.execute(text(f"SELECT pg_advisory_unlock({PG_LOCK})"))
        conn.commit()
        for t in threads:
            t.join(60)
    holder.dispose()
    assert errors == []
    assert results == {"a": head(), "b": head()}
    ran = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Running upgrade")]
    assert len(ran) == 4, ran  # baseline, 0002, 0003 and 0004, by one of them only


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_the_index_is_built_per_partition_and_survives_an_interrupted_run(pg_url):
    db = open_database(pg_url)
    try:
        assert upgrade(db, BASELINE) == BASELINE
        schema.ensure_partitions(db)
        # An earlier run stopped after making the parent's index; then a new
        # month's partition was made (it gets an index of its own at once).
        with db.write() as conn:
            conn.execute(text("CREATE INDEX ix_events_gate_received ON ONLY events (gate_id, received_at)"))
            conn.execute(text("CREATE TABLE events_y2099m01 PARTITION OF events "
                              "FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"))
        assert migrate(db) == head()
        with db.read() as conn:
            parent_valid = conn.execute(text(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_events_gate_received'::regclass")).scalar()
            partitions = conn.execute(text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")).scalar()
            attached = conn.execute(text(
                "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
                "WHERE i.inhparent = 'ix_events_gate_received'::regclass AND x.indisvalid")).scalar()
        assert parent_valid is True
        assert attached == partitions >= 4  # default, this month and two ahead, 2099-01
    finally:
        db.dispose()


# --- the command line --------------------------------------------------------------------


def _run(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(["registry", "migrate", *argv]) == 0
    return capsys.readouterr().out


def test_cli_status_sql_and_upgrade(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert json.loads(_run(capsys, "--db", url, "--status")) == {
        "current": None, "head": head(), "legacy_schema_version": None, "up_to_date": False}
    assert not (tmp_path / "registry.db").exists()  # looking creates nothing
    sql = _run(capsys, "--db", url, "--sql")
    assert "no revision -> 0004_import_progress (sqlite)" in sql
    assert "CREATE INDEX IF NOT EXISTS ix_events_gate_received ON events (gate_id, received_at);" in sql
    assert "CREATE INDEX IF NOT EXISTS ix_events_gate_kind_time ON events (gate_id, kind, event_time_ns);" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001_baseline')" in sql

    assert json.loads(_run(capsys, "--db", url)) == {"from": None, "to": head()}
    assert json.loads(_run(capsys, "--db", url, "--status"))["up_to_date"] is True
    assert "up to date: nothing to run" in _run(capsys, "--db", url, "--sql")


def test_cli_status_of_a_database_of_the_last_release(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    db = open_database(url)
    make_legacy_database(db)
    db.dispose()
    assert json.loads(_run(capsys, "--db", url, "--status")) == {
        "current": None, "head": head(), "legacy_schema_version": 6, "up_to_date": False}
    assert "the baseline only stamps it" in _run(capsys, "--db", url, "--sql")


def test_cli_refuses_a_bad_url(capsys):
    assert main(["registry", "migrate", "--db", "mysql://x/y", "--status"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_cli_sql_runs_in_psql_on_a_database_at_the_baseline(pg_url, capsys):
    """The --sql output is what a DBA would run: psql builds the index per partition."""
    if not shutil.which("psql"):
        pytest.skip("psql is not installed")
    db = open_database(pg_url)
    try:
        upgrade(db, BASELINE)
        schema.ensure_partitions(db)
        sql = _run(capsys, "--db", pg_url, "--sql")
        assert f"{BASELINE} -> 0004_import_progress (postgresql)" in sql and "\\gexec" in sql
        done = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", pg_url],
                              input=sql, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert status(db).current == head()
        with db.read() as conn:
            assert conn.execute(text(
                "SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid IN "
                "('ix_events_gate_received'::regclass, 'ix_events_gate_kind_time'::regclass)")).scalar()
    finally:
        db.dispose()


# --- a legacy-style step as a revision (how `_v_street_lists` and the like move over) -------


def _v_test_notes(db, conn) -> None:
    """A step written the old way: creates a table, different DDL per engine."""
    kind = "BIGSERIAL" if db.is_postgres else "INTEGER"
    conn.execute(text(f"CREATE TABLE test_notes (id {kind} PRIMARY KEY, note TEXT NOT NULL)"))


def test_a_legacy_style_step_becomes_a_revision_with_run_step(db_url, tmp_path, monkeypatch):
    from sync.server import schema_upgrade

    scripts = tmp_path / "migrations"
    shutil.copytree(schema_upgrade.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0003_test_notes.py").write_text(
        '"""test notes"""\n'
        "from sync.server.migrations import run_step\n"
        "from tests.sync.test_schema_migrations import _v_test_notes\n\n"
        'revision = "0003_test_notes"\n'
        f'down_revision = "{head()}"\n\n\n'
        "def upgrade() -> None:\n"
        "    run_step(_v_test_notes)\n", encoding="utf-8")
    monkeypatch.setattr(schema_upgrade, "SCRIPTS", scripts)
    db = open_database(db_url)
    try:
        assert migrate(db) == "0003_test_notes"
        with db.write() as conn:
            conn.execute(text("INSERT INTO test_notes (note) VALUES ('ok')"))
        assert migrate(db) == "0003_test_notes"  # ran once
    finally:
        db.dispose()
