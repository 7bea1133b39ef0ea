"""Who may do what, and how bad input is refused: cleanly, never with a 500."""

from __future__ import annotations

import gzip
import json
import warnings

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sync.protocol import MAX_BODY_BYTES
from sync.server import auth, create_app, open_database
from tests.sync.test_sync_server import ev


@pytest.fixture
def two_sites(db_url):
    db = open_database(db_url)
    app = create_app(db=db)
    _, token_a = auth.add_gate(db, "site-a", "gate-a")
    _, token_b = auth.add_gate(db, "site-b", "gate-b")
    with TestClient(app) as client:
        yield db, client, {"Authorization": f"Bearer {token_a}"}, {"Authorization": f"Bearer {token_b}"}
    db.dispose()


def batch(first=1, n=2):
    return {"first_seq": first, "events": [ev(first + i) for i in range(n)]}


def test_no_wrong_or_revoked_token_is_refused(two_sites):
    db, client, a, _b = two_sites
    url = "/api/v1/streams/s-a/events"
    assert client.post(url, json=batch()).status_code == 401
    assert client.post(url, json=batch(), headers={"Authorization": "Bearer " + "x" * 43}).status_code == 401
    assert client.post(url, json=batch(), headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
    assert client.get("/api/v1/sites/site-a/registry").status_code == 401
    r = client.post(url, json=batch(), headers=a)
    assert r.status_code == 200
    auth.revoke_gate(db, "site-a", "gate-a")
    r = client.post(url, json=batch(3), headers=a)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "x-server-time" in r.headers


def test_a_gate_cannot_upload_as_another_or_read_another_site(two_sites):
    _db, client, a, b = two_sites
    assert client.post("/api/v1/streams/s-a/events", json=batch(), headers=a).status_code == 200
    # Gate B tries to write into gate A's stream.
    r = client.post("/api/v1/streams/s-a/events", json=batch(3), headers=b)
    assert r.status_code == 403
    assert client.get("/api/v1/sites/site-a/registry", headers=b).status_code == 403
    assert client.get("/api/v1/sites/site-a/registry/snapshot", headers=b).status_code == 403
    assert client.get("/api/v1/sites/site-b/registry", headers=b).status_code == 200
    # Gate tokens are not staff tokens.
    assert client.get("/api/v1/staff/sites/site-a/alerts", headers=a).status_code == 401


def test_oversized_bodies_are_413(two_sites):
    _db, client, a, _b = two_sites
    url = "/api/v1/streams/s-a/events"
    huge = b'{"first_seq": 1, "events": [' + b" " * (MAX_BODY_BYTES + 10) + b"]}"
    r = client.post(url, content=huge, headers={**a, "Content-Type": "application/json"})
    assert r.status_code == 413
    # Chunked, without a Content-Length.
    r = client.post(url, content=iter([huge[:1000], huge[1000:]]), headers={**a, "Content-Type": "application/json"})
    assert r.status_code == 413
    # A gzip bomb: small on the wire, huge inflated.
    bomb = gzip.compress(b'{"first_seq": 1, "events": [' + b" " * (8 * MAX_BODY_BYTES) + b"]}")
    assert len(bomb) < MAX_BODY_BYTES
    r = client.post(url, content=bomb, headers={**a, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413


@pytest.mark.parametrize("body, why", [
    (b"{not json", "malformed JSON"),
    (b"[]", "not an object"),
    (json.dumps({"first_seq": 0, "events": [{}]}).encode(), "first_seq below 1"),
    (json.dumps({"first_seq": 1, "events": []}).encode(), "empty batch"),
    (json.dumps({"first_seq": 1, "events": [{"seq": i} for i in range(1, 502)]}).encode(), "over 500 events"),
    (json.dumps({"first_seq": 1, "events": [{"seq": 1}, {"seq": 3}]}).encode(), "not contiguous"),
    (json.dumps({"first_seq": "one", "events": [{}]}).encode(), "wrong type"),
    (json.dumps({"first_seq": 1, "events": [1, 2]}).encode(), "events not objects"),
    (json.dumps({"first_seq": 1, "events": [{}], "extra": 1}).encode(), "unknown envelope field"),
])
def test_malformed_bodies_are_422(two_sites, body, why):
    _db, client, a, _b = two_sites
    r = client.post("/api/v1/streams/s-a/events", content=body, headers={**a, "Content-Type": "application/json"})
    assert r.status_code == 422, why
    assert r.json()["error"] in ("invalid", "not_contiguous")


def test_broken_gzip_is_400_not_500(two_sites):
    _db, client, a, _b = two_sites
    r = client.post("/api/v1/streams/s-a/events", content=b"\x1f\x8b garbage",
                    headers={**a, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400


# --- schemathesis over the OpenAPI spec ---------------------------------------------------


def _fuzz_app():
    # Built at import: schemathesis parametrizes tests from the schema at collection.
    import tempfile

    directory = tempfile.mkdtemp(prefix="sync-fuzz-")
    db = open_database(f"sqlite:///{directory}/fuzz.db")
    app = create_app(db=db, gate_rate=1e6, gate_burst=1e6)
    _, gate_token = auth.add_gate(db, "site-1", "east-1")
    _, staff_token = auth.add_staff(db, "fuzz")
    return app, gate_token, staff_token


FUZZ_APP, FUZZ_GATE_TOKEN, FUZZ_STAFF_TOKEN = _fuzz_app()
schema = schemathesis.openapi.from_asgi("/api/openapi.json", FUZZ_APP)


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_server_error(case):
    token = FUZZ_STAFF_TOKEN if "/staff/" in case.path else FUZZ_GATE_TOKEN
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])


def test_a_reenrolled_gate_carries_on_with_its_stream(two_sites):
    db, client, a, _b = two_sites
    assert client.post("/api/v1/streams/s-a/events", json=batch(), headers=a).status_code == 200
    auth.revoke_gate(db, "site-a", "gate-a")
    _, new_token = auth.add_gate(db, "site-a", "gate-a")
    other = {"Authorization": f"Bearer {auth.add_gate(db, 'site-a', 'gate-z')[1]}"}
    # Another gate of the same site still may not write there.
    assert client.post("/api/v1/streams/s-a/events", json=batch(3), headers=other).status_code == 403
    r = client.post("/api/v1/streams/s-a/events", json=batch(3), headers={"Authorization": f"Bearer {new_token}"})
    assert r.status_code == 200 and r.json()["acked_through"] == 4
