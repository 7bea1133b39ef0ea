"""The daily report (日报告 / 零报告) of one community, and the street
office's summary across its communities.

`site_daily` extends `reports.daily_report` (whose keys stay as they were)
with what the street office asks for each day:
- entries and exits counted apart (admitted decisions and overrides by
  direction);
- refusals by reason (each denied decision counted once per reason code);
- fever cases: episodes, not readings: the cases the staff board lists
  (sync.server.case_list), with the gate's readings, how the gate closed
  them and the staff follow-ups; `fever_people` counts each person once;
- hand-recorded fevers: a visitor or guard temperature written in a ledger
  at or above the threshold (the kiosk's hundredths rule, `is_fever`); a
  kiosk that opens a fever case for them lists them under cases too;
- visitors; returnees registered that day (from the audit log: a person
  upserted with returnee true who was not one before); people under home
  observation that day (observation_until on or after the day);
- `zero_report`: true when there was no fever case and no hand-recorded
  fever: the explicit "零报告".
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import select

from gateway.thermometry import is_fever
from sync.server import boards, case_list, gate_rules, labels
from sync.server.db import Database, json_object
from sync.server.reports import DEFAULT_TZ, _zone, daily_report
from sync.server.schema import audit, events, registry_state
from sync.server.sites import site_rows, sites_of_office

DEFAULT_THRESHOLD_C = 37.3

REASON_LABELS = {code: zh for code, (zh, _en) in labels.REASONS.items()}
REFUSAL_KINDS = gate_rules.REFUSAL_KINDS  # counted by gate_rules.refusal_counts
HAND_SOURCES = ("visitor_form", "staff_form", "vehicle_form")  # fever cases opened from a typed temperature


def reason_label(code: str) -> str:
    return labels.reason_label(code)


def _policy(db: Database, site_id: str) -> dict:
    """The site's published policy document ({} when none was published)."""
    with db.read() as conn:
        row = conn.execute(select(registry_state.c.payload).where(
            registry_state.c.site_id == site_id, registry_state.c.entity == "policy")).first()
    return json_object(row.payload if row else None)


def _threshold(db: Database, site_id: str) -> float:
    """The site's policy threshold if its policy document names one, else 37.3."""
    value = _policy(db, site_id).get("threshold_c")
    return float(value) if isinstance(value, (int, float)) and 35 <= value <= 40 else DEFAULT_THRESHOLD_C


