"""Importing ledgers: preview with per-cell errors, nothing written, idempotent commit."""

from __future__ import annotations

from datetime import date

import pytest

from sync.server import imports, people, registry
from tests.registry.ledgers import HEADERS, csv_bytes, resident_rows, xlsx_bytes


def _preview(db, filename, content, kind="residents"):
    table = imports.parse(filename, content)
    return table, imports.preview(db, "site-1", table, kind, imports.auto_mapping(table.headers, kind))


def test_the_usual_ledger_headers_are_mapped_by_themselves():
    table = imports.parse("台账.xlsx", xlsx_bytes(resident_rows(3)))
    assert table.headers == HEADERS and table.first_row_number == 3  # a title row above the table
    mapping = imports.auto_mapping(table.headers, "residents")
    assert [mapping.get(i) for i in range(len(HEADERS))] == [
        None, "name", "building", "unit", "room", "phone", "kind", "returnee", "observation_until"]


def test_bad_rows_are_shown_per_cell_and_nothing_is_written(db):
    rows = resident_rows(20)
    rows[3][5] = "电话待补"  # phone
    rows[7][8] = "2月30日"  # date
    rows[7][7] = "是"
    rows[10][6] = "外卖员"  # kind
    rows[12][1] = ""  # name
    rows[15] = list(rows[14])  # the same person twice
    table, result = _preview(db, "ledger.xlsx", xlsx_bytes(rows))
    bad = {r.number: (sorted(r.cells), r.errors) for r in result.rows if not r.ok}
    assert sorted(bad) == [6, 10, 13, 15, 18]
    assert bad[6][0] == ["phone"] and bad[10][0] == ["observation_until"] and bad[13][0] == ["kind"]
    assert bad[15][0] == ["name"] and "row 17" in bad[18][1][0]
    assert not result.can_commit
    with pytest.raises(imports.NotCommittable):
        imports.commit(db, "site-1", table, "residents", result.mapping, by="clerk")
    assert people.search(db, "site-1")[1] == 0 and registry.head(db, "site-1") == 0


def test_commit_writes_every_row_and_reimporting_changes_nothing(db):
    content = xlsx_bytes(resident_rows(120))
    table, result = _preview(db, "ledger.xlsx", content)
    assert result.counts == {"new": 120, "update": 0, "same": 0, "error": 0}
    seen = []
    counts = imports.commit(db, "site-1", table, "residents", result.mapping, by="clerk",
                            progress=lambda done, total: seen.append((done, total)))
    assert counts == {"new": 120, "update": 0, "same": 0} and seen[-1] == (120, 120) and seen == sorted(seen)
    assert people.search(db, "site-1", limit=500)[1] == 120
    returnee = people.search(db, "site-1", people.Filters(observation="returnee"))[0]
    assert {r["observation_until"] for r in returnee} == {date(2020, 2, 20)}
    head = registry.head(db, "site-1")
    table, again = _preview(db, "ledger.xlsx", content)
    assert again.counts == {"new": 0, "update": 0, "same": 120, "error": 0}
    assert imports.commit(db, "site-1", table, "residents", again.mapping, by="clerk") == \
        {"new": 0, "update": 0, "same": 120}
    assert registry.head(db, "site-1") == head


def test_a_changed_phone_is_an_update_and_gbk_csv_reads(db):
    rows = resident_rows(5)
    table, result = _preview(db, "ledger.csv", csv_bytes(rows, encoding="gb18030"))
    imports.commit(db, "site-1", table, "residents", result.mapping, by="clerk")
    rows[2][5] = "13999999999"
    table, result = _preview(db, "ledger.csv", csv_bytes(rows))
    assert [(r.action, r.changes) for r in result.rows if r.action != "same"] == [("update", ["phone"])]


