"""The residents, import, passes and policy pages and API: scope, CSRF, the import flow."""

from __future__ import annotations

import time
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sync.server import auth, people, registry
from tests.registry.conftest import PASSPHRASE, csrf_of
from tests.registry.ledgers import resident_rows, xlsx_bytes


@pytest.fixture
def app_with_key(registry_app):
    db, app, tokens = registry_app
    app.state.issuer_passphrase = PASSPHRASE
    return db, app, tokens


def test_pages_are_chinese_scoped_and_read_only_for_inspectors(app_with_key, login_as):
    db, _app, _tokens = app_with_key
    people.save_one(db, "site-a", {"name": "张三", "building": "1", "unit": "1", "room": "101"}, by="t")
    worker = login_as("worker-a")
    page = worker.get("/registry/sites/site-a/people")
    assert page.status_code == 200 and "居民登记" in page.text and "张三" in page.text
    for path in ("/registry/sites/site-b/people", "/registry/sites/site-b/imports", "/registry/sites/site-b/passes",
                 "/registry/sites/site-b/policy"):
        assert worker.get(path).status_code == 403, path
    inspector = login_as("inspector-a")
    page = inspector.get("/registry/sites/site-a/people")
    assert page.status_code == 200 and 'id="add-person"' not in page.text
    r = inspector.post("/registry/sites/site-a/people", data={"name": "李四", "csrf_token": csrf_of(page.text)},
                       follow_redirects=False)
    assert r.status_code == 403
    r = worker.post("/registry/sites/site-a/people", data={"name": "李四"}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token
    assert people.search(db, "site-a")[1] == 1


def test_import_flow_preview_then_commit_with_progress(app_with_key, login_as):
    db, _app, _tokens = app_with_key
    worker = login_as("worker-a")
    page = worker.get("/registry/sites/site-a/imports")
    rows = resident_rows(40)
    rows[2][4] = ""
    rows[2][1] = ""  # a row without a name
    r = worker.post("/registry/sites/site-a/imports", data={"list_kind": "residents", "csrf_token": csrf_of(page.text)},
                    files={"file": ("台账.xlsx", xlsx_bytes(rows))}, follow_redirects=True)
    assert r.status_code == 200 and 'id="has-errors"' in r.text and 'id="commit"' not in r.text
    assert 'data-row="5" data-action="error"' in r.text
    assert people.search(db, "site-a")[1] == 0
    rows[2][1], rows[2][4] = "补名字", "102"
    r = worker.post("/registry/sites/site-a/imports", data={"list_kind": "residents", "csrf_token": csrf_of(page.text)},
                    files={"file": ("台账.xlsx", xlsx_bytes(rows))}, follow_redirects=True)
    assert 'id="commit"' in r.text
    job_url = str(r.url).replace(str(worker.base_url), "")
    r = worker.post(job_url + "/commit", data={"csrf_token": csrf_of(r.text)}, follow_redirects=True)
    deadline = time.monotonic() + 20
    while worker.get(job_url + "/progress").json()["status"] != "committed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert 'id="committed"' in worker.get(job_url).text
    assert people.search(db, "site-a")[1] == 40


def test_api_issue_revoke_and_returnee_with_staff_tokens_only(app_with_key):
    db, app, tokens = app_with_key
    pid = people.save_one(db, "site-a", {"name": "王五", "building": "2"}, by="t").person_id
    _, gate_token = auth.add_gate(db, "site-a", "east-1")
    client = TestClient(app)
    base = "/api/v1/staff/sites/site-a"
    assert client.get(f"{base}/people", headers={"Authorization": f"Bearer {gate_token}"}).status_code == 401
    worker = {"Authorization": f"Bearer {tokens['worker-a']}"}
    inspector = {"Authorization": f"Bearer {tokens['inspector-a']}"}
    assert client.post(f"{base}/passes", json={"building": "2"}, headers=inspector).status_code == 403
    assert client.get("/api/v1/staff/sites/site-b/people", headers=worker).status_code == 403
    issued = client.post(f"{base}/passes", json={"building": "2", "days": 10}, headers=worker).json()
    assert [p["person_id"] for p in issued["issued"]] == [pid]
    r = client.get(f"{base}/passes/batches/{issued['batch_id']}.pdf", headers=inspector)
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    r = client.post(f"{base}/people/{pid}/passes/revoke", json={"reason": "丢失"}, headers=worker).json()
    assert r["revoked"] == [issued["issued"][0]["pass_id"]]
    r = client.post(f"{base}/returnees", json={"person_id": pid, "arrival_date": "2020-02-03", "origin": "湖北"},
                    headers=worker)
    assert r.json()["person"]["observation_until"] == "2020-02-17"
    r = client.put(f"{base}/people/{pid}/observation-end", json={"until": "2020-02-10", "reason": ""}, headers=worker)
    assert r.status_code == 422
    client.close()


def test_policy_page_publishes_a_version_or_shows_errors(app_with_key, login_as):
    db, _app, _tokens = app_with_key
    worker = login_as("worker-a")
    page = worker.get("/registry/sites/site-a/policy")
    assert "尚未发布" in page.text
    form = {"csrf_token": csrf_of(page.text), "version": "0", "visitor_mode": "register", "enforcement": "hard",
            "threshold_c": "41", "offset_c": "0.5"}
    r = worker.post("/registry/sites/site-a/policy", data=form)
    assert r.status_code == 422 and 'data-error="threshold_c"' in r.text
    assert registry.head(db, "site-a") == 0
    r = worker.post("/registry/sites/site-a/policy", data={**form, "threshold_c": "37.2"}, follow_redirects=True)
    assert "已发布第 1 版" in r.text


def test_passes_for_a_whole_import_then_renew_and_every_change_is_audited_by_name(app_with_key, login_as):
    from sqlalchemy import select

    from sync.server import imports
    from sync.server.schema import audit

    db, _app, _tokens = app_with_key
    job = imports.create_job(db, "site-a", "residents", "台账.xlsx", xlsx_bytes(resident_rows(12)), by="worker-a")
    imports.run_job(db, "site-a", imports.get_job(db, "site-a", job), by="worker-a")
    worker = login_as("worker-a")
    page = worker.get(f"/registry/sites/site-a/passes?import_id={job}")
    assert "第 1 次导入的全部人员（12 人）" in page.text
    r = worker.post("/registry/sites/site-a/passes/issue", data={"csrf_token": csrf_of(page.text),
                                                                 "import_id": str(job), "days": "3"})
    assert r.status_code == 200 and "已发放 12 张通行证" in r.text
    r = worker.post("/registry/sites/site-a/passes/renew", data={"csrf_token": csrf_of(page.text),
                                                                 "within_days": "7", "days": "30"})
    assert "已发放 12 张通行证" in r.text
    with db.read() as conn:
        rows = conn.execute(select(audit.c.actor, audit.c.action, audit.c.entity)
                            .where(audit.c.site_id == "site-a")).all()
    assert {("worker-a", "person.upsert", "person"), ("worker-a", "pass.issue", "pass_batch"),
            ("worker-a", "pass.renew", "pass_batch"), ("worker-a", "key.upsert", "key")} <= set(rows)


def test_every_role_at_every_site_reads_and_changes_residents_only_within_its_scope(app_with_key, login_as):
    from tests.registry.conftest import ACCOUNTS
    from tests.registry.test_authorization import EDITS, READS, SITES

    db, app, tokens = app_with_key
    for site in SITES:
        people.save_one(db, site, {"name": "住户", "building": "1"}, by="setup")
    api = TestClient(app)
    for name in ACCOUNTS:
        client = login_as(name)
        bearer = {"Authorization": f"Bearer {tokens[name]}"}
        for site in SITES:
            reads, edits = site in READS[name], site in EDITS.get(name, set())
            page = client.get(f"/registry/sites/{site}/people")
            assert page.status_code == (200 if reads else 403), (name, site)
            token = csrf_of(client.get(f"/registry/sites/{sorted(READS[name])[0]}/people").text)
            r = client.post(f"/registry/sites/{site}/people", data={"name": f"{name}新人", "csrf_token": token},
                            follow_redirects=False)
            assert r.status_code == (303 if edits else 403), (name, site, r.status_code)
            r = api.get(f"/api/v1/staff/sites/{site}/people", headers=bearer)
            assert r.status_code == (200 if reads else 403), (name, site)
            r = api.post(f"/api/v1/staff/sites/{site}/passes", json={"building": "1", "days": 1}, headers=bearer)
            assert r.status_code == (200 if edits else 403), (name, site, r.text)
    api.close()


def test_an_import_cut_short_by_a_restart_can_be_committed_again(app_with_key, login_as):
    from sync.server import imports

    db, app, _tokens = app_with_key
    job = imports.create_job(db, "site-a", "residents", "台账.xlsx", xlsx_bytes(resident_rows(5)), by="worker-a")
    assert imports.claim_job(db, "site-a", job)  # a server claimed it, then stopped before committing
    worker = login_as("worker-a")
    # Still running: the page waits (another replica, or this server, is importing it).
    assert worker.get(f"/registry/sites/site-a/imports/{job}/progress").json() == {
        "status": "committing", "done": 0, "total": 0}
    assert 'id="job-error"' not in worker.get(f"/registry/sites/site-a/imports/{job}").text
    # The server stops: on PostgreSQL its progress goes stale, on SQLite (one process) its memory is gone.
    if db.is_postgres:
        from datetime import datetime, timedelta, timezone

        from sync.server.schema import import_jobs

        with db.write() as conn:
            conn.execute(import_jobs.update().where(import_jobs.c.id == job).values(
                progress_at=datetime.now(timezone.utc) - imports.PROGRESS_STALE - timedelta(seconds=1)))
    else:
        imports._local_progress.clear()
    page = worker.get(f"/registry/sites/site-a/imports/{job}")
    assert 'id="job-error"' in page.text and 'id="commit"' in page.text
    assert people.search(db, "site-a")[1] == 0


def test_passes_for_a_household_from_a_persons_page(app_with_key, login_as):
    db, _app, _tokens = app_with_key
    landlord = people.save_one(db, "site-a", {"name": "房东", "building": "5", "unit": "1", "room": "301"}, by="t")
    people.save_one(db, "site-a", {"name": "租客", "kind": "tenant", "landlord_id": landlord.person_id}, by="t")
    people.save_one(db, "site-a", {"name": "邻居", "building": "5", "unit": "1", "room": "302"}, by="t")
    worker = login_as("worker-a")
    page = worker.get(f"/registry/sites/site-a/people/{landlord.person_id}")
    assert "为全户 2 人发放" in page.text
    r = worker.post("/registry/sites/site-a/passes/issue", data={"csrf_token": csrf_of(page.text),
                                                                 "household_of": landlord.person_id, "days": "30"})
    assert "已发放 2 张通行证" in r.text and "租客" in r.text and "邻居" not in r.text
