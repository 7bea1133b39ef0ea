"""Who may read and change what, for every role and every site, through
the staff pages and the staff JSON API. Sites a and b belong to the east
street office, site c to the west one (see conftest.ACCOUNTS)."""

from __future__ import annotations

import warnings

import pytest
from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.passes import generate_keypair
from sync.server import auth
from sync.server.schema import alert_followups, alerts, audit
from tests.registry.conftest import ACCOUNTS, csrf_of
from tests.sync.test_sync_server import ev

SITES = ("site-a", "site-b", "site-c")
# account -> sites it may read
READS = {
    "admin-all": set(SITES), "admin-a": {"site-a"}, "worker-a": {"site-a"}, "guard-a": {"site-a"},
    "inspector-a": {"site-a"}, "officer-east": {"site-a", "site-b"},
}
# account -> sites where it may change residents / passes / policy
EDITS = {"admin-all": set(SITES), "admin-a": {"site-a"}, "worker-a": {"site-a"}}
# account -> sites where it may acknowledge and follow up fever cases
FOLLOWS_UP = {**EDITS, "guard-a": {"site-a"}}


@pytest.fixture
def world(registry_app):
    """The app with one fever alert per site, uploaded by each site's gate."""
    db, app, tokens = registry_app
    client = TestClient(app)
    gate_tokens = {}
    for site in SITES:
        _, token = auth.add_gate(db, site, f"gate-{site}")
        gate_tokens[site] = token
        fever = ev(1, flagged=True, decision="deny", reasons=["fever"], body_c=38.4, person_id=f"p-{site}")
        r = client.post(f"/api/v1/streams/s-{site}/events", json={"first_seq": 1, "events": [fever]},
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    with db.read() as conn:
        alert_ids = {r.site_id: r.id for r in conn.execute(select(alerts.c.site_id, alerts.c.id))}
    yield db, app, tokens, gate_tokens, alert_ids
    client.close()


def test_pages_read_only_inside_the_scope(world, login_as):
    _db, _app, _tokens, _gates, _alerts = world
    for name in ACCOUNTS:
        client = login_as(name)
        for site in SITES:
            for path in (f"/registry/sites/{site}/gates", f"/registry/sites/{site}/fevers",
                         f"/registry/sites/{site}/ledgers?ledger=visitors&day=2026-02-01",
                         f"/registry/sites/{site}/report?day=2026-02-01",
                         f"/registry/sites/{site}/report.xlsx?day=2026-02-01",
                         f"/registry/sites/{site}/ledgers/overrides.csv?day=2026-02-01"):
                r = client.get(path, follow_redirects=False)
                expected = 200 if site in READS[name] else 403
                assert r.status_code == expected, (name, path, r.status_code)
                if expected == 403:
                    assert "p-site" not in r.text
        # A site nobody has: 404 for a global account, 403 (no probing) for the rest.
        r = client.get("/registry/sites/site-zz/gates")
        assert r.status_code == (404 if name == "admin-all" else 403)


def test_page_changes_need_the_role_the_scope_and_the_csrf_token(world, login_as):
    db, _app, _tokens, _gates, alert_ids = world
    for name in ACCOUNTS:
        client = login_as(name)
        token = csrf_of(client.get("/registry/sites/site-a/gates").text)
        for site in SITES:
            alert = alert_ids[site]
            base = f"/registry/sites/{site}/fevers/{alert}"
            # Without (or with a wrong) CSRF token: refused whoever asks, nothing written.
            assert client.post(f"{base}/followup", data={"note": "no token"}).status_code == 403
            assert client.post(f"{base}/followup", data={"note": "bad", "csrf_token": "x" * 43}).status_code == 403
            assert client.post(f"{base}/ack", headers={"X-CSRF-Token": "nope"}).status_code == 403
            r = client.post(f"{base}/followup", data={"note": f"{name} 已电话随访", "csrf_token": token},
                            follow_redirects=False)
            allowed = site in FOLLOWS_UP.get(name, set())
            assert r.status_code == (303 if allowed else 403), (name, site, r.status_code)
        # Another site's alert through this site's URL is not found.
        r = client.post(f"/registry/sites/site-a/fevers/{alert_ids['site-b']}/followup",
                        data={"note": "x", "csrf_token": token}, follow_redirects=False)
        assert r.status_code in (403, 422)
    with db.read() as conn:
        notes = conn.execute(select(alert_followups.c.alert_id, alert_followups.c.by)).all()
        audited = conn.execute(select(audit.c.actor).where(audit.c.action == "alert.followup")).scalars().all()
    expected = sorted((alert_ids[s], n) for n, sites in FOLLOWS_UP.items() for s in sites)
    assert sorted(notes) == expected
    assert sorted(audited) == sorted(n for _a, n in expected)


def test_the_fever_board_shows_forms_only_to_those_who_may_change(world, login_as):
    for name in ("inspector-a", "officer-east"):
        page = login_as(name).get("/registry/sites/site-a/fevers").text
        assert "p-site-a" in page and "/followup" not in page and "/ack" not in page
    page = login_as("guard-a").get("/registry/sites/site-a/fevers").text
    assert "/followup" in page and "/ack" in page


def _api_calls(site: str, alert_id: int, pem: str):
    staff = f"/api/v1/staff/sites/{site}"
    return [
        ("read", "GET", f"{staff}/alerts", None),
        ("read", "GET", f"{staff}/reports/daily?date=2026-02-01", None),
        ("edit", "POST", f"{staff}/people", {"person_id": "p-new", "name": "新人"}),
        ("edit", "PUT", f"{staff}/people/p-new/observation", {"until": "2026-02-14"}),
        ("edit", "POST", f"{staff}/revocations", {"pass_id": "ps-lost", "reason": "lost"}),
        ("edit", "PUT", f"{staff}/policy", {"document": {"version": 1}}),
        ("edit", "POST", f"{staff}/visitor-cases", {"case_id": "v-1", "name": "访客", "valid_until": "2026-02-03"}),
        ("key", "POST", f"{staff}/keys", {"public_pem": pem}),
        ("follow", "POST", f"/api/v1/staff/alerts/{alert_id}/ack", None),
    ]


def test_staff_api_checks_role_and_site_on_every_call(world):
    db, app, tokens, gate_tokens, alert_ids = world
    pem = generate_keypair()[1].decode()
    with TestClient(app) as client:
        for name in ACCOUNTS:
            headers = {"Authorization": f"Bearer {tokens[name]}"}
            for site in SITES:
                for what, method, path, body in _api_calls(site, alert_ids[site], pem):
                    if what == "read":
                        allowed = site in READS[name]
                    elif what == "follow":
                        allowed = site in FOLLOWS_UP.get(name, set())
                    elif what == "key":
                        allowed = ACCOUNTS[name][0] == "admin" and site in EDITS.get(name, set())
                    else:
                        allowed = site in EDITS.get(name, set())
                    r = client.request(method, path, json=body, headers=headers)
                    if allowed:
                        assert r.status_code in (200, 409), (name, method, path, r.status_code, r.text)
                    else:
                        # The ack of an alert outside the scope is "no alert" (404), the rest 403.
                        assert r.status_code in ((403, 404) if what == "follow" else (403,)), (name, path, r.text)
            # Site "*" (every gate): only the global administrator.
            r = client.post("/api/v1/staff/sites/*/keys", json={"public_pem": pem}, headers=headers)
            assert r.status_code == (200 if name == "admin-all" else 403), (name, r.text)
        # Gate tokens are not staff tokens, and do not open the pages.
        gate = {"Authorization": f"Bearer {gate_tokens['site-a']}"}
        assert client.get("/api/v1/staff/sites/site-a/alerts", headers=gate).status_code == 401
        assert client.post("/api/v1/staff/sites/site-a/people", json={"person_id": "x", "name": "x"},
                           headers=gate).status_code == 401
        r = client.get("/registry/sites/site-a/gates", headers=gate, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/registry/login")
        r = client.post(f"/registry/sites/site-a/fevers/{alert_ids['site-a']}/ack", headers=gate,
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/registry/login")
    # Every change above was audited with the token owner's name.
    with db.read() as conn:
        actors = set(conn.execute(select(audit.c.actor).where(audit.c.action.in_(
            ["person.upsert", "revocation.upsert", "policy.upsert", "key.upsert", "alert.ack"]))).scalars())
    # (guard-a's ack came after admin-all's: an alert is acknowledged once.)
    assert actors == {"admin-all", "admin-a", "worker-a"}


def test_a_revoked_account_loses_its_session_and_token(world, login_as):
    db, app, tokens, _gates, _alerts = world
    client = login_as("worker-a")
    assert client.get("/registry/sites/site-a/gates").status_code == 200
    auth.revoke_staff(db, "worker-a", by="admin-all")
    assert client.get("/registry/sites/site-a/gates", follow_redirects=False).status_code == 303
    with TestClient(app) as api:
        r = api.get("/api/v1/staff/sites/site-a/alerts", headers={"Authorization": f"Bearer {tokens['worker-a']}"})
        assert r.status_code == 401


def test_the_audit_log_page_is_for_admins_and_inspectors(world, login_as):
    _db, _app, _tokens, _gates, alert_ids = world
    worker = login_as("worker-a")
    page = worker.get("/registry/sites/site-a/fevers").text
    worker.post(f"/registry/sites/site-a/fevers/{alert_ids['site-a']}/followup",
                data={"note": "已上门", "csrf_token": csrf_of(page)})
    assert 'href="/registry/sites/site-a/audit"' not in page
    assert worker.get("/registry/sites/site-a/audit").status_code == 403
    for name in ("admin-a", "inspector-a"):
        page = login_as(name).get("/registry/sites/site-a/audit")
        assert page.status_code == 200 and "worker-a" in page.text and "alert.followup" in page.text
        assert "已上门" in page.text
    assert login_as("admin-a").get("/registry/sites/site-b/audit").status_code == 403


def test_a_bad_query_on_a_page_is_an_html_error(login_as):
    r = login_as("worker-a").get("/registry/sites/site-a/report?day=not-a-day")
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html") and "输入有误" in r.text


def test_street_office_summary_for_its_officers_only(world, login_as):
    import io

    from openpyxl import load_workbook

    officer = login_as("officer-east")
    r = officer.get("/registry/offices", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/registry/offices/east-office"
    page = officer.get("/registry/offices/east-office?day=2026-02-01").text
    assert 'data-site="site-a"' in page and 'data-site="site-b"' in page and "site-c" not in page
    assert officer.get("/registry/offices/west-office").status_code == 403
    book = load_workbook(io.BytesIO(officer.get("/registry/offices/east-office/summary.xlsx?day=2026-02-01").content))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][:3] == ("小区", "名称", "零报告")
    by_site = {row[0]: row for row in rows[1:]}
    # The uploaded fever (16:00 in Shanghai on 1 February) is a case at each site; totals add up.
    assert by_site["site-a"][2] == "否" and by_site["site-a"][6] == 1 and by_site["site-b"][6] == 1
    assert by_site["合计"][6] == 2
    for name in ("worker-a", "admin-a", "inspector-a"):
        assert login_as(name).get("/registry/offices/east-office").status_code == 403
    assert login_as("admin-all").get("/registry/offices/west-office").status_code == 200
