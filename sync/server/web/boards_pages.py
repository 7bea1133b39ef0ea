"""Boards: gates, fever cases, ledgers (pages; queries in sync.server.boards).

Read by every role that can read the site; the fever board's follow-up and
acknowledge forms show only to those who may change it (and are refused
with 403 to anyone else).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Form, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from sync.server import boards, exports, registry
from sync.server.reports import DEFAULT_TZ
from sync.server.sites import known_sites
from sync.server.web import i18n
from sync.server.web.core import PREFIX, StaffPage, add_site_nav, lang_of, page_router, render, site_guard

router = page_router()
# The gate and fever boards reload themselves (no script needed) when left open.
BOARD_REFRESH_S = 60

i18n.register({
    "gates.title": ("闸机状态", "Gates"),
    "gates.none": ("这个小区还没有登记闸机", "No gate is enrolled at this community yet"),
    "gates.gate": ("闸机", "Gate"),
    "gates.online": ("在线", "Online"),
    "gates.offline": ("离线", "Offline"),
    "gates.revoked": ("已注销", "Revoked"),
    "gates.last_contact": ("最近通信", "Last contact"),
    "gates.never": ("从未", "never"),
    "gates.received": ("已上传事件", "Events received"),
    "gates.last_upload": ("最近上传", "Last upload"),
    "gates.behind": ("上次上传积压", "Backlog at last upload"),
    "gates.behind_value": ("最早事件 {minutes} 分钟前", "oldest event {minutes} min old"),
    "gates.duty": ("值守人员", "On duty"),
    "gates.since": ("自 {time}", "since {time}"),
    "gates.unattended": ("无人值守！", "UNATTENDED!"),
    "gates.nobody": ("无人签到", "nobody signed in"),
    "gates.health": ("设备状态", "Device health"),
    "gates.health_unknown": ("未上报", "not reported"),
    "gates.backlog": ("待上传", "Waiting to upload"),
    "gates.backlog_value": ("{n} 条（{time}）", "{n} events ({time})"),
    "device.thermometer": ("测温仪", "thermometer"), "device.camera": ("摄像头", "camera"),
    "device.disk": ("存储", "disk"), "device.clock": ("时钟", "clock"), "device.registry": ("名单", "registry copy"),
    "device.sync": ("上传", "upload"), "device.checkpoint": ("闸机程序", "checkpoint software"),
    "device.ok": ("正常", "ok"), "device.warn": ("注意", "warning"), "device.fault": ("故障", "fault"),
    "device.off": ("未启用", "off"),
    "fevers.title": ("发热病例", "Fever cases"),
    "fevers.none": ("没有发热病例", "No fever cases"),
    "fevers.open_only": ("只看未处理", "Open only"),
    "fevers.time": ("时间", "Time"),
    "fevers.name": ("姓名", "Name"),
    "fevers.unit": ("楼号-单元-门牌", "Building-unit-room"),
    "fevers.readings": ("体温(°C)", "Readings (°C)"),
    "fevers.gate": ("闸机", "Gate"),
    "fevers.gate_ack": ("值守确认", "Gate acknowledgement"),
    "fevers.followup": ("处置情况", "Staff follow-up"),
    "fevers.status": ("状态", "Status"),
    "fevers.acked_by": ("已处理：{name}", "Acknowledged: {name}"),
    "fevers.open": ("待处理", "Open"),
    "fevers.add_note": ("添加处置记录", "Add follow-up"),
    "fevers.ack": ("标记已处理", "Acknowledge"),
    "fevers.count": ("共 {n} 次", "{n} readings"),
    "fevers.clinical": ("复测 {value}°C", "clinical {value} °C"),
    "fevers.outcome.admitted": ("已放行", "admitted"),
    "fevers.outcome.referred": ("已转诊", "referred"),
    "fevers.outcome.refused": ("未放行", "refused"),
    "fevers.unknown_person": ("未登记人员", "not in the registry"),
    "ledgers.title": ("台账", "Ledgers"),
    "ledgers.visitors": ("来访登记", "Visitors"),
    "ledgers.staff_temperatures": ("值守人员体温", "Guard temperatures"),
    "ledgers.disinfections": ("消毒记录", "Disinfection"),
    "ledgers.overrides": ("人工放行", "Overrides"),
    "ledgers.vehicles": ("车辆台账", "Vehicles"),
    "ledgers.none": ("当天没有记录", "Nothing recorded that day"),
})


def today(tz: str = DEFAULT_TZ) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def _read_guard(request: Request, staff, site_id: str) -> None:
    site_guard(staff, site_id, change=False, known=known_sites(request.app.state.db))


SiteId = Annotated[str, Path(min_length=1, max_length=64)]
Day = Annotated[date | None, Query()]


@router.get("/sites/{site_id}/gates")
def gates_board(request: Request, site_id: SiteId, staff: StaffPage):
    _read_guard(request, staff, site_id)
    rows = boards.gate_board(request.app.state.db, site_id)
    return render(request, "gates.html", site=site_id, board="gates", gates=rows, tz=ZoneInfo(DEFAULT_TZ),
                  refresh_s=BOARD_REFRESH_S)


@router.get("/sites/{site_id}/fevers")
def fever_board(request: Request, site_id: SiteId, staff: StaffPage, day: Day = None, open: bool = False):
    _read_guard(request, staff, site_id)
    cases = boards.fever_cases(request.app.state.db, site_id, day=day, open_only=open)
    return render(request, "fevers.html", site=site_id, board="fevers", cases=cases, day=day, open_only=open,
                  may_change=staff.can_change(site_id), refresh_s=BOARD_REFRESH_S)


def _back_to_fevers(site_id: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/sites/{quote(site_id)}/fevers", status_code=303)


@router.post("/sites/{site_id}/fevers/{alert_id}/followup")
def fever_followup(request: Request, site_id: SiteId, alert_id: Annotated[int, Path(ge=1, le=2**62)],
                   staff: StaffPage, note: Annotated[str, Form(max_length=500)] = ""):
    site_guard(staff, site_id, change=True)
    try:
        boards.add_followup(request.app.state.db, site_id, alert_id, note, by=staff.name)
    except registry.RegistryError as exc:
        raise HTTPException(422, {"error": "invalid", "detail": str(exc)}) from None
    return _back_to_fevers(site_id)


@router.post("/sites/{site_id}/fevers/{alert_id}/ack")
def fever_ack(request: Request, site_id: SiteId, alert_id: Annotated[int, Path(ge=1, le=2**62)], staff: StaffPage):
    site_guard(staff, site_id, change=True)
    try:
        boards.acknowledge_case(request.app.state.db, site_id, alert_id, by=staff.name)
    except registry.RegistryError as exc:
        raise HTTPException(404, {"error": "not_found", "detail": str(exc)}) from None
    return _back_to_fevers(site_id)


def _ledger_name(ledger: str) -> str:
    if ledger not in boards.LEDGERS:
        raise HTTPException(404, {"error": "not_found", "detail": f"no ledger {ledger}"})
    return ledger


@router.get("/sites/{site_id}/ledgers")
def ledger_board(request: Request, site_id: SiteId, staff: StaffPage, ledger: str = "visitors", day: Day = None):
    _read_guard(request, staff, site_id)
    ledger = _ledger_name(ledger)
    day = day or today()
    rows = boards.ledger_rows(request.app.state.db, site_id, ledger, day, lang=lang_of(request))
    en = lang_of(request) == "en"
    columns = [(key, en_h if en else zh) for key, zh, en_h in boards.LEDGERS[ledger][1]]
    return render(request, "ledgers.html", site=site_id, board="ledgers", ledger=ledger, ledgers=list(boards.LEDGERS),
                  day=day, rows=rows, columns=columns)


@router.get("/sites/{site_id}/ledgers/{ledger}.{fmt}")
def ledger_export(request: Request, site_id: SiteId, ledger: str, fmt: str, staff: StaffPage, day: Day = None):
    _read_guard(request, staff, site_id)
    ledger = _ledger_name(ledger)
    day = day or today()
    lang = lang_of(request)  # the export speaks the page's language
    rows = boards.ledger_rows(request.app.state.db, site_id, ledger, day, lang=lang)
    keys = [key for key, _zh, _en in boards.LEDGERS[ledger][1]]
    headers = [en if lang == "en" else zh for _key, zh, en in boards.LEDGERS[ledger][1]]
    values = [[row[k] for k in keys] for row in rows]
    title = i18n.translate(lang, f"ledgers.{ledger}")
    return download(f"{site_id}-{ledger}-{day}", fmt, headers, values, title)


def download(stem: str, fmt: str, headers, rows, title: str) -> Response:
    """A CSV or XLSX attachment."""
    if fmt == "csv":
        body, media = exports.to_csv(headers, rows), "text/csv; charset=utf-8"
    elif fmt == "xlsx":
        body = exports.to_xlsx([(title, headers, rows)])
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        raise HTTPException(404, {"error": "not_found", "detail": f"no format {fmt}; csv or xlsx"})
    return Response(body, media_type=media, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem)}.{fmt}", "Cache-Control": "no-store"})


# --- the audit log ------------------------------------------------------------------

AUDIT_READERS = ("admin", "inspector")

i18n.register({
    "nav.audit": ("操作记录", "Audit log"),
    "audit.title": ("操作记录", "Audit log"),
    "audit.at": ("时间", "Time"),
    "audit.actor": ("操作人", "By"),
    "audit.action": ("操作", "Action"),
    "audit.entity": ("对象", "Record"),
    "audit.before": ("修改前", "Before"),
    "audit.after": ("修改后", "After"),
    "audit.none": ("还没有操作记录", "No changes recorded yet"),
})


@router.get("/sites/{site_id}/audit")
def audit_log(request: Request, site_id: SiteId, staff: StaffPage):
    """Who changed what at the site: administrators and inspectors."""
    from sync.server import audit

    _read_guard(request, staff, site_id)
    if staff.role not in AUDIT_READERS:
        raise HTTPException(403, {"error": "forbidden", "detail": f"{staff.name} ({staff.role}) may not read the audit log"})
    rows = audit.entries(request.app.state.db, site_ids=[site_id], limit=500)
    return render(request, "audit.html", site=site_id, board="audit", rows=rows, tz=ZoneInfo(DEFAULT_TZ),
                  utc=timezone.utc)


add_site_nav("audit", "nav.audit", roles=AUDIT_READERS)
