"""Fixtures for the sync tests: each server test runs on SQLite and on PostgreSQL.

PostgreSQL comes from CHECKPOINT_TEST_PG (default postgresql://postgres@127.0.0.1/test),
with a fresh schema per test. Without it those tests skip with the reason,
unless CHECKPOINT_REQUIRE_POSTGRES=1 (CI), where a missing server fails them.
"""

from __future__ import annotations

import os

import pytest

from tests.sync.sync_harness import PgSchema, ServerThread, postgres_problem

_PG_PROBLEM: list = []


def _pg_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(postgres_problem())
    return _PG_PROBLEM[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    problem = _pg_problem()
    if problem:
        if os.environ.get("CHECKPOINT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"CHECKPOINT_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    schema = PgSchema()
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture
def server(db_url):
    srv = ServerThread(db_url).start()
    try:
        yield srv
    finally:
        srv.stop()
