"""Fixtures for the registry's staff side: each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sync.server import open_database
from sync.server.schema import migrate
from tests.sync.conftest import db_url, server  # noqa: F401  (the same databases as the sync tests)

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def db(db_url):  # noqa: F811
    database = open_database(db_url)
    migrate(database)
    yield database
    database.dispose()
