"""`checkpoint registry ...` commands, run through the real CLI entry point (SQLite)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gateway.cli import main
from gateway.commands.registry_cmd import DEFAULT_DB_URL as CLI_DEFAULT
from sync.server import auth, open_database
from sync.server.db import DEFAULT_DB_URL


@pytest.fixture(autouse=True)
def operator(monkeypatch):
    # Changing commands need a name for the audit log (--by or this).
    monkeypatch.setenv("CHECKPOINT_OPERATOR", "测试员")


@pytest.fixture
def db_arg(tmp_path):
    return ["--db", f"sqlite:///{tmp_path / 'reg.db'}"]


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_default_db_is_the_servers(tmp_path):
    assert CLI_DEFAULT == DEFAULT_DB_URL


def test_gate_add_prints_the_token_once_and_stores_only_its_hash(capsys, db_arg):
    code, out, err = run(capsys, "registry", "gate", "add", *db_arg, "--site", "site-1", "east-1")
    assert code == 0
    token = out.strip()
    assert len(token) >= 40 and "\n" not in token
    assert "only this once" in err
    db = open_database(db_arg[1])
    assert auth.gate_for_token(db, token).name == "east-1"
    from sqlalchemy import select

    from sync.server.schema import gates

    with db.read() as conn:
        stored = conn.execute(select(gates.c.token_hash)).scalar()
    assert stored == auth.hash_token(token) and token not in stored
    # The same name again is refused with one line; after a revoke it is allowed.
    code, _, err = run(capsys, "registry", "gate", "add", *db_arg, "--site", "site-1", "east-1")
    assert code == 1 and "already has an active gate" in err
    assert run(capsys, "registry", "gate", "revoke", *db_arg, "--site", "site-1", "east-1")[0] == 0
    assert auth.gate_for_token(db, token) is None
    assert run(capsys, "registry", "gate", "add", *db_arg, "--site", "site-1", "east-1")[0] == 0
    db.dispose()


def test_staff_seed_commands(capsys, db_arg, tmp_path):
    from gateway.passes import generate_keypair

    code, out, _ = run(capsys, "registry", "person", "add", *db_arg, "--site", "site-1", "--name", "张三",
                       "--unit", "3-2-101", "R-1")
    assert code == 0 and json.loads(out)["name"] == "张三"
    code, out, _ = run(capsys, "registry", "person", "observe", *db_arg, "--site", "site-1", "--until",
                       "2026-02-14", "R-1")
    assert json.loads(out)["observation_until"] == "2026-02-14"
    code, _, err = run(capsys, "registry", "person", "observe", *db_arg, "--site", "site-1", "--until",
                       "2026-02-14", "nobody")
    assert code == 1 and "no person" in err
    assert run(capsys, "registry", "revoke-pass", *db_arg, "--site", "site-1", "PS-1")[0] == 0
    _, public = generate_keypair()
    (tmp_path / "issuer.pub").write_bytes(public)
    code, out, _ = run(capsys, "registry", "key", "add", *db_arg, "--site", "*", "--pub", str(tmp_path / "issuer.pub"))
    assert code == 0 and len(json.loads(out)["kid"]) >= 8
    (tmp_path / "bad.pub").write_text("not a key")
    code, _, err = run(capsys, "registry", "key", "add", *db_arg, "--site", "site-1", "--pub", str(tmp_path / "bad.pub"))
    assert code == 1 and "bad.pub" in err
    (tmp_path / "policy.json").write_text(json.dumps({"version": 3, "enforcement": "soft"}))
    assert run(capsys, "registry", "policy", *db_arg, "--site", "site-1", "--file", str(tmp_path / "policy.json"))[0] == 0
    code, _, err = run(capsys, "registry", "policy", *db_arg, "--site", "site-1", "--file", str(tmp_path / "policy.json"))
    assert code == 1 and "not newer" in err


def test_daily_report_formats_and_zero_report(capsys, db_arg, tmp_path):
    assert run(capsys, "registry", "site", "add", *db_arg, "site-1")[0] == 0
    base = ["registry", "report", "daily", *db_arg, "--site", "site-1", "--date", "2026-02-01"]
    code, out, _ = run(capsys, *base)
    report = json.loads(out)
    assert code == 0 and report["zero_report"] is True and report["totals"]["decisions"] == 0
    code, out, _ = run(capsys, *base, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out.lstrip("\ufeff"))))
    assert ["零报告", "是"] in rows
    out_file = tmp_path / "day.xlsx"
    assert run(capsys, *base, "--format", "xlsx", "--out", str(out_file))[0] == 0
    from openpyxl import load_workbook

    sheet = load_workbook(out_file).worksheets[0]
    assert [c.value for c in sheet[4]][:2] == ["零报告", "是"]
    with pytest.raises(SystemExit) as exit_:
        main(["registry", "report", "daily", *db_arg, "--site", "s", "--date", "2026-13-01"])
    assert exit_.value.code == 2 and "not a date" in capsys.readouterr().err


def test_a_bad_database_url_is_one_line(capsys):
    code, _, err = run(capsys, "registry", "gate", "list", "--db", "mysql://nope")
    assert code == 2 and "unsupported database URL" in err
