"""The street office's daily report for one site (`registry report daily`).

Counts come from the events the gates uploaded, placed on the day by their
best known time (see ingest: synced clock, else corrected from a clock
anchor). Fevers are counted as *cases* (one person, one episode: however
many re-measures), from the alerts table (sync/server/cases.py), not as
flagged readings. Under the zero-report rule a day without a fever case is
still reported, explicitly: `"zero_report": true`.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select

from gateway.clock import to_ns
from sync.server.cases import cases_for_day
from sync.server.db import Database
from sync.server.schema import events, gates

DEFAULT_TZ = "Asia/Shanghai"


class ReportError(ValueError):
    pass


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {name!r} (e.g. Asia/Shanghai)") from None


def daily_report(db: Database, site_id: str, day: date, tz: str = DEFAULT_TZ) -> dict:
    zone = _zone(tz)
    if not 2000 <= day.year <= 2200:  # event times are int64 nanoseconds
        raise ReportError(f"date {day} is out of range (2000-2200)")
    start = datetime.combine(day, time(0), zone)
    lo, hi = to_ns(start.astimezone(timezone.utc)), to_ns((start + timedelta(days=1)).astimezone(timezone.utc))
    in_day = (events.c.site_id == site_id, events.c.event_time_ns >= lo, events.c.event_time_ns < hi)
    with db.read() as conn:
        names = {r.id: r.name for r in conn.execute(select(gates.c.id, gates.c.name).where(gates.c.site_id == site_id))}
        grouped = conn.execute(
            select(events.c.gate_id, events.c.kind, events.c.decision, events.c.flagged, func.count().label("n"))
            .where(*in_day)
            .group_by(events.c.gate_id, events.c.kind, events.c.decision, events.c.flagged)
        ).all()
        unknown = conn.execute(
            select(func.count()).select_from(events).where(*in_day, events.c.time_source == "unknown")
        ).scalar()

    per_gate: dict[str, dict[str, int]] = {}
    totals = {"decisions": 0, "admit": 0, "deny": 0, "fever": 0, "overrides": 0, "visitors": 0}
    for gate_id, kind, decision, flagged, n in grouped:
        name = names.get(gate_id, str(gate_id))
        row = per_gate.setdefault(name, {"admit": 0, "deny": 0, "fever": 0})
        if kind == "decision":
            totals["decisions"] += n
            if decision in ("admit", "deny"):
                totals[decision] += n
                row[decision] += n
        elif kind == "override":
            totals["overrides"] += n
        elif kind == "ledger.visitors":
            totals["visitors"] += n
    fevers = cases_for_day(db, site_id, day, zone)
    for case in fevers:
        totals["fever"] += 1
        per_gate.setdefault(case["gate"], {"admit": 0, "deny": 0, "fever": 0})["fever"] += 1
    return {
        "site": site_id,
        "date": day.isoformat(),
        "timezone": tz,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "zero_report": totals["fever"] == 0,
        "totals": totals,
        "gates": [{"gate": name, **counts} for name, counts in sorted(per_gate.items())],
        # One entry per fever case: its first reading's time, the highest reading, how many,
        # the clinical reading, and how the gate closed it (outcome, operator, note).
        "fevers": [{**case, "decision": case["outcome"] or case["status"]} for case in fevers],
        "events_with_unknown_time": unknown,
    }


def report_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["site", report["site"]])
    writer.writerow(["date", report["date"]])
    writer.writerow(["zero_report", str(report["zero_report"]).lower()])
    for key, value in report["totals"].items():
        writer.writerow([key, value])
    writer.writerow([])
    writer.writerow(["gate", "admit", "deny", "fever"])
    for g in report["gates"]:
        writer.writerow([g["gate"], g["admit"], g["deny"], g["fever"]])
    writer.writerow([])
    writer.writerow(["fever_time", "gate", "person_id", "pass_id", "body_c", "decision", "readings", "clinical_c",
                     "gate_operator", "note"])
    for f in report["fevers"]:
        writer.writerow([f["time"], f["gate"], f["person_id"], f["pass_id"], f["body_c"], f["decision"],
                         f["readings"], f["clinical_c"], f["gate_operator"], f["note"]])
    return out.getvalue()


def report_xlsx(report: dict) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "汇总 Summary"
    sheet.append(["小区 site", report["site"]])
    sheet.append(["日期 date", report["date"]])
    sheet.append(["零报告 zero report", "是 yes" if report["zero_report"] else "否 no"])
    for key, value in report["totals"].items():
        sheet.append([key, value])
    sheet.append([])
    sheet.append(["闸机 gate", "放行 admit", "拒绝 deny", "发热 fever"])
    for g in report["gates"]:
        sheet.append([g["gate"], g["admit"], g["deny"], g["fever"]])
    fevers = book.create_sheet("发热 Fevers")
    fevers.append(["时间 time", "闸机 gate", "人员 person", "通行证 pass", "最高体温 body_c", "结果 decision",
                   "测量次数 readings", "体温计 clinical_c", "处置人 operator", "说明 note"])
    for f in report["fevers"]:
        fevers.append([f["time"], f["gate"], f["person_id"], f["pass_id"], f["body_c"], f["decision"],
                       f["readings"], f["clinical_c"], f["gate_operator"], f["note"]])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