def site_daily(db: Database, site_id: str, day: date, tz: str = DEFAULT_TZ) -> dict[str, Any]:
    report = daily_report(db, site_id, day, tz)  # validates tz and day
    lo, hi = boards.day_bounds(day, tz)
    threshold = _threshold(db, site_id)
    with db.read() as conn:
        passages = conn.execute(
            select(events.c.kind, events.c.decision, events.c.payload)
            .where(events.c.site_id == site_id, events.c.kind.in_(("decision", "override", "vehicle")),
                   events.c.event_time_ns >= lo, events.c.event_time_ns < hi)).all()
        # Which case each hand-written fever opened, and each case's source (gateway/fever_case.py).
        opened = conn.execute(
            select(events.c.stream_id, events.c.payload)
            .where(events.c.site_id == site_id, events.c.kind == "fever_case.opened",
                   events.c.event_time_ns >= lo, events.c.event_time_ns < hi)).all()
        hand_rows = conn.execute(
            select(events.c.stream_id, events.c.seq, events.c.kind)
            .where(events.c.site_id == site_id,
                   events.c.kind.in_(("ledger.visitors", "ledger.staff_temperatures")),
                   events.c.event_time_ns >= lo, events.c.event_time_ns < hi)
            .order_by(events.c.event_time_ns, events.c.seq)).all()
        audit_rows = conn.execute(
            select(audit.c.entity_id, audit.c.before, audit.c.after)
            .where(audit.c.site_id == site_id, audit.c.entity == "person", audit.c.action == "person.upsert",
                   audit.c.at >= datetime.fromtimestamp(lo / 1e9, timezone.utc),
                   audit.c.at < datetime.fromtimestamp(hi / 1e9, timezone.utc))).all()
        people = conn.execute(select(registry_state.c.entity_id, registry_state.c.payload).where(
            registry_state.c.site_id == site_id, registry_state.c.entity == "person")).all()

    entries = exits = 0
    vehicles: Counter = Counter()
    for kind, decision, payload in passages:
        body = json_object(payload)
        if kind == "vehicle":
            vehicles[f"{decision}_{'out' if body.get('direction') == 'out' else 'in'}"] += 1
        elif decision == "admit":
            if body.get("direction") == "out":
                exits += 1
            else:
                entries += 1
    refusals, tailgates = gate_rules.refusal_counts(db, site_id, day, tz)

    source_of: dict[str, str] = {}
    case_of_trigger: dict[tuple[str, int], str] = {}
    for stream_id, payload in opened:
        detail = json_object(payload).get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("case_id"), str):
            source_of[detail["case_id"]] = str(detail.get("source") or "infrared")
            if isinstance(detail.get("trigger_seq"), int):
                case_of_trigger[(stream_id, detail["trigger_seq"])] = detail["case_id"]

    # The same cases as the staff board and `reports.daily_report` (sync.server.case_list).
    fever_cases = [{
        "person_id": case["person_id"], "pass_id": case["pass_id"], "name": case["name"], "unit": case["unit"],
        "first_time": case["event_time"], "gate": case["gate"], "readings": case["readings"],
        "alerts": case["alert_ids"], "case_id": case["case_id"], "gate_ack": case["gate_ack"],
        "followups": case["followups"], "acknowledged_by": case["acknowledged_by"],
        "source": source_of.get(case["case_id"] or "", "infrared"), "status": case["status"],
        "outcome": case["outcome"],
    } for case in case_list.site_cases(db, site_id, _zone(tz), day=day)]
    people_with_fever = {c["person_id"] or c["pass_id"] or f"alert-{c['alerts'][0]}" for c in fever_cases}

    # Hand-recorded fevers are a breakdown, not an addition: a kiosk with fever cases opens a
    # case for each (listed under fever_cases with its source), so `case_id` names it; an
    # older kiosk's has none and is counted once more in `fever_people`.
    ledger_keys = {"ledger.visitors": [], "ledger.staff_temperatures": []}
    for stream_id, seq, kind in hand_rows:
        ledger_keys[kind].append((stream_id, seq))
    hand = []
    for ledger, who_key in (("visitors", "name"), ("staff_temperatures", "person")):
        keys = ledger_keys[f"ledger.{ledger}"]
        for i, row in enumerate(boards.ledger_rows(db, site_id, ledger, day, tz=tz)):
            value = row.get("temperature_c")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and is_fever(value, threshold):
                hand.append({"ledger": ledger, "time": row["time"], "who": row.get(who_key), "temperature_c": value,
                             "gate": row["gate"], "recorded_by": row["operator"],
                             "case_id": case_of_trigger.get(keys[i]) if i < len(keys) else None})

    returnees = set()
    for entity_id, before, after in audit_rows:
        was, now_ = json_object(before), json_object(after)
        if now_.get("returnee") and not was.get("returnee"):
            returnees.add(entity_id)
    observed = []
    for entity_id, payload in people:
        person = json_object(payload)
        until = person.get("observation_until")
        if until and person.get("status", "active") == "active" and str(until) >= day.isoformat():
            observed.append({"person_id": entity_id, "name": person.get("name"), "unit": person.get("unit"),
                             "until": until})

    policy = _policy(db, site_id)
    disinfection = gate_rules.disinfection_day(
        db, site_id, day, policy.get("disinfection_times") or [],
        float(policy.get("disinfection_overdue_min") or 30.0), tz=tz)
    report.update(
        threshold_c=threshold,
        entries=entries, exits=exits,
        refusals=[{"reason": code, "label": reason_label(code), "count": n}
                  for code, n in sorted(refusals.items(), key=lambda kv: (-kv[1], kv[0]))],
        refusals_total=sum(refusals.values()),
        vehicles={"admitted_in": vehicles["admit_in"], "admitted_out": vehicles["admit_out"],
                  "refused": vehicles["deny_in"] + vehicles["deny_out"]},
        tailgates=tailgates,
        fever_cases=fever_cases,
        hand_recorded_fevers=sorted(hand, key=lambda h: h["time"]),
        fever_people=len(people_with_fever) + sum(1 for h in hand if h["case_id"] is None),
        disinfection={"times": list(policy.get("disinfection_times") or []),
                      "done": sum(g["done"] for g in disinfection.values()),
                      "missed": sum(g["missed"] for g in disinfection.values()), "gates": disinfection},
        visitors=report["totals"]["visitors"],
        returnees_registered=sorted(returnees),
        under_observation=sorted(observed, key=lambda p: p["person_id"]),
    )
    report["zero_report"] = not fever_cases and not hand
    return report


