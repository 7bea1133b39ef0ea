"""Fixtures for the registry pages: an app on SQLite and PostgreSQL (the sync
tests' db_url), staff accounts of every role, and a logged-in client."""

from __future__ import annotations

import re
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sync.server import auth, create_app, open_database
from sync.server.sites import add_site
from tests.sync.conftest import db_url  # noqa: F401  (the fixture, re-exported)

PASSWORD = "correct horse 1"
# name -> (role, sites, offices)
ACCOUNTS = {
    "admin-all": ("admin", ["*"], []),
    "admin-a": ("admin", ["site-a"], []),
    "worker-a": ("worker", ["site-a"], []),
    "guard-a": ("guard_supervisor", ["site-a"], []),
    "inspector-a": ("inspector", ["site-a"], []),
    "officer-east": ("street_officer", [], ["east-office"]),
}


@pytest.fixture
def registry_app(db_url):  # noqa: F811
    """(db, app, tokens by account name). Sites a and b are under the east
    street office, site c under the west one."""
    db = open_database(db_url)
    app = create_app(db=db)
    add_site(db, "site-a", name="阳光小区", street_office="east-office", by="setup")
    add_site(db, "site-b", name="和平小区", street_office="east-office", by="setup")
    add_site(db, "site-c", name="西城小区", street_office="west-office", by="setup")
    tokens = {}
    for name, (role, sites, offices) in ACCOUNTS.items():
        tokens[name] = auth.add_staff(db, name, role=role, sites=sites, offices=offices, password=PASSWORD,
                                      by="setup")[1]
    try:
        yield db, app, tokens
    finally:
        db.dispose()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD):
    form = client.get("/registry/login")
    return client.post("/registry/login", data={"name": name, "password": password, "csrf_token": csrf_of(form.text),
                                                "next": "/registry/"}, follow_redirects=False)


@pytest.fixture
def login_as(registry_app):
    """login_as(name) -> a TestClient with that account's session."""
    _db, app, _tokens = registry_app
    clients = []

    def make(name: str) -> TestClient:
        client = TestClient(app)
        clients.append(client)
        response = log_in(client, name)
        assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.close()


# --- reg-people: residents, passes, imports ---------------------------------------------

from sync.server.schema import migrate  # noqa: E402
from tests.sync.conftest import server  # noqa: E402,F401  (a ServerThread on db_url)

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


# --- a registry on loopback for the browser tests (one per module) ------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry server on loopback (SQLite) holding the issuing passphrase; one clerk account."""
    from tests.sync.sync_harness import ServerThread

    url = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}"
    running = ServerThread(url, issuer_passphrase=PASSPHRASE).start()
    add_site(running.db, "site-1", name="幸福里社区", by="setup")
    auth.add_staff(running.db, "王主任", role="worker", sites=["site-1"], password=PASSWORD, by="setup")
    yield running
    running.stop()


@pytest.fixture
def clerk(browser, registry):
    """The clerk 王主任 logged in to the pages in Chinese, in the shared Chromium."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(registry.url + "/registry/login")
    page.fill("input[name=name]", "王主任")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#who")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
