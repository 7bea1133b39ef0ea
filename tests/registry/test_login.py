"""Log-in: argon2 passwords, sessions in the database, throttling that
survives a restart, CSRF on the log-in form and every page POST."""

from __future__ import annotations

import warnings

from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sync.server import create_app, sessions
from sync.server.schema import staff_accounts, staff_sessions
from tests.registry.conftest import PASSWORD, csrf_of, log_in


def test_login_sets_an_httponly_lax_cookie_and_stores_only_its_hash(registry_app):
    db, app, _ = registry_app
    with TestClient(app) as client:
        response = log_in(client, "worker-a")
        assert response.status_code == 303 and response.headers["location"] == "/registry/"
        cookie = response.headers["set-cookie"]
        assert "ck_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        session_id = client.cookies["ck_session"]
        with db.read() as conn:
            stored = conn.execute(select(staff_sessions.c.id_hash)).scalars().all()
            hashes = conn.execute(select(staff_accounts.c.password_hash)).scalars().all()
        assert session_id not in stored and sessions._hash(session_id) in stored
        assert all(h.startswith("$argon2id$") for h in hashes) and PASSWORD not in "".join(hashes)
        page = client.get("/registry/sites/site-a/gates")
        assert page.status_code == 200 and "worker-a" in page.text and "社区工作人员" in page.text
        # Log out: the session row goes, the cookie no longer opens pages.
        assert client.post("/registry/logout", data={"csrf_token": csrf_of(page.text)},
                           follow_redirects=False).status_code == 303
        client.cookies.set("ck_session", session_id)
        assert client.get("/registry/sites/site-a/gates", follow_redirects=False).status_code == 303
        with db.read() as conn:
            assert conn.execute(select(staff_sessions)).all() == []


def test_a_wrong_password_is_refused_then_throttled_even_after_a_restart(registry_app):
    db, app, _ = registry_app
    with TestClient(app) as client:
        for _ in range(sessions.FREE_FAILURES):
            response = log_in(client, "worker-a", "wrong password")
            assert response.status_code == 401 and "用户名或密码错误" in response.text
        response = log_in(client, "worker-a")  # the right password, too late
        assert response.status_code == 429 and "尝试次数过多" in response.text
        assert int(response.headers["Retry-After"]) >= sessions.BACKOFF_BASE_S - 1
        assert "ck_session" not in client.cookies
    # A new app on the same database (a restart) still refuses.
    with TestClient(create_app(db=db)) as client:
        assert log_in(client, "worker-a").status_code == 429
        # Other accounts are not locked out by one account's lock.
        assert log_in(client, "worker-b-unknown", "x" * 10).status_code == 401
        assert log_in(client, "inspector-a").status_code == 303


def test_the_lock_grows_and_lifts(registry_app):
    db, _app, _ = registry_app
    from datetime import datetime, timedelta, timezone

    import pytest

    now = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)
    for i in range(sessions.FREE_FAILURES):
        with pytest.raises(sessions.LoginRefused) as refused:
            sessions.log_in(db, "worker-a", "nope-nope", now=now + timedelta(seconds=i))
        assert not refused.value.throttled
    with pytest.raises(sessions.LoginRefused) as refused:
        sessions.log_in(db, "worker-a", PASSWORD, now=now + timedelta(seconds=10))
    assert refused.value.throttled
    # After the lock a wrong guess doubles it; the right password then works once it lifts.
    later = now + timedelta(seconds=sessions.BACKOFF_BASE_S + 5)
    with pytest.raises(sessions.LoginRefused):
        sessions.log_in(db, "worker-a", "nope-nope", now=later)
    with pytest.raises(sessions.LoginRefused) as refused:
        sessions.log_in(db, "worker-a", PASSWORD, now=later + timedelta(seconds=sessions.BACKOFF_BASE_S + 1))
    assert refused.value.throttled
    session_id, session = sessions.log_in(db, "worker-a", PASSWORD, now=later + timedelta(seconds=2 * sessions.BACKOFF_BASE_S + 2))
    assert session.staff.name == "worker-a" and session_id


def test_the_global_limit_stops_guessing_across_accounts(registry_app, monkeypatch):
    db, _app, _ = registry_app
    import pytest

    monkeypatch.setattr(sessions, "GLOBAL_MAX_FAILURES", 3)
    for i in range(3):
        with pytest.raises(sessions.LoginRefused) as refused:
            sessions.log_in(db, f"guess-{i}", "whatever1")
        assert not refused.value.throttled
    with pytest.raises(sessions.LoginRefused) as refused:
        sessions.log_in(db, "admin-all", PASSWORD)
    assert refused.value.throttled


def test_the_login_form_needs_its_csrf_token(registry_app):
    _db, app, _ = registry_app
    with TestClient(app) as client:
        client.get("/registry/login")
        response = client.post("/registry/login", data={"name": "worker-a", "password": PASSWORD, "csrf_token": "x"},
                               follow_redirects=False)
        assert response.status_code == 303 and "problem=expired" in response.headers["location"]
        assert "ck_session" not in client.cookies


def test_pages_redirect_to_login_and_back(registry_app):
    _db, app, _ = registry_app
    with TestClient(app) as client:
        response = client.get("/registry/sites/site-a/gates", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/registry/login?next=/registry/sites/site-a/gates"
        form = client.get(response.headers["location"])
        response = client.post("/registry/login", data={"name": "worker-a", "password": PASSWORD,
                                                        "csrf_token": csrf_of(form.text),
                                                        "next": "/registry/sites/site-a/gates"},
                               follow_redirects=False)
        assert response.headers["location"] == "/registry/sites/site-a/gates"
        # An outside address in `next` is ignored (no open redirect).
        form = client.get("/registry/login")
        response = client.post("/registry/login", data={"name": "worker-a", "password": PASSWORD,
                                                        "csrf_token": csrf_of(form.text), "next": "//evil.example/"},
                               follow_redirects=False)
        assert response.headers["location"] == "/registry/"


def test_english_is_a_cookie_away(login_as):
    client = login_as("worker-a")
    assert "闸机" in client.get("/registry/sites/site-a/gates").text
    client.get("/registry/lang?to=en&next=/registry/sites/site-a/gates")
    page = client.get("/registry/sites/site-a/gates").text
    assert "Gates" in page and "Community worker" in page


def test_parallel_guesses_cannot_slip_past_the_count(registry_app):
    from concurrent.futures import ThreadPoolExecutor

    db, _app, _ = registry_app

    def guess(i):
        try:
            sessions.log_in(db, "worker-a", f"guess number {i}")
        except sessions.LoginRefused as refused:
            return "throttled" if refused.throttled else "wrong"
        return "in"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(guess, range(16)))
    # Attempts are counted before the password is checked, so only the free
    # ones were verified at all, however many arrived together.
    assert outcomes.count("wrong") == sessions.FREE_FAILURES
    assert outcomes.count("throttled") == 16 - sessions.FREE_FAILURES
