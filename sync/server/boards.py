"""What the staff boards show, read from what the gates uploaded.

One function per board, each reading defensively (columns other branches
add to `alerts` show up through `row._mapping`, absent ones are None):
- `gate_board`: per gate, last contact (any request) and last upload, online, duty and
  the unattended alarm (`gate_rules.staffing_of`, the one staffing rule), device health
  and upload backlog (the kiosk's latest `health` event, gateway/health_report.py)
  and how far behind its last upload was.
- `fever_cases`: the site's cases (sync.server.case_list, shared with the
  daily reports), with the person's name and unit from the registry, how
  the gate closed them and staff follow-ups.
- `ledger_rows`: visitors, guard temperatures, disinfection, overrides, vehicles (车辆台账).
`add_followup` and `acknowledge_case` are the board's two changes (audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, func, select

from gateway.clock import to_ns
from sync.server import audit, case_list, contacts, gate_rules, labels, registry
from sync.server.db import Database, json_object
from sync.server.reports import DEFAULT_TZ, _zone
from sync.server.schema import alert_followups, alerts, events, gates, streams

ONLINE_WITHIN = timedelta(minutes=5)  # kiosks upload every 30 s by default
HEALTH_KINDS = ("health", "device_health")


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _time(ns: int | None, tz: str = DEFAULT_TZ) -> datetime | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).astimezone(_zone(tz))


def day_bounds(day: date, tz: str = DEFAULT_TZ) -> tuple[int, int]:
    """[lo, hi) in epoch nanoseconds for a local calendar day."""
    return case_list.day_bounds(day, _zone(tz))


# --- gates ------------------------------------------------------------------------


@dataclass
class GateRow:
    name: str
    enrolled: bool
    last_contact: datetime | None  # any authenticated request (uploads, registry reads)
    last_upload: datetime | None
    events_received: int
    behind_s: float | None  # how old the oldest event of the last upload was when it arrived
    on_duty: str | None
    duty_since: datetime | None
    unattended: bool
    health: dict[str, Any]  # device -> status word (ok, warn, fault, off)
    backlog: int | None = None  # events the kiosk had not yet uploaded, as its last health event said
    health_at: datetime | None = None
    online: bool = False


def gate_board(db: Database, site_id: str, *, now: datetime | None = None, tz: str = DEFAULT_TZ) -> list[GateRow]:
    now = now or datetime.now(timezone.utc)
    rows = []
    with db.read() as conn:
        for gate in conn.execute(select(gates).where(gates.c.site_id == site_id).order_by(gates.c.name, gates.c.id)):
            upload = conn.execute(
                select(func.max(streams.c.last_upload_at), func.coalesce(func.sum(streams.c.acked_through), 0))
                .where(streams.c.gate_id == gate.id)).one()
            last = _aware(upload[0])
            seen = contacts.last_seen(conn, gate.id)
            behind = None
            if last is not None:
                oldest = conn.execute(select(func.min(events.c.event_time_ns)).where(
                    events.c.gate_id == gate.id, events.c.received_at >= last - timedelta(seconds=1))).scalar()
                if oldest is not None:
                    behind = max(0.0, (to_ns(last) - oldest) / 1e9)
            staffing = gate_rules.staffing_of(conn, site_id, gate.id)
            health = conn.execute(
                select(events.c.payload, events.c.event_time_ns)
                .where(events.c.site_id == site_id, events.c.gate_id == gate.id, events.c.kind.in_(HEALTH_KINDS))
                .order_by(events.c.event_time_ns.desc(), events.c.seq.desc()).limit(1)).first()
            health_detail = json_object(health.payload).get("detail") if health else None
            health_detail = health_detail if isinstance(health_detail, dict) else {}
            # The kiosk's `health` event (gateway/health_report.py): {"devices": {name: status}, "pending": n}.
            devices = health_detail.get("devices") if isinstance(health_detail.get("devices"), dict) else health_detail
            pending = health_detail.get("pending")
            rows.append(GateRow(
                name=gate.name, enrolled=gate.revoked_at is None, last_contact=max(filter(None, (last, seen)), default=None),
                last_upload=last, events_received=int(upload[1] or 0),
                behind_s=behind, on_duty=staffing.on_duty, duty_since=_time(staffing.duty_since_ns, tz),
                unattended=staffing.unstaffed,
                health={str(k): v for k, v in devices.items() if k != "pending"},
                backlog=pending if isinstance(pending, int) and not isinstance(pending, bool) else None,
                health_at=_time(health.event_time_ns, tz) if health else None,
            ))
    for row in rows:
        row.online = row.enrolled and row.last_contact is not None and now - row.last_contact <= ONLINE_WITHIN
    return rows


# --- fever cases --------------------------------------------------------------------


def fever_cases(db: Database, site_id: str, *, day: date | None = None, open_only: bool = False,
                tz: str = DEFAULT_TZ, limit: int = 500) -> list[dict[str, Any]]:
    """The site's fever cases, newest first (sync.server.case_list.site_cases: the same
    cases the daily reports list). `id` is the alert the board's buttons act on."""
    cases = case_list.site_cases(db, site_id, _zone(tz), day=day, open_only=open_only, limit=limit)
    return [{**case, "id": case["alert_id"]} for case in reversed(cases)]


