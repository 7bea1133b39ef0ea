"""The daily report (日报告/零报告) of a community and the street office's
summary, as pages and as CSV / XLSX downloads (Chinese headers)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import quote

from fastapi import HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse

from sync.server import daily
from sync.server.reports import ReportError
from sync.server.sites import known_sites, offices, sites_of_office
from sync.server.web import i18n
from sync.server.web.boards_pages import download, today
from sync.server.web.core import PREFIX, StaffPage, page_router, render, site_guard

router = page_router()

i18n.register({
    "report.title": ("日报告", "Daily report"),
    "report.zero": ("零报告：当日无发热病例", "Zero report: no fever case that day"),
    "report.entries": ("进入人次", "Entries"),
    "report.exits": ("外出人次", "Exits"),
    "report.refusals": ("拒绝通行", "Refusals"),
    "report.refusals_by_reason": ("拒绝原因", "Refusals by reason"),
    "report.reason": ("原因", "Reason"),
    "report.count": ("次数", "Count"),
    "report.cases": ("发热病例（人）", "Fever cases (people)"),
    "report.hand": ("手工登记发热", "Hand-recorded fevers"),
    "report.visitors": ("来访登记", "Visitors"),
    "report.returnees": ("新登记返回人员", "Returnees registered"),
    "report.observation": ("居家观察人数", "Under home observation"),
    "report.first_time": ("首次时间", "First seen"),
    "report.who": ("人员", "Person"),
    "report.ledger": ("台账", "Ledger"),
    "report.recorded_by": ("登记人", "Recorded by"),
    "report.until": ("观察截止日期", "Observation until"),
    "report.fever_people": ("发热人数（不重复）", "People with a fever (each once)"),
    "report.hand_cased": ("其中 {n} 人已在闸机立案", "{n} of them opened a case at the gate"),
    "report.source": ("来源", "Source"),
    "report.source.infrared": ("测温仪", "thermometer"), "report.source.visitor_form": ("来访登记", "visitor form"),
    "report.source.staff_form": ("值守人员体温", "guard temperature"), "report.source.vehicle_form": ("车辆", "vehicle"),
    "report.vehicles_in": ("车辆进入", "Vehicles in"), "report.vehicles_out": ("车辆外出", "Vehicles out"),
    "report.vehicles_refused": ("车辆拒绝", "Vehicles refused"), "report.tailgates": ("尾随通过", "Tailgates"),
    "report.disinfection": ("定时消毒", "Disinfection at set times"),
    "report.disinfection_done": ("消毒已完成", "Disinfections done"),
    "report.disinfection_missed": ("消毒未完成", "Disinfections missed"),
    "report.slot_time": ("规定时间", "Set time"), "report.slot_status": ("状态", "Status"),
    "report.slot.done": ("已完成", "done"), "report.slot.missed": ("未完成", "missed"),
    "report.slot.overdue": ("已超时", "overdue"), "report.slot.due": ("待消毒", "due"),
    "report.slot.upcoming": ("未到时间", "upcoming"),
    "report.unknown_time": ("{n} 条事件时间未知，未计入", "{n} events with an unknown time are not counted"),
    "office.title": ("街道汇总", "Street office summary"),
    "office.pick": ("选择街道", "Choose a street office"),
    "office.none": ("没有可查看的街道", "No street office to show"),
    "office.community": ("小区", "Community"),
    "office.zero_reports": ("零报告小区数", "Zero reports"),
    "office.total": ("合计", "Total"),
})

SiteId = Annotated[str, Path(min_length=1, max_length=64)]
Day = Annotated[date | None, Query()]


def _site_report(request: Request, staff, site_id: str, day: date | None) -> dict:
    site_guard(staff, site_id, change=False, known=known_sites(request.app.state.db))
    try:
        return daily.site_daily(request.app.state.db, site_id, day or today())
    except ReportError as exc:
        raise HTTPException(422, {"error": "invalid", "detail": str(exc)}) from None


@router.get("/sites/{site_id}/report")
def site_report(request: Request, site_id: SiteId, staff: StaffPage, day: Day = None):
    report = _site_report(request, staff, site_id, day)
    return render(request, "report.html", site=site_id, board="report", report=report,
                  day=date.fromisoformat(report["date"]))


@router.get("/sites/{site_id}/report.{fmt}")
def site_report_file(request: Request, site_id: SiteId, fmt: str, staff: StaffPage, day: Day = None):
    report = _site_report(request, staff, site_id, day)
    stem = f"{site_id}-日报告-{report['date']}"
    if fmt == "xlsx":
        from fastapi.responses import Response

        from sync.server import exports

        return Response(exports.to_xlsx(daily.site_daily_sheets(report)),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem)}.xlsx",
                                 "Cache-Control": "no-store"})
    headers, rows = daily.site_daily_csv_rows(report)
    return download(stem, fmt, headers, rows, "日报告")


def _readable_offices(request: Request, staff) -> list[str]:
    return [o for o in offices(request.app.state.db) if staff.can_read_office(o)]


@router.get("/offices")
def office_list(request: Request, staff: StaffPage):
    mine = _readable_offices(request, staff)
    if len(mine) == 1:
        return RedirectResponse(f"{PREFIX}/offices/{quote(mine[0])}", status_code=303)
    return render(request, "offices.html", board="office", offices=mine)


def _office_summary(request: Request, staff, office: str, day: date | None) -> dict:
    if not staff.can_read_office(office):
        raise HTTPException(403, {"error": "forbidden", "detail": f"{staff.name} may not read street office {office}"})
    db = request.app.state.db
    communities = sites_of_office(db, office)
    if not communities:
        raise HTTPException(404, {"error": "not_found", "detail": f"no street office {office}"})
    return daily.office_daily(db, office, day or today(), site_ids=communities)


@router.get("/offices/{office}")
def office_report(request: Request, office: Annotated[str, Path(max_length=64)], staff: StaffPage, day: Day = None):
    summary = _office_summary(request, staff, office, day)
    return render(request, "office.html", board="office", summary=summary, office=office,
                  day=date.fromisoformat(summary["date"]))


@router.get("/offices/{office}/summary.{fmt}")
def office_report_file(request: Request, office: Annotated[str, Path(max_length=64)], fmt: str, staff: StaffPage,
                       day: Day = None):
    summary = _office_summary(request, staff, office, day)
    return download(f"{office}-街道汇总-{summary['date']}", fmt, daily.OFFICE_HEADERS, daily.office_rows(summary),
                    "街道汇总")
