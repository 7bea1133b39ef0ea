"""Passes issued by the server: recorded, verifiable at the gate, revoked by person."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from gateway.passes import load_public_keys, verify
from sync.server import issuing, people, registry
from sync.server.schema import issuer_keys, registry_state
from tests.registry.conftest import PASSPHRASE


def _keys(db, tmp_path):
    pem = issuing.public_key_pem(db, "site-1")
    path = tmp_path / "issuer.pub"
    path.write_text(pem, encoding="ascii")
    return load_public_keys([path])


def _person(db, name, room="101"):
    return people.save_one(db, "site-1", {"name": name, "building": "1", "unit": "1", "room": room},
                           by="clerk").person_id


def test_issued_passes_verify_and_are_recorded_by_person(db, tmp_path):
    ids = [_person(db, n, str(100 + i)) for i, n in enumerate(["甲", "乙", "丙"])]
    result = issuing.issue(db, "site-1", ids, days=30, passphrase=PASSPHRASE, by="clerk")
    assert [r["person_id"] for r in result.issued] == ids and result.refused == []
    keys = _keys(db, tmp_path)
    for row in result.issued:
        verdict = verify(row["text"], keys, datetime.now(timezone.utc))
        assert verdict.valid and (verdict.person_id, verdict.pass_id) == (row["person_id"], row["pass_id"])
        assert verdict.valid_to - verdict.valid_from == timedelta(days=30)
    assert [p["pass_id"] for p in issuing.passes_of(db, "site-1", ids[1])] == [result.issued[1]["pass_id"]]
    assert {r["pass_id"] for r in issuing.batch(db, "site-1", result.batch_id)} == {r["pass_id"] for r in result.issued}


def test_the_issuing_key_is_encrypted_and_its_public_half_goes_to_the_gates(db):
    issuing.issue(db, "site-1", [_person(db, "甲")], days=1, passphrase=PASSPHRASE, by="clerk")
    with db.read() as conn:
        row = conn.execute(select(issuer_keys)).one()
        pushed = conn.execute(select(registry_state.c.payload).where(
            registry_state.c.entity == "key", registry_state.c.entity_id == row.kid)).scalar()
    assert "ENCRYPTED PRIVATE KEY" in row.private_pem_encrypted
    assert json.loads(pushed)["public_pem"] == row.public_pem
    with pytest.raises(issuing.IssuingError, match="does not open"):
        issuing.issue(db, "site-1", [_person(db, "乙", "102")], days=1, passphrase=b"wrong passphrase", by="x")
    with pytest.raises(issuing.IssuingError, match="without an issuer passphrase"):
        issuing.issue(db, "site-1", [_person(db, "丙", "103")], days=1, passphrase=None, by="x")


def test_a_lost_pass_is_revoked_by_finding_the_person(db):
    pid = _person(db, "丁")
    first = issuing.issue(db, "site-1", [pid], days=30, passphrase=PASSPHRASE, by="clerk").issued[0]
    new = issuing.reissue(db, "site-1", pid, days=30, passphrase=PASSPHRASE, by="clerk", reason="lost").issued[0]
    state = {p["pass_id"]: p for p in issuing.passes_of(db, "site-1", pid)}
    assert state[first["pass_id"]]["revoked_at"] is not None and state[first["pass_id"]]["revoke_reason"] == "lost"
    assert state[new["pass_id"]]["revoked_at"] is None
    changes, _, _ = registry.feed_page(db, "site-1", 0, 100)
    assert [c["entity_id"] for c in changes if c["entity"] == "revocation"] == [first["pass_id"]]
    assert issuing.revoke_person(db, "site-1", pid, reason="moved away", by="clerk") == [new["pass_id"]]
    assert issuing.revoke_person(db, "site-1", pid, reason="again", by="clerk") == []


def test_moved_out_people_get_no_pass_and_renewal_covers_the_rest(db):
    a, b = _person(db, "戊", "201"), _person(db, "己", "202")
    issuing.issue(db, "site-1", [a, b], days=3, passphrase=PASSPHRASE, by="clerk")
    people.move_out(db, "site-1", b, by="clerk")
    assert issuing.issue(db, "site-1", [b], days=3, passphrase=PASSPHRASE, by="c").refused == [(b, "moved out")]
    renewed = issuing.renew(db, "site-1", expiring_before=datetime.now(timezone.utc) + timedelta(days=7), days=30,
                            passphrase=PASSPHRASE, by="clerk")
    assert [r["person_id"] for r in renewed.issued] == [a]
    assert renewed.refused == [(b, "moved out")]
    old_end = min(p["valid_to"] for p in issuing.passes_of(db, "site-1", a))
    assert renewed.issued[0]["valid_from"] == old_end  # the new pass starts where the old one ends
