"""`checkpoint registry staff|site ...` and the audit log's names, through the
real CLI entry point (SQLite)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from gateway.cli import main
from sync.server import audit, auth, open_database, sessions
from sync.server.schema import audit as audit_table


@pytest.fixture
def db_arg(tmp_path, monkeypatch):
    monkeypatch.delenv("CHECKPOINT_OPERATOR", raising=False)
    return ["--db", f"sqlite:///{tmp_path / 'reg.db'}"]


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_changes_need_a_name_and_record_it(capsys, db_arg, monkeypatch):
    code, _, err = run(capsys, "registry", "person", "add", *db_arg, "--site", "site-1", "--name", "张三", "R-1")
    assert code == 2 and "--by NAME" in err
    assert run(capsys, "registry", "person", "add", *db_arg, "--site", "site-1", "--name", "张三", "--by", "王主任",
               "R-1")[0] == 0
    monkeypatch.setenv("CHECKPOINT_OPERATOR", "李干事")
    assert run(capsys, "registry", "person", "observe", *db_arg, "--site", "site-1", "--until", "2026-02-14",
               "R-1")[0] == 0
    assert run(capsys, "registry", "gate", "add", *db_arg, "--site", "site-1", "east-1")[0] == 0
    db = open_database(db_arg[1])
    rows = audit.entries(db)
    db.dispose()
    assert [(r["actor"], r["action"], r["entity_id"]) for r in rows] == [
        ("李干事", "gate.add", "east-1"), ("李干事", "person.upsert", "R-1"), ("王主任", "person.upsert", "R-1")]
    observe = rows[1]
    assert observe["before"]["observation_until"] is None and observe["after"]["observation_until"] == "2026-02-14"
    assert rows[2]["before"] is None and rows[2]["after"]["name"] == "张三"


def test_staff_accounts_from_the_cli(capsys, db_arg, tmp_path):
    by = ["--by", "王主任"]
    (tmp_path / "pw").write_text("a good password\n")
    code, out, err = run(capsys, "registry", "staff", "add", *db_arg, *by, "--role", "admin", "--site", "*",
                         "--password-file", str(tmp_path / "pw"), "boss")
    assert code == 0 and "can log in" in err and len(out.strip()) >= 40
    token = out.strip()
    code, _, err = run(capsys, "registry", "staff", "add", *db_arg, *by, "--role", "street_officer", "--site",
                       "site-1", "jie")
    assert code == 1 and "street offices" in err
    code, _, err = run(capsys, "registry", "staff", "add", *db_arg, *by, "--role", "worker", "wk")
    assert code == 1 and "one or more sites" in err
    code, _, err = run(capsys, "registry", "staff", "add", *db_arg, *by, "--role", "admin", "--site", "*", "boss")
    assert code == 1 and "exists" in err
    # No terminal and no password file: a token-only account.
    assert run(capsys, "registry", "staff", "add", *db_arg, *by, "--role", "street_officer", "--office", "东城街道",
               "jie")[0] == 0
    code, out, _ = run(capsys, "registry", "staff", "list", *db_arg)
    accounts = {a["name"]: a for a in map(json.loads, out.splitlines())}
    assert accounts["boss"]["sites"] == ["*"] and accounts["boss"]["has_password"] is True
    assert accounts["jie"]["offices"] == ["东城街道"] and accounts["jie"]["has_password"] is False
    assert "hash" not in out and token not in out

    db = open_database(db_arg[1])
    session_id, _ = sessions.log_in(db, "boss", "a good password")
    assert sessions.session_for(db, session_id).staff.role == "admin"
    (tmp_path / "pw2").write_text("another password\n")
    assert run(capsys, "registry", "staff", "passwd", *db_arg, *by, "--password-file", str(tmp_path / "pw2"),
               "boss")[0] == 0
    assert sessions.session_for(db, session_id) is None  # a new password ends the old sessions
    with pytest.raises(sessions.LoginRefused):
        sessions.log_in(db, "boss", "a good password")
    assert sessions.log_in(db, "boss", "another password")[1].staff.name == "boss"
    assert run(capsys, "registry", "staff", "revoke", *db_arg, *by, "boss")[0] == 0
    assert auth.staff_for_token(db, token) is None
    with db.read() as conn:
        actions = conn.execute(select(audit_table.c.action, audit_table.c.actor)).all()
        stored = " ".join(str(v) for row in conn.execute(select(audit_table)) for v in row)
    db.dispose()
    assert ("staff.add", "王主任") in actions and ("staff.passwd", "王主任") in actions
    assert ("staff.revoke", "王主任") in actions
    assert "good password" not in stored and "argon2" not in stored  # no secrets in the audit log


def test_street_officers_read_the_sites_of_their_office(capsys, db_arg):
    by = ["--by", "王主任"]
    for site, office in (("site-1", "东城街道"), ("site-2", "东城街道"), ("site-3", "西城街道")):
        assert run(capsys, "registry", "site", "add", *db_arg, *by, site, "--office", office)[0] == 0
    db = open_database(db_arg[1])
    _, token = auth.add_staff(db, "jie", role="street_officer", offices=["东城街道"], by="t")
    member = auth.staff_for_token(db, token)
    assert member.sites == {"site-1", "site-2"}
    assert member.can_read("site-1") and not member.can_read("site-3") and not member.can_read("*")
    assert not member.can_change("site-1")
    # A community added to the office later is readable at once.
    assert run(capsys, "registry", "site", "add", *db_arg, *by, "site-4", "--office", "东城街道")[0] == 0
    assert auth.staff_for_token(db, token).can_read("site-4")
    code, out, _ = run(capsys, "registry", "site", "list", *db_arg)
    assert [json.loads(line)["site_id"] for line in out.splitlines()] == ["site-1", "site-2", "site-3", "site-4"]
    db.dispose()