def test_a_street_office_list_is_matched_to_residents(db):
    table, result = _preview(db, "ledger.xlsx", xlsx_bytes(resident_rows(10)))
    imports.commit(db, "site-1", table, "residents", result.mapping, by="clerk")
    residents = resident_rows(10)
    listed = [["1", residents[0][1], residents[0][5], "2020-02-12", "湖北孝感"],
              ["2", "不存在", "", "2020-02-12", "湖北"],
              ["3", residents[4][1], "", "2020-02-31", "河南"]]
    headers = ["序号", "姓名", "联系电话", "返京日期", "来源地"]
    table, result = _preview(db, "返京名单.csv", csv_bytes(listed, headers), kind="returnees")
    assert [r.action for r in result.rows] == ["update", "error", "error"]
    assert "no such resident" in result.rows[1].errors[0] and "arrival_date" in result.rows[2].cells
    listed = listed[:1]
    table, result = _preview(db, "返京名单.csv", csv_bytes(listed, headers), kind="returnees")
    assert imports.commit(db, "site-1", table, "returnees", result.mapping, by="street") == \
        {"new": 0, "update": 1, "same": 0}
    person = people.get_person(db, "site-1", result.rows[0].person_id)
    assert (person["arrival_date"], person["observation_until"], person["origin"]) == \
        (date(2020, 2, 12), date(2020, 2, 26), "湖北孝感")
    table, result = _preview(db, "返京名单.csv", csv_bytes(listed, headers), kind="returnees")
    assert result.counts["same"] == 1


def test_import_progress_is_kept_in_the_database_for_every_replica(db, db_url):
    """Another replica (or the server after a restart) reads the progress from the database, and
    does not take a running import for an abandoned one (failed before: progress lived in one
    process's memory, and any other process reset a running import to preview)."""
    from datetime import datetime, timedelta, timezone

    from sync.server import open_database
    from sync.server.schema import import_jobs

    job_id = imports.create_job(db, "site-1", "residents", "ledger.xlsx", xlsx_bytes(resident_rows(600)), by="clerk")
    assert imports.claim_job(db, "site-1", job_id)
    other = open_database(db_url)  # a second replica on the same database
    try:
        assert imports.progress_of(other, "site-1", job_id) == {"status": "committing", "done": 0, "total": 0,
                                                                 "running": True}
        seen = []

        def report(done, total):
            imports.report_progress(db, "site-1", job_id, done, total)
            if db.is_postgres:  # SQLite's one writer holds the file for the whole import: one process only
                seen.append(imports.progress_of(other, "site-1", job_id))

        imports.run_job(db, "site-1", imports.get_job(db, "site-1", job_id), by="clerk", progress=report)
        if db.is_postgres:
            assert [(p["done"], p["total"], p["running"]) for p in seen] == [
                (250, 600, True), (500, 600, True), (600, 600, True)]
        done = imports.progress_of(other, "site-1", job_id)
        assert (done["status"], done["done"], done["total"], done["running"]) == ("committed", 600, 600, False)

        # A claim whose server stopped reporting is abandoned, whichever replica looks.
        second = imports.create_job(db, "site-1", "residents", "again.xlsx", xlsx_bytes(resident_rows(3)), by="clerk")
        assert imports.claim_job(db, "site-1", second)
        if db.is_postgres:
            with db.write() as conn:
                conn.execute(import_jobs.update().where(import_jobs.c.id == second).values(
                    progress_at=datetime.now(timezone.utc) - imports.PROGRESS_STALE - timedelta(seconds=1)))
        else:  # one process on SQLite: a restart empties its memory
            imports._local_progress.clear()
        assert imports.progress_of(other, "site-1", second)["running"] is False
    finally:
        other.dispose()


def test_the_migration_adds_the_progress_columns_to_an_older_import_jobs_table(db):
    from sqlalchemy import inspect, text

    from sync.server.schema import _IMPORT_PROGRESS_COLUMNS, _v_tidy_import_progress

    with db.write() as conn:  # an older registry: import_jobs without the progress columns
        for name in _IMPORT_PROGRESS_COLUMNS:
            conn.execute(text(f"ALTER TABLE import_jobs DROP COLUMN {name}"))
        _v_tidy_import_progress(db, conn)
    with db.read() as conn:
        assert set(_IMPORT_PROGRESS_COLUMNS) <= {c["name"] for c in inspect(conn).get_columns("import_jobs")}