# The street office's columns, in OFFICE_HEADERS order after the name and zero report.
OFFICE_KEYS = ("entries", "exits", "refusals", "fever_cases", "hand_recorded_fevers", "visitors",
               "returnees_registered", "under_observation", "fever_people", "disinfection_missed")


def office_daily(db: Database, street_office: str, day: date, tz: str = DEFAULT_TZ,
                 site_ids: list[str] | None = None) -> dict[str, Any]:
    """One row per community of the street office, plus totals."""
    names = site_rows(db)
    rows = []
    for site_id in site_ids if site_ids is not None else sites_of_office(db, street_office):
        r = site_daily(db, site_id, day, tz)
        rows.append({
            "site": site_id, "name": names.get(site_id, {}).get("name", ""), "zero_report": r["zero_report"],
            "entries": r["entries"], "exits": r["exits"], "refusals": r["refusals_total"],
            "fever_cases": len(r["fever_cases"]), "hand_recorded_fevers": len(r["hand_recorded_fevers"]),
            "visitors": r["visitors"], "returnees_registered": len(r["returnees_registered"]),
            "under_observation": len(r["under_observation"]), "fever_people": r["fever_people"],
            "disinfection_missed": r["disinfection"]["missed"],
        })
    keys = OFFICE_KEYS
    totals = {k: sum(r[k] for r in rows) for k in keys}
    return {"street_office": street_office, "date": day.isoformat(), "timezone": tz, "communities": rows,
            "totals": totals, "zero_reports": sum(1 for r in rows if r["zero_report"])}


# --- files ------------------------------------------------------------------------

SUMMARY_HEADERS = ("项目", "数值")


def _summary_rows(report: dict) -> list[tuple]:
    return [
        ("小区", report["site"]), ("日期", date.fromisoformat(report["date"])),
        ("零报告", "是" if report["zero_report"] else "否"),
        ("进入人次", report["entries"]), ("外出人次", report["exits"]), ("拒绝通行", report["refusals_total"]),
        ("发热病例（人）", len(report["fever_cases"])),
        ("其中手工登记发热立案", sum(1 for h in report["hand_recorded_fevers"] if h["case_id"])),
        ("手工登记发热", len(report["hand_recorded_fevers"])), ("发热人数（不重复）", report["fever_people"]),
        ("车辆进入", report["vehicles"]["admitted_in"]), ("车辆外出", report["vehicles"]["admitted_out"]),
        ("车辆拒绝", report["vehicles"]["refused"]), ("尾随通过", report["tailgates"]),
        ("消毒已完成（次）", report["disinfection"]["done"]), ("消毒未完成（次）", report["disinfection"]["missed"]),
        ("来访登记", report["visitors"]), ("新登记返回人员", len(report["returnees_registered"])),
        ("居家观察人数", len(report["under_observation"])), ("体温阈值(°C)", report["threshold_c"]),
    ]


