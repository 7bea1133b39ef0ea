"""`checkpoint registry person add --returnee | import | returnee | passes` on a real database."""

from __future__ import annotations

import json
from datetime import date, timedelta

from gateway.cli import main as cli_main
from sync.server import open_database, people
from sync.server.schema import migrate
from tests.registry.conftest import PASSPHRASE
from tests.registry.ledgers import resident_rows, xlsx_bytes


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_person_add_returnee_starts_14_days_of_observation(tmp_path, capsys):
    db = ["--db", f"sqlite:///{tmp_path / 'r.db'}"]
    code, out, _ = _run(capsys, "registry", "person", "add", *db, "--site", "site-1", "--name", "张三",
                        "--returnee", "--arrival", "2020-02-10", "--by", "王主任", "p-001")
    assert code == 0 and json.loads(out)["observation_until"] == "2020-02-24"
    code, out, _ = _run(capsys, "registry", "person", "add", *db, "--site", "site-1", "--name", "李四",
                        "--returnee", "--by", "王主任", "p-002")
    assert json.loads(out)["observation_until"] == (people.today_in_china() + timedelta(days=14)).isoformat()


def test_import_previews_refuses_bad_files_and_commits_once(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    rows = resident_rows(30)
    rows[4][5] = "不详"
    ledger = tmp_path / "台账.xlsx"
    ledger.write_bytes(xlsx_bytes(rows))
    base = ["registry", "import", "--db", url, "--site", "site-1", "--by", "王主任", str(ledger)]
    code, out, err = _run(capsys, *base, "--commit")
    assert code == 1 and "row 7: phone" in err and json.loads(out)["committed"] is False
    rows[4][5] = "13800000000"
    ledger.write_bytes(xlsx_bytes(rows))
    code, out, _ = _run(capsys, *base, "--commit")
    assert code == 0 and json.loads(out)["new"] == 30
    code, out, _ = _run(capsys, *base, "--commit")
    assert json.loads(out)["same"] == 30 and json.loads(out)["new"] == 0


def test_passes_for_a_building_with_a_pdf_then_revoked_by_person(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    db = open_database(url)
    migrate(db)
    ids = [people.save_one(db, "site-1", {"name": n, "building": "3号楼", "unit": "1", "room": str(101 + i)},
                           by="t").person_id for i, n in enumerate(["甲", "乙"])]
    db.dispose()
    passphrase = tmp_path / "passphrase"
    passphrase.write_bytes(PASSPHRASE + b"\n")
    code, out, _ = _run(capsys, "registry", "passes", "issue", "--db", url, "--site", "site-1", "--building", "3号楼",
                        "--days", "30", "--pdf", str(tmp_path / "s.pdf"), "--issuer-passphrase-file", str(passphrase),
                        "--by", "王主任")
    result = json.loads(out)
    assert code == 0 and result["issued"] == 2 and (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")
    code, out, _ = _run(capsys, "registry", "passes", "revoke", "--db", url, "--site", "site-1", "--reason", "丢失",
                        "--by", "王主任", ids[0])
    assert json.loads(out)["revoked"] == [p["pass_id"] for p in result["passes"] if p["person_id"] == ids[0]]
    monkeypatch.delenv("CHECKPOINT_ISSUER_PASSPHRASE", raising=False)
    code, _, err = _run(capsys, "registry", "passes", "issue", "--db", url, "--site", "site-1", "--all",
                        "--by", "王主任")
    assert code != 0 and "passphrase" in err


def test_returnee_command(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    db = open_database(url)
    migrate(db)
    pid = people.save_one(db, "site-1", {"name": "丙"}, by="t").person_id
    db.dispose()
    code, out, _ = _run(capsys, "registry", "returnee", "--db", url, "--site", "site-1", "--arrival", "2020-02-01",
                        "--origin", "湖北", "--by", "王主任", pid)
    assert code == 0 and json.loads(out)["observation_until"] == str(date(2020, 2, 15))


def test_person_observe_changing_a_set_end_date_needs_a_reason(tmp_path, capsys):
    db = ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--site", "site-1", "--by", "王主任"]
    _run(capsys, "registry", "person", "add", *db, "--name", "张三", "--returnee", "--arrival", "2020-02-10", "p-001")
    code, _, err = _run(capsys, "registry", "person", "observe", *db, "--until", "2020-02-20", "p-001")
    assert code != 0 and "needs a reason" in err
    code, out, _ = _run(capsys, "registry", "person", "observe", *db, "--until", "2020-02-20", "--reason",
                        "街道通知提前解除", "p-001")
    assert code == 0 and json.loads(out)["observation_until"] == "2020-02-20"
