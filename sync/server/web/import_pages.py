"""Staff pages: importing ledgers (CSV/XLSX) with a mapping step, a preview and a progress bar.

    /registry/sites/{site}/imports                  upload (list kind: residents, returnees, contacts)
    /registry/sites/{site}/imports/{id}             mapping + preview (errors per row and cell)
    /registry/sites/{site}/imports/{id}/commit      POST: write it all (one transaction, in a thread)
    /registry/sites/{site}/imports/{id}/progress    JSON for the progress bar

Nothing reaches the registry before the commit; a file with errors cannot be
committed (fix it and upload it again).
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse

from sync.server import imports
from sync.server.web import StaffPage, i18n, page_router, render, site_guard
from sync.server.web.core import PREFIX
from sync.server.web.people_pages import CHANGERS, db_of

log = logging.getLogger(__name__)
router = page_router()
PREVIEW_OK_ROWS = 50  # rows without errors shown in the preview (all rows with errors are shown)

i18n.register({
    "imports.title": ("导入台账", "Import a ledger"),
    "imports.file": ("文件（Excel .xlsx 或 .csv）", "File (Excel .xlsx or .csv)"),
    "imports.list_kind": ("名单类别", "List"),
    "imports.kind.residents": ("居民台账", "Residents' ledger"),
    "imports.kind.returnees": ("街道下发：返京人员名单", "From the street office: returnees"),
    "imports.kind.contacts": ("街道下发：密切接触者名单", "From the street office: close contacts"),
    "imports.upload": ("上传并预览", "Upload and preview"),
    "imports.recent": ("最近导入", "Recent imports"),
    "imports.mapping": ("列对应", "Columns"),
    "imports.column": ("表格中的列", "Column in the file"),
    "imports.field": ("对应项目", "Means"),
    "imports.ignore": ("（不导入）", "(ignore)"),
    "imports.remap": ("按此对应重新预览", "Preview with these columns"),
    "imports.preview": ("预览", "Preview"),
    "imports.row": ("行号", "Row"),
    "imports.action": ("处理", "Action"),
    "imports.action.new": ("新增", "New"),
    "imports.action.update": ("更新", "Update"),
    "imports.action.same": ("无变化", "Unchanged"),
    "imports.action.error": ("有错误", "Error"),
    "imports.counts": ("新增 {new} · 更新 {update} · 无变化 {same} · 有错误 {error}",
                       "new {new} · update {update} · unchanged {same} · errors {error}"),
    "imports.has_errors": ("有 {error} 行有错误，尚未写入任何数据。请在文件中改正后重新上传。",
                           "{error} rows have errors; nothing has been written. Correct the file and upload it again."),
    "imports.commit": ("确认导入 {count} 行", "Import {count} rows"),
    "imports.nothing_to_do": ("文件与登记一致，无需导入", "The file matches the registry: nothing to import"),
    "imports.committing": ("正在导入…", "Importing…"),
    "imports.committed": ("已导入：新增 {new} · 更新 {update} · 无变化 {same}",
                          "Imported: new {new} · updated {update} · unchanged {same}"),
    "imports.failed": ("导入未完成：{error}", "The import did not complete: {error}"),
    "imports.more_rows": ("另有 {count} 行无错误，未列出", "{count} more rows without errors are not listed"),
    "imports.status.preview": ("待确认", "Awaiting confirmation"),
    "imports.status.committing": ("导入中", "Importing"),
    "imports.status.committed": ("已导入", "Imported"),
    "imports.issue": ("为本次导入的人员发放通行证", "Issue passes to the people of this import"),
    "field.name": ("姓名", "Name"), "field.building": ("楼号", "Building"), "field.unit": ("单元", "Unit"),
    "field.room": ("门牌号", "Room"), "field.phone": ("联系电话", "Phone"), "field.kind": ("人员类别", "Kind"),
    "field.returnee": ("是否返京", "Returnee"), "field.observation_until": ("观察截止日期", "Observation ends"),
    "field.arrival_date": ("返京日期", "Arrival date"), "field.origin": ("来源地", "Came from"),
    "field.contact": ("联系人", "Contact"), "field.last_contact": ("末次接触日期", "Last contact"),
})


def _job_or_404(request: Request, site_id: str, job_id: int) -> dict:
    job = imports.get_job(db_of(request), site_id, job_id)
    if job is None:
        raise HTTPException(404, {"error": "not_found", "detail": f"no import {job_id} at {site_id}"})
    return job


@router.get("/sites/{site_id}/imports")
def imports_page(request: Request, site_id: str, staff: StaffPage, problem: str = ""):
    site_guard(staff, site_id, change=False)
    return render(request, "people/imports.html", site=site_id, board="imports", message="", problem=problem,
                  jobs=imports.recent_jobs(db_of(request), site_id), list_kinds=imports.LIST_KINDS,
                  can_change=staff.can_change(site_id))


@router.post("/sites/{site_id}/imports")
async def imports_upload(request: Request, site_id: str, staff: StaffPage, file: Annotated[UploadFile, File()],
                         list_kind: Annotated[str, Form(max_length=16)] = "residents"):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    content = await file.read()
    from fastapi.concurrency import run_in_threadpool

    try:
        job_id = await run_in_threadpool(imports.create_job, db_of(request), site_id, list_kind,
                                         file.filename or "upload", content, by=staff.name)
    except imports.LedgerError as exc:
        return RedirectResponse(f"{PREFIX}/sites/{site_id}/imports?problem={_q(str(exc))}", status_code=303)
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/imports/{job_id}", status_code=303)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300])


@router.get("/sites/{site_id}/imports/{job_id}")
def import_job_page(request: Request, site_id: str, job_id: int, staff: StaffPage):
    site_guard(staff, site_id, change=False)
    job = _job_or_404(request, site_id, job_id)
    if job["status"] == "committing" and not imports.progress_of(db_of(request), site_id, job_id)["running"]:
        # Claimed by a server that has since stopped reporting progress: its one transaction
        # was rolled back, so nothing was written; the clerk may commit again.
        imports.finish_job(db_of(request), site_id, job_id, "preview",
                           {"error": "服务器在导入时重启，未写入任何数据，请重新确认 / "
                                     "the server restarted during the import; nothing was written"})
        job = _job_or_404(request, site_id, job_id)
    preview = shown = None
    hidden = 0
    if job["status"] == "preview":
        table = imports.parse(job["filename"], job["content"])
        preview = imports.preview(db_of(request), site_id, table, job["list_kind"], job["mapping"])
        bad = [r for r in preview.rows if not r.ok]
        good = [r for r in preview.rows if r.ok]
        shown = sorted(bad + good[:PREVIEW_OK_ROWS], key=lambda r: r.number)
        hidden = len(good) - min(len(good), PREVIEW_OK_ROWS)
    return render(request, "people/import_job.html", site=site_id, board="imports", message="", problem="",
                  job=job, preview=preview, shown=shown, hidden=hidden,
                  fields=imports.FIELDS_BY_LIST[job["list_kind"]], can_change=staff.can_change(site_id),
                  running=job["status"] == "committing")


@router.post("/sites/{site_id}/imports/{job_id}/mapping")
async def import_mapping(request: Request, site_id: str, job_id: int, staff: StaffPage):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    job = _job_or_404(request, site_id, job_id)
    form = await request.form()
    allowed = imports.FIELDS_BY_LIST[job["list_kind"]]
    mapping = {}
    for key, value in form.items():
        if key.startswith("col") and key[3:].isdigit() and value in allowed:
            mapping[int(key[3:])] = value
    imports.set_mapping(db_of(request), site_id, job_id, mapping)
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/imports/{job_id}", status_code=303)


@router.post("/sites/{site_id}/imports/{job_id}/commit")
def import_commit(request: Request, site_id: str, job_id: int, staff: StaffPage):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    job = _job_or_404(request, site_id, job_id)
    db = db_of(request)
    if imports.claim_job(db, site_id, job_id):
        def work():
            def report(done, total):
                imports.report_progress(db, site_id, job_id, done, total)
            try:
                imports.run_job(db, site_id, job, by=staff.name, progress=report)
            except Exception:  # recorded on the job for the page; the server goes on
                log.exception("import %s at %s failed", job_id, site_id)

        threading.Thread(target=work, name=f"import-{job_id}", daemon=True).start()
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/imports/{job_id}", status_code=303)


@router.get("/sites/{site_id}/imports/{job_id}/progress")
def import_progress(request: Request, site_id: str, job_id: int, staff: StaffPage):
    site_guard(staff, site_id, change=False)
    progress = imports.progress_of(db_of(request), site_id, job_id)
    if progress is None:
        raise HTTPException(404, {"error": "not_found", "detail": f"no import {job_id} at {site_id}"})
    return JSONResponse({"status": progress["status"], "done": progress["done"], "total": progress["total"]},
                        headers={"Cache-Control": "no-store"})