def add_followup(db: Database, site_id: str, alert_id: int, note: str, *, by: str) -> None:
    """A staff follow-up note on a case (audited); the case must be the site's."""
    note = note.strip()
    if not note or len(note) > 500:
        raise registry.RegistryError("a follow-up note has 1-500 characters")
    with db.write() as conn:
        if conn.execute(select(alerts.c.site_id).where(alerts.c.id == alert_id)).scalar() != site_id:
            raise registry.RegistryError(f"no alert {alert_id}")
        now = datetime.now(timezone.utc)
        conn.execute(alert_followups.insert().values(alert_id=alert_id, at=now, by=by, note=note))
        audit.record(conn, actor=by, action="alert.followup", site_id=site_id, entity="alert",
                     entity_id=str(alert_id), before=None, after={"note": note})


def acknowledge_case(db: Database, site_id: str, alert_id: int, *, by: str, tz: str = DEFAULT_TZ) -> None:
    """Acknowledge the case whose first alert is `alert_id`: every alert row of it (an older
    kiosk's re-measures of one person are one case)."""
    with db.read() as conn:
        when = conn.execute(select(alerts.c.event_time_ns).where(
            alerts.c.id == alert_id, alerts.c.site_id == site_id)).scalar()
    if when is None:
        raise registry.RegistryError(f"no alert {alert_id}")
    day = _time(when, tz).date()
    group = next((c["alert_ids"] for c in case_list.site_cases(db, site_id, _zone(tz), day=day)
                  if alert_id in c["alert_ids"]), [alert_id])
    for member in group:
        registry.acknowledge_alert(db, member, by, site_id=site_id)


# --- ledgers -------------------------------------------------------------------------

