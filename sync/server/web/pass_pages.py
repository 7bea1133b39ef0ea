"""Staff pages: issue passes (one person, the people shown by a filter, e.g. a
building, or a whole import), print them as an A4 PDF, revoke, reissue, renew.

    /registry/sites/{site}/passes                     issue / renew forms, recent batches
    /registry/sites/{site}/passes/issue               POST person_id | filters | import_id
    /registry/sites/{site}/passes/batches/{batch}     a batch; its sheet at .../{batch}.pdf
    /registry/sites/{site}/passes/print.pdf?pass_id=  reprint single passes
    /registry/sites/{site}/passes/revoke | reissue | renew   POST
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from sync.server import imports, issuing, people, sheets, site_policy
from sync.server.registry import RegistryError
from sync.server.schema import passes as passes_table
from sync.server.web import StaffPage, i18n, page_router, render, site_guard
from sync.server.web.core import PREFIX
from sync.server.web.people_pages import CHANGERS, db_of

router = page_router()
MAX_BATCH = 10_000

i18n.register({
    "passes.title": ("通行证", "Passes"),
    "passes.issue": ("发放通行证", "Issue passes"),
    "passes.scope": ("发放对象", "To"),
    "passes.building": ("整栋楼", "A whole building"),
    "passes.everyone": ("全部在住人员", "Everyone living here"),
    "passes.import": ("第 {id} 次导入的全部人员（{count} 人）", "Everyone in import {id} ({count} people)"),
    "passes.days": ("有效天数", "Days valid"),
    "passes.go": ("发放", "Issue"),
    "passes.no_passphrase": ("服务器启动时未提供签发密钥口令，无法发放通行证（见 registry serve --issuer-passphrase-file）",
                             "The server was started without the issuer passphrase; it cannot issue passes "
                             "(see registry serve --issuer-passphrase-file)"),
    "passes.renew": ("批量续期", "Renew in bulk"),
    "passes.renew_within": ("为 {days} 天内到期的人员发放新证", "New passes for everyone whose pass ends within"),
    "passes.within": ("到期天数以内", "Days until expiry"),
    "passes.batches": ("最近发放", "Recently issued"),
    "passes.batch": ("批次 {batch}", "Batch {batch}"),
    "passes.count": ("{count} 张", "{count} passes"),
    "passes.print": ("打印（A4，每页8张）", "Print (A4, 8 per page)"),
    "passes.refused": ("未发放", "Not issued"),
    "passes.issued": ("已发放 {count} 张通行证", "{count} passes issued"),
    "passes.find": ("挂失、补办：请在居民页面找到本人", "Lost pass, reissue: find the person on the residents page"),
    "passes.revoked": ("已作废", "Revoked"),
    "passes.by": ("发放人", "Issued by"),
})


def _ready(request: Request) -> bytes:
    passphrase = request.app.state.issuer_passphrase
    if passphrase is None:
        raise HTTPException(409, {"error": "conflict", "detail": i18n.translate("zh", "passes.no_passphrase")})
    return passphrase


def _batches(db, site_id: str, limit: int = 20) -> list[dict]:
    c = passes_table.c
    with db.read() as conn:
        rows = conn.execute(select(c.batch_id, func.count().label("count"), func.min(c.issued_at).label("at"),
                                   func.min(c.issued_by).label("by"))
                            .where(c.site_id == site_id).group_by(c.batch_id)
                            .order_by(func.min(c.issued_at).desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


@router.get("/sites/{site_id}/passes")
def passes_page(request: Request, site_id: str, staff: StaffPage, import_id: int | None = None,
                problem: str = ""):
    site_guard(staff, site_id, change=False)
    db = db_of(request)
    job = imports.get_job(db, site_id, import_id) if import_id else None
    job_ids = (job or {}).get("summary") or {}
    return render(request, "people/passes.html", site=site_id, board="passes", message="", problem=problem,
                  buildings=people.buildings(db, site_id), batches=_batches(db, site_id), job=job,
                  job_count=len(job_ids.get("person_ids", [])), can_change=staff.can_change(site_id),
                  issuing_ready=request.app.state.issuer_passphrase is not None)


def _chosen_people(request: Request, site_id: str, form) -> list[str]:
    db = db_of(request)
    if form.get("person_id"):
        return [str(form["person_id"])]
    if form.get("household_of"):
        return [p["person_id"] for p in people.household(db, site_id, str(form["household_of"]))
                if p["status"] == "active"]
    if form.get("import_id"):
        job = imports.get_job(db, site_id, int(form["import_id"]))
        if job is None or not job.get("summary"):
            raise RegistryError(f"no committed import {form['import_id']}")
        return list(job["summary"].get("person_ids", []))
    scope = form.get("scope", "")
    filters = people.Filters(
        building=str(form.get("building", ""))[:16] if scope != "everyone" else "",
        name=str(form.get("name", ""))[:64], phone=str(form.get("phone", ""))[:32],
        kind=str(form.get("kind", "")) if form.get("kind") in people.KINDS else "",
        observation=str(form.get("observation", "")) if form.get("observation") in ("under", "returnee") else "",
        status="active")
    if scope != "everyone" and not any([filters.building, filters.name, filters.phone, filters.kind,
                                        filters.observation]):
        raise RegistryError("请选择楼号或筛选条件 / choose a building or a filter")
    rows, _ = people.search(db, site_id, filters, limit=MAX_BATCH)
    return [r["person_id"] for r in rows]


def _days(value) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise RegistryError(f"有效天数应为整数 / days must be a whole number: {value!r}") from None


@router.post("/sites/{site_id}/passes/issue")
async def passes_issue(request: Request, site_id: str, staff: StaffPage):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    form = await request.form()
    try:
        passphrase = _ready(request)
        ids = _chosen_people(request, site_id, form)
        result = await run_in_threadpool(issuing.issue, db_of(request), site_id, ids, days=_days(form.get("days", 30)),
                                         passphrase=passphrase, by=staff.name)
    except RegistryError as exc:
        from urllib.parse import quote

        return RedirectResponse(f"{PREFIX}/sites/{site_id}/passes?problem={quote(str(exc)[:300])}", status_code=303)
    request.app.state.last_refused = {result.batch_id: result.refused}
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/passes/batches/{result.batch_id}", status_code=303)


@router.get("/sites/{site_id}/passes/batches/{batch_id}")
def batch_page(request: Request, site_id: str, batch_id: str, staff: StaffPage):
    site_guard(staff, site_id, change=False)
    db = db_of(request)
    rows = issuing.batch(db, site_id, batch_id.removesuffix(".pdf"))
    if batch_id.endswith(".pdf"):
        return _pdf(request, site_id, rows, f"passes-{batch_id}")
    if not rows:
        raise HTTPException(404, {"error": "not_found", "detail": f"no batch {batch_id} at {site_id}"})
    cards = sheets.cards_for(rows, {p["person_id"]: p for p in people.people_by_ids(db, site_id,
                                                                                     [r["person_id"] for r in rows])})
    refused = getattr(request.app.state, "last_refused", {}).get(batch_id, [])
    return render(request, "people/batch.html", site=site_id, board="passes", message="", problem="",
                  batch_id=batch_id, cards=cards, refused=refused, china=issuing.CHINA_TZ,
                  one_second=timedelta(seconds=1))


def _pdf(request: Request, site_id: str, rows: list[dict], name: str) -> Response:
    if not rows:
        raise HTTPException(404, {"error": "not_found", "detail": "no such passes"})
    db = db_of(request)
    by_id = {p["person_id"]: p for p in people.people_by_ids(db, site_id, [r["person_id"] for r in rows])}
    try:
        pdf = sheets.render_pdf(sheets.cards_for(rows, by_id), site_name=sheets.site_title(db, site_id),
                                mask=site_policy.mask_names(db, site_id))
    except sheets.SheetError as exc:
        raise HTTPException(503, {"error": "unavailable", "detail": str(exc)}) from None
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{name}.pdf"', "Cache-Control": "no-store"})


@router.get("/sites/{site_id}/passes/print.pdf")
def print_passes(request: Request, site_id: str, staff: StaffPage,
                 pass_id: Annotated[list[str], Query(max_length=500)]):
    site_guard(staff, site_id, change=False)
    return _pdf(request, site_id, issuing.get_passes(db_of(request), site_id, pass_id), "passes")


@router.post("/sites/{site_id}/passes/revoke")
def passes_revoke(request: Request, site_id: str, staff: StaffPage, pass_id: Annotated[str, Form(max_length=16)],
                  person_id: Annotated[str, Form(max_length=128)] = "",
                  reason: Annotated[str, Form(max_length=200)] = ""):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    from urllib.parse import quote

    try:
        issuing.revoke(db_of(request), site_id, [pass_id], reason=reason.strip() or "revoked", by=staff.name)
    except RegistryError as exc:
        return RedirectResponse(f"{PREFIX}/sites/{site_id}/people/{quote(person_id)}?problem={quote(str(exc))}",
                                status_code=303)
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/people/{quote(person_id)}?message=people.saved",
                            status_code=303)


@router.post("/sites/{site_id}/passes/reissue")
def passes_reissue(request: Request, site_id: str, staff: StaffPage,
                   person_id: Annotated[str, Form(max_length=128)], days: Annotated[str, Form(max_length=4)] = "30"):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    from urllib.parse import quote

    try:
        result = issuing.reissue(db_of(request), site_id, person_id, days=_days(days), passphrase=_ready(request),
                                 by=staff.name)
    except RegistryError as exc:
        return RedirectResponse(f"{PREFIX}/sites/{site_id}/people/{quote(person_id)}?problem={quote(str(exc))}",
                                status_code=303)
    request.app.state.last_refused = {result.batch_id: result.refused}
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/passes/batches/{result.batch_id}", status_code=303)


@router.post("/sites/{site_id}/passes/renew")
def passes_renew(request: Request, site_id: str, staff: StaffPage,
                 within_days: Annotated[str, Form(max_length=4)] = "7", days: Annotated[str, Form(max_length=4)] = "30"):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    from urllib.parse import quote

    try:
        before = datetime.now(timezone.utc) + timedelta(days=_days(within_days))
        result = issuing.renew(db_of(request), site_id, expiring_before=before, days=_days(days),
                               passphrase=_ready(request), by=staff.name)
    except RegistryError as exc:
        return RedirectResponse(f"{PREFIX}/sites/{site_id}/passes?problem={quote(str(exc))}", status_code=303)
    if not result.issued:
        return RedirectResponse(f"{PREFIX}/sites/{site_id}/passes?problem={quote('没有需要续期的通行证 / nothing to renew')}",
                                status_code=303)
    request.app.state.last_refused = {result.batch_id: result.refused}
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/passes/batches/{result.batch_id}", status_code=303)
