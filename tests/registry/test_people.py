"""Residents and returnees in the server's registry (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select

from sync.server import people, registry
from sync.server.schema import registry_state


def gate_copy(db, site, person_id):
    with db.read() as conn:
        row = conn.execute(select(registry_state.c.payload).where(
            registry_state.c.site_id == site, registry_state.c.entity == "person",
            registry_state.c.entity_id == person_id)).first()
    return json.loads(row[0]) if row else None


def test_a_saved_person_reaches_the_feed_with_the_fields_the_gate_reads(db):
    saved = people.save_one(db, "site-1", {"name": "张三", "building": "3", "unit": "2", "room": "101",
                                          "phone": "13800138000", "kind": "tenant"}, by="王主任")
    assert saved.created and saved.person_id.startswith("p")
    payload = gate_copy(db, "site-1", saved.person_id)
    assert payload == {"name": "张三", "unit": "3-2-101", "site": "site-1", "status": "active",
                       "observation_until": None, "risk": None, "returnee": False, "kind": "tenant"}
    assert "phone" not in payload  # the gates do not need it


def test_saving_the_same_values_again_writes_nothing(db):
    fields = {"name": "李四", "building": "1", "unit": "1", "room": "202"}
    first = people.save_one(db, "site-1", fields, by="clerk")
    head = registry.head(db, "site-1")
    again = people.save_one(db, "site-1", fields, by="clerk")
    assert (again.person_id, again.created, again.changed) == (first.person_id, False, False)
    assert registry.head(db, "site-1") == head


def test_a_new_renter_joins_the_landlords_household(db):
    landlord = people.save_one(db, "site-1", {"name": "房东", "building": "5", "unit": "1", "room": "301"}, by="c")
    renter = people.save_one(db, "site-1", {"name": "租客", "kind": "tenant", "landlord_id": landlord.person_id,
                                            "moved_in": date(2020, 2, 10)}, by="c")
    assert people.address(renter.row) == "5-1-301"
    assert {p["name"] for p in people.household(db, "site-1", renter.person_id)} == {"房东", "租客"}
    with pytest.raises(people.PersonError, match="landlord_id"):
        people.save_one(db, "site-1", {"name": "x", "landlord_id": "nobody"}, by="c")


def test_a_returnee_is_observed_for_14_days_from_the_arrival_date(db):
    p = people.save_one(db, "site-1", {"name": "赵六", "building": "2", "unit": "1", "room": "101"}, by="c")
    saved = people.register_returnee(db, "site-1", p.person_id, arrival_date=date(2020, 2, 14), origin="湖北武汉",
                                     contact="13900000000", by="c")
    assert saved.row["observation_until"] == date(2020, 2, 28)
    assert gate_copy(db, "site-1", p.person_id)["observation_until"] == "2020-02-28"
    assert gate_copy(db, "site-1", p.person_id)["returnee"] is True


def test_changing_the_end_of_observation_needs_a_reason(db):
    p = people.save_one(db, "site-1", {"name": "钱七", "returnee": True, "arrival_date": date(2020, 2, 1)}, by="c")
    assert p.row["observation_until"] == date(2020, 2, 15)
    with pytest.raises(people.PersonError, match="reason"):
        people.set_observation_end(db, "site-1", p.person_id, date(2020, 2, 10), reason="  ", by="c")
    saved = people.set_observation_end(db, "site-1", p.person_id, date(2020, 2, 10), reason="街道通知提前解除",
                                       by="c")
    assert saved.row["observation_until"] == date(2020, 2, 10)


def test_search_filters_by_building_name_phone_kind_and_observation(db):
    for name, building, phone, kind in [("王一", "1", "13000000001", "resident"), ("王二", "2", "13000000002", "tenant"),
                                        ("李三", "1", "13100000003", "staff")]:
        people.save_one(db, "site-1", {"name": name, "building": building, "phone": phone, "kind": kind}, by="c")
    obs = people.save_one(db, "site-1", {"name": "周四", "building": "3", "returnee": True,
                                        "arrival_date": date(2020, 2, 1)}, by="c")
    names = lambda **f: sorted(p["name"] for p in people.search(db, "site-1", people.Filters(**f),
                                                                today=date(2020, 2, 5))[0])
    assert names(building="1") == ["李三", "王一"]
    assert names(name="王") == ["王一", "王二"]
    assert names(phone="0000002") == ["王二"]
    assert names(kind="staff") == ["李三"]
    assert names(observation="under") == ["周四"]
    people.move_out(db, "site-1", obs.person_id, by="c")
    assert names(observation="under") == []
    assert gate_copy(db, "site-1", obs.person_id)["status"] == "moved_out"
    assert people.search(db, "site-2", people.Filters())[1] == 0
