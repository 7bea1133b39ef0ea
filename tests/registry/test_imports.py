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
