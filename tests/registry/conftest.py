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


@pytest.fixture
def sim_settings(tmp_path):
    """The simulator's kiosk config (fake hardware), as the loop tests use it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
    from kiosk_fakes import SIM_CONFIG

    from gateway.config import load_config

    path = tmp_path / "gate.toml"
    path.write_text(SIM_CONFIG, encoding="utf-8")
    return load_config(path)