# ledger -> (event kind, [(column key, zh header, en header)])
LEDGERS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "visitors": ("ledger.visitors", [
        ("time", "时间", "Time"), ("gate", "闸机", "Gate"), ("name", "姓名", "Name"), ("origin", "来自", "From"),
        ("phone", "联系电话", "Phone"), ("address", "住址", "Address"), ("reason", "事由", "Reason"),
        ("visiting", "拜访", "Visiting"), ("temperature_c", "体温(°C)", "Temperature (°C)"),
        ("special_case", "特殊情况", "Special case"), ("filed_ref", "备案号", "Filed ref."),
        ("operator", "登记人", "Recorded by")]),
    "staff_temperatures": ("ledger.staff_temperatures", [
        ("time", "时间", "Time"), ("gate", "闸机", "Gate"), ("person", "人员", "Person"),
        ("period", "时段", "Period"), ("temperature_c", "体温(°C)", "Temperature (°C)"),
        ("operator", "登记人", "Recorded by")]),
    "disinfections": ("ledger.disinfections", [
        ("time", "时间", "Time"), ("gate", "闸机", "Gate"), ("note", "备注", "Note"),
        ("operator", "登记人", "Recorded by")]),
    "overrides": ("override", [
        ("time", "时间", "Time"), ("gate", "闸机", "Gate"), ("operator", "值守人员", "Guard"),
        ("override_reason", "原因", "Reason"), ("note", "备注", "Note"), ("person_id", "人员编号", "Person id"),
        ("body_c", "体温(°C)", "Temperature (°C)"), ("direction", "方向", "Direction")]),
    # 车辆台账 (L424): one row per vehicle passage (gateway/vehicles.py's `vehicle` events).
    "vehicles": ("vehicle", [
        ("time", "时间", "Time"), ("gate", "闸机", "Gate"), ("plate", "车牌号", "Plate"),
        ("household", "户", "Household"), ("driver", "驾驶人", "Driver"),
        ("occupants", "车内人员及体温(°C)", "Occupants and temperatures (°C)"),
        ("max_body_c", "最高体温(°C)", "Highest (°C)"), ("direction", "方向", "Direction"),
        ("decision", "结果", "Decision"), ("reasons", "原因", "Reasons"), ("operator", "值守人员", "Guard")]),
}


def _occupants(value: Any) -> str | None:
    """A vehicle's occupants as one cell: 张三 36.5; 李四 37.5."""
    if not isinstance(value, list):
        return None
    cells = []
    for occupant in value:
        if not isinstance(occupant, dict):
            continue
        body = occupant.get("body_c")
        reading = f"{body:.1f}" if isinstance(body, (int, float)) and not isinstance(body, bool) else "—"
        cells.append(f"{occupant.get('name') or '?'} {reading}")
    return "; ".join(cells)


def ledger_rows(db: Database, site_id: str, ledger: str, day: date, *, tz: str = DEFAULT_TZ,
                lang: str | None = None) -> list[dict]:
    """The ledger's rows of one local day, oldest first; keys as in LEDGERS. With `lang`
    ("zh" or "en") the vehicle ledger's direction, decision and reasons are words in that
    language (pages and exports), else the codes the gates sent."""
    kind, columns = LEDGERS[ledger]
    lo, hi = day_bounds(day, tz)
    with db.read() as conn:
        names = {r.id: r.name for r in conn.execute(select(gates.c.id, gates.c.name).where(gates.c.site_id == site_id))}
        found = conn.execute(
            select(events.c.gate_id, events.c.event_time_ns, events.c.person_id, events.c.body_c, events.c.payload)
            .where(events.c.site_id == site_id, events.c.kind == kind,
                   and_(events.c.event_time_ns >= lo, events.c.event_time_ns < hi))
            .order_by(events.c.event_time_ns, events.c.seq)).all()
    out = []
    for r in found:
        body = json_object(r.payload)
        detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
        row = {**{k: v for k, v in detail.items() if not isinstance(v, (dict, list))},
               "time": _time(r.event_time_ns, tz), "gate": names.get(r.gate_id, str(r.gate_id)),
               "operator": body.get("operator"), "person_id": r.person_id, "body_c": r.body_c,
               "direction": body.get("direction")}
        if ledger == "vehicles":  # lists made readable in one cell
            reasons = [str(x) for x in body.get("reasons") or []]
            row.update(occupants=_occupants(detail.get("occupants")), decision=body.get("decision"),
                       reasons=", ".join(reasons))
            if lang is not None:
                row.update(direction=labels.direction_label(row["direction"], lang),
                           decision=labels.decision_label(row["decision"], lang),
                           reasons=("、" if lang == "zh" else ", ").join(labels.reason_label(r, lang) for r in reasons))
        out.append({key: row.get(key) for key, _zh, _en in columns})
    return out
