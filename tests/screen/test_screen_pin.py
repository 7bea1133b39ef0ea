"""The screen's PIN holds (issue 11): failures are counted for the whole
kiosk with a growing wait (many addresses gain nothing), every login gets its
own expiring session, and the PIN must be 6+ digits off localhost."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.screen.app import AUTH_COOKIE


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def client_from(app, host):
    return TestClient(app, client=(host, 40000), follow_redirects=False)


def test_guessing_from_many_addresses_is_locked_out_for_all(kiosk_app):
    guard = kiosk_app.screen.state.pin_guard
    guard.now = clock = FakeTime()
    outcomes = []
    for i in range(40):  # one guess from each of 40 addresses
        with client_from(kiosk_app.screen, f"10.0.{i}.9") as lan:
            outcomes.append(lan.post("/login", data={"pin": f"{i:06d}"}).headers["location"])
    assert outcomes.count("/login?error=bad") <= 5  # then every address is told to wait
    assert outcomes[-1] == "/login?error=locked"
    with client_from(kiosk_app.screen, "10.9.9.9") as lan:  # the right PIN, while locked out
        assert lan.post("/login", data={"pin": "246810"}).headers["location"] == "/login?error=locked"
        clock.t += guard.wait_s() + 0.1  # after the wait it works again...
        assert lan.post("/login", data={"pin": "246810"}).headers["location"] == "/"
    first_wait = None
    for i in range(6):  # ...and the wait grows with every failure past the allowance
        clock.t += 10_000
        with client_from(kiosk_app.screen, f"10.1.{i}.9") as lan:
            lan.post("/login", data={"pin": "000000"})
        first_wait = first_wait or guard.wait_s()
    assert guard.wait_s() > first_wait


def test_each_login_gets_its_own_session_that_expires(kiosk_app):
    guard = kiosk_app.screen.state.pin_guard
    guard.now = clock = FakeTime()
    with client_from(kiosk_app.screen, "10.0.0.7") as a, client_from(kiosk_app.screen, "10.0.0.8") as b:
        assert a.post("/login", data={"pin": "246810"}).status_code == 303
        assert b.post("/login", data={"pin": "246810"}).status_code == 303
        assert a.cookies[AUTH_COOKIE] != b.cookies[AUTH_COOKIE]
        assert a.get("/api/state").status_code == 200
        forged = a.cookies[AUTH_COOKIE][:-2] + "00"
        with client_from(kiosk_app.screen, "10.0.0.9") as c:
            c.cookies.set(AUTH_COOKIE, forged)
            assert c.get("/api/state").status_code == 401
        clock.t += guard.session_s + 1
        assert a.get("/api/state").status_code == 401  # expired: log in again
        assert b.get("/api/state").status_code == 401


def test_a_short_pin_is_refused_when_the_screen_listens_off_localhost(tmp_path):
    from gateway.config import ConfigError, load_config

    base = '[gate]\nid = "g1"\nsite = "s1"\n[hardware]\nkind = "fake"\n[screen]\n'
    (tmp_path / "local.toml").write_text(base + 'host = "127.0.0.1"\npin = "1234"\n', encoding="utf-8")
    load_config(tmp_path / "local.toml")  # on localhost a short sign-in PIN is the guard's business
    (tmp_path / "lan.toml").write_text(base + 'host = "0.0.0.0"\npin = "1234"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="6"):
        load_config(tmp_path / "lan.toml")
    (tmp_path / "ok.toml").write_text(base + 'host = "0.0.0.0"\npin = "90417263"\n', encoding="utf-8")
    assert load_config(tmp_path / "ok.toml").screen.pin == "90417263"


def test_the_example_config_listens_on_localhost_only():
    from gateway.config import load_config

    assert load_config("deploy/gate.example.toml").screen.host == "127.0.0.1"
