"""Enrolling a gate with a one-time code (staff API or CLI -> `checkpoint enrol`),
against a real server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat

import httpx
import pytest
from sqlalchemy import update

from gateway.cli import main as cli_main
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import SyncClient
from sync.server import auth
from sync.server.enrolment import create_code
from sync.server.schema import enrol_codes
from tests.sync.sync_harness import decision, server_rows


def kiosk_config(directory, server_url, gate="east-1", site="site-1"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gate.toml"
    path.write_text(f'[gate]\nid = "{gate}"\nsite = "{site}"\n\n[journal]\npath = "journal.db"\n\n'
                    f'[sync]\nserver = "{server_url}"\ntoken_file = "gate.token"\n', encoding="utf-8")
    return path


def staff_code(server, gate="east-1", site="site-1", **body):
    _, staff_token = auth.add_staff(server.db, "wang")
    r = httpx.post(f"{server.url}/api/v1/staff/sites/{site}/enrolment-codes", json={"gate": gate, **body},
                   headers={"Authorization": f"Bearer {staff_token}"})
    assert r.status_code == 200, r.text
    return r.json()["code"]


def enrol(server, code, gate="east-1"):
    return httpx.post(f"{server.url}/api/v1/enrol", json={"gate": gate},
                      headers={"Authorization": f"Bearer {code}"})


def test_a_kiosk_enrols_with_a_staff_code_and_then_syncs(server, tmp_path, capsys):
    code = staff_code(server)
    config = kiosk_config(tmp_path / "kiosk", server.url)
    assert cli_main(["enrol", "--config", str(config), "--code", code.lower()]) == 0
    token_file = tmp_path / "kiosk" / "gate.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    journal.append(decision(1))
    client = SyncClient(journal, settings)
    assert client.sync_once()["pending"] == 0
    client.close()
    stored = sorted(seq for seq, _ in server_rows(server.db_url, journal.stream_id))
    assert stored == list(range(1, journal.last_seq() + 1))
    journal.close()
    # Running the installer again keeps the token and does not spend another code.
    assert cli_main(["enrol", "--config", str(config), "--code", "unused"]) == 0
    assert "keeping it" in capsys.readouterr().err


def test_a_code_works_once(server):
    code = staff_code(server)
    assert enrol(server, code).status_code == 200
    again = enrol(server, code)
    assert again.status_code == 401
    assert again.json()["error"] == "unauthorized"


def test_an_expired_code_is_refused(server):
    code, _ = create_code(server.db, "site-1", "east-1", by="test", minutes=1)
    with server.db.write() as conn:
        conn.execute(update(enrol_codes).values(expires_at=enrol_codes.c.created_at))
    assert enrol(server, code).status_code == 401


def test_a_code_for_another_gate_is_refused_and_not_spent(server):
    code = staff_code(server, gate="east-1")
    assert enrol(server, code, gate="west-2").status_code == 401
    assert enrol(server, code, gate="east-1").status_code == 200


def test_every_enrolment_endpoint_authenticates(server):
    assert httpx.post(f"{server.url}/api/v1/enrol", json={"gate": "east-1"}).status_code == 401
    assert enrol(server, "ABCD-EFGH-JKMN").status_code == 401
    url = f"{server.url}/api/v1/staff/sites/site-1/enrolment-codes"
    assert httpx.post(url, json={"gate": "east-1"}).status_code == 401
    _, gate_token = auth.add_gate(server.db, "site-1", "north-1")
    # A gate's token is not a staff token.
    assert httpx.post(url, json={"gate": "east-1"},
                      headers={"Authorization": f"Bearer {gate_token}"}).status_code == 401


@pytest.mark.parametrize("role, site, allowed", [
    ("worker", "site-1", True),
    ("worker", "site-2", False),   # another community's gate
    ("inspector", "site-1", False),  # read-only
    ("guard_supervisor", "site-1", False),
])
def test_enrolment_codes_follow_the_staff_scope(server, role, site, allowed):
    _, token = auth.add_staff(server.db, f"{role}-1", role=role, sites=["site-1"])
    r = httpx.post(f"{server.url}/api/v1/staff/sites/{site}/enrolment-codes", json={"gate": "east-9"},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == (200 if allowed else 403), r.text


def test_re_enrolling_revokes_the_old_token_and_keeps_the_stream(server, tmp_path):
    first = enrol(server, staff_code(server)).json()["token"]
    config = kiosk_config(tmp_path / "kiosk", server.url)
    (tmp_path / "kiosk" / "gate.token").write_text(first + "\n", encoding="utf-8")
    settings = load_config(config)
    journal = Journal.open(settings.journal.path)
    journal.append(decision(1))
    client = SyncClient(journal, settings)
    client.sync_once()
    client.close()
    # The SD card is replaced: the journal moves to the new Pi, which is enrolled afresh.
    _, staff_token = auth.add_staff(server.db, "li")
    r = httpx.post(f"{server.url}/api/v1/staff/sites/site-1/enrolment-codes", json={"gate": "east-1"},
                   headers={"Authorization": f"Bearer {staff_token}"})
    assert cli_main(["enrol", "--config", str(config), "--code", r.json()["code"], "--force"]) == 0
    assert auth.gate_for_token(server.db, first) is None
    journal.append(decision(2))
    client = SyncClient(journal, load_config(config))
    assert client.sync_once()["pending"] == 0
    client.close()
    stored = sorted(seq for seq, _ in server_rows(server.db_url, journal.stream_id))
    assert stored == list(range(1, journal.last_seq() + 1))
    journal.close()


def test_the_registry_cli_prints_a_code_that_enrols(server, capsys):
    assert cli_main(["registry", "gate", "code", "--db", server.db_url, "--site", "site-1", "east-1", "--by", "王主任"]) == 0
    code = capsys.readouterr().out.strip()
    reply = enrol(server, code)
    assert reply.status_code == 200
    assert reply.json()["site"] == "site-1"


@pytest.mark.parametrize("minutes", [0, 1441])
def test_code_lifetimes_are_bounded(server, minutes):
    _, staff_token = auth.add_staff(server.db, "wang")
    r = httpx.post(f"{server.url}/api/v1/staff/sites/site-1/enrolment-codes",
                   json={"gate": "east-1", "minutes": minutes}, headers={"Authorization": f"Bearer {staff_token}"})
    assert r.status_code == 422