CASE_HEADERS = ("首次时间", "姓名", "楼号-单元-门牌", "人员编号", "闸机", "体温(°C)", "来源", "值守确认", "处置情况",
                "已处理人")
HAND_HEADERS = ("时间", "台账", "人员", "体温(°C)", "闸机", "登记人", "已立案")
DISINFECTION_HEADERS = ("闸机", "规定时间", "状态", "完成时间")
SOURCE_LABELS = {"infrared": "测温仪", "visitor_form": "来访登记", "staff_form": "值守人员体温", "vehicle_form": "车辆"}
SLOT_LABELS = {"done": "已完成", "missed": "未完成", "overdue": "已超时", "due": "待消毒", "upcoming": "未到时间"}
REFUSAL_HEADERS = ("原因", "代码", "次数")
OBSERVATION_HEADERS = ("人员编号", "姓名", "楼号-单元-门牌", "观察截止日期")


def _case_rows(report: dict) -> list[tuple]:
    rows = []
    for c in report["fever_cases"]:
        ack = c["gate_ack"]
        rows.append((c["first_time"], c["name"] or "", c["unit"] or "", c["person_id"] or c["pass_id"] or "", c["gate"],
                     " / ".join(f"{r:.2f}" for r in c["readings"]), SOURCE_LABELS.get(c["source"], c["source"]),
                     f"{ack['operator']}: {ack['note']}" if ack else "",
                     "; ".join(f"{f['by']}: {f['note']}" for f in c["followups"]), c["acknowledged_by"] or ""))
    return rows


def _hand_rows(report: dict) -> list[tuple]:
    labels = {"visitors": "来访登记", "staff_temperatures": "值守人员体温"}
    return [(h["time"], labels[h["ledger"]], h["who"], h["temperature_c"], h["gate"], h["recorded_by"],
             "是" if h["case_id"] else "否") for h in report["hand_recorded_fevers"]]


def _disinfection_rows(report: dict) -> list[tuple]:
    return [(gate, slot["time"], SLOT_LABELS.get(slot["status"], slot["status"]), slot["done_at"] or "")
            for gate, day in report["disinfection"]["gates"].items() for slot in day["slots"]]


def site_daily_sheets(report: dict) -> list[tuple[str, tuple, list]]:
    return [
        ("日报告", SUMMARY_HEADERS, _summary_rows(report)),
        ("发热病例", CASE_HEADERS, _case_rows(report)),
        ("手工登记发热", HAND_HEADERS, _hand_rows(report)),
        ("拒绝原因", REFUSAL_HEADERS, [(r["label"], r["reason"], r["count"]) for r in report["refusals"]]),
        ("定时消毒", DISINFECTION_HEADERS, _disinfection_rows(report)),
        ("居家观察", OBSERVATION_HEADERS,
         [(p["person_id"], p["name"], p["unit"], date.fromisoformat(p["until"])) for p in report["under_observation"]]),
    ]


def site_daily_csv_rows(report: dict) -> tuple[tuple, list]:
    """One CSV: the summary, then each section under its own header line."""
    rows: list = list(_summary_rows(report))
    for title, headers, section in site_daily_sheets(report)[1:]:
        rows.append(())
        rows.append((f"【{title}】",))
        rows.append(headers)
        rows.extend(section)
    return SUMMARY_HEADERS, rows


OFFICE_HEADERS = ("小区", "名称", "零报告", "进入人次", "外出人次", "拒绝通行", "发热病例（人）", "手工登记发热",
                  "来访登记", "新登记返回人员", "居家观察人数", "发热人数（不重复）", "消毒未完成（次）")


def office_rows(summary: dict) -> list[tuple]:
    keys = OFFICE_KEYS
    rows = [(r["site"], r["name"], "是" if r["zero_report"] else "否", *(r[k] for k in keys))
            for r in summary["communities"]]
    rows.append(("合计", "", f"{summary['zero_reports']} 个零报告", *(summary["totals"][k] for k in keys)))
    return rows
