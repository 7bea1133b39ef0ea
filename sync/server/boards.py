"""What the staff boards show, read from what the gates uploaded.

One function per board, each reading defensively (columns other branches
add to `alerts` show up through `row._mapping`, absent ones are None):
- `gate_board`: per gate, last contact (any request) and last upload, online, duty (shift sign-in/out),
  the unattended alarm (latest staffing event is `unstaffed`), device health
  (latest `health` event, if the gate sends one) and how far behind its last
  upload was.
- `fever_cases`: one row per `alerts` row (a case once ingest groups
  re-measures), with the person's name and unit from the registry, the
  gate's acknowledgement (`fever_ack` events) and staff follow-ups.
- `ledger_rows`: visitors, guard temperatures, disinfection, overrides.
`add_followup` and `acknowledge_case` are the board's two changes (audited).
"""

from __future__ import annotations

import math

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import and_, func, select

from gateway.clock import to_ns
from sync.server import audit, contacts, registry
from sync.server.db import Database
from sync.server.reports import DEFAULT_TZ, _zone
from sync.server.schema import alert_followups, alerts, events, gates, registry_state, streams

ONLINE_WITHIN = timedelta(minutes=5)  # kiosks upload every 30 s by default
# Kinds that say whether someone is at the gate, newest wins.
STAFFING_KINDS = ("ledger.shifts", "unstaffed", "staffed")
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
    start = datetime.combine(day, time(0), _zone(tz))
    return to_ns(start.astimezone(timezone.utc)), to_ns((start + timedelta(days=1)).astimezone(timezone.utc))


def _payload(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
    health: dict[str, Any]
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
            staffing = conn.execute(
                select(events.c.kind, events.c.event_time_ns, events.c.payload)
                .where(events.c.site_id == site_id, events.c.gate_id == gate.id, events.c.kind.in_(STAFFING_KINDS))
                .order_by(events.c.event_time_ns.desc(), events.c.seq.desc()).limit(1)).first()
            health = conn.execute(
                select(events.c.payload)
                .where(events.c.site_id == site_id, events.c.gate_id == gate.id, events.c.kind.in_(HEALTH_KINDS))
                .order_by(events.c.event_time_ns.desc(), events.c.seq.desc()).limit(1)).first()
            on_duty, since, unattended = None, None, False
            if staffing is not None:
                body = _payload(staffing.payload)
                detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
                if staffing.kind == "unstaffed":
                    unattended = True
                elif staffing.kind == "ledger.shifts" and detail.get("action") == "sign_in":
                    on_duty = str(detail.get("operator_id") or body.get("operator") or "")
                    since = _time(staffing.event_time_ns, tz)
                elif staffing.kind == "staffed":
                    on_duty = str(body.get("operator") or detail.get("operator") or "")
                    since = _time(staffing.event_time_ns, tz)
            health_detail = _payload(health.payload).get("detail") if health else None
            rows.append(GateRow(
                name=gate.name, enrolled=gate.revoked_at is None, last_contact=max(filter(None, (last, seen)), default=None),
                last_upload=last, events_received=int(upload[1] or 0),
                behind_s=behind, on_duty=on_duty, duty_since=since, unattended=unattended,
                health=health_detail if isinstance(health_detail, dict) else {},
            ))
    for row in rows:
        row.online = row.enrolled and row.last_contact is not None and now - row.last_contact <= ONLINE_WITHIN
    return rows


# --- fever cases --------------------------------------------------------------------


def fever_cases(db: Database, site_id: str, *, day: date | None = None, open_only: bool = False,
                tz: str = DEFAULT_TZ, limit: int = 500) -> list[dict[str, Any]]:
    """One dict per alert (case), newest first. Keys: every `alerts` column,
    plus event_time, name, unit, readings (first, highest), reading_count,
    gate_ack {operator, note, time[, outcome, clinical_c]} from a `fever_ack`
    event or the case closed at the gate, followups [{at, by, note}],
    staff_acknowledged."""
    query = select(alerts).where(alerts.c.site_id == site_id)
    if day is not None:
        lo, hi = day_bounds(day, tz)
        query = query.where(alerts.c.event_time_ns >= lo, alerts.c.event_time_ns < hi)
    if open_only:
        query = query.where(alerts.c.acknowledged_at.is_(None))
    with db.read() as conn:
        rows = conn.execute(query.order_by(alerts.c.event_time_ns.desc(), alerts.c.id.desc()).limit(limit)).all()
        person_ids = {r.person_id for r in rows if r.person_id}
        people = {}
        if person_ids:
            for r in conn.execute(select(registry_state.c.entity_id, registry_state.c.payload).where(
                    registry_state.c.site_id == site_id, registry_state.c.entity == "person",
                    registry_state.c.entity_id.in_(person_ids))):
                people[r.entity_id] = _payload(r.payload)
        acks: dict[tuple[str, int], dict] = {}
        streams_seen = {r.stream_id for r in rows}
        if streams_seen:
            for r in conn.execute(select(events.c.stream_id, events.c.event_time_ns, events.c.payload).where(
                    events.c.site_id == site_id, events.c.kind == "fever_ack",
                    events.c.stream_id.in_(streams_seen))):
                body = _payload(r.payload)
                detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
                if isinstance(detail.get("seq"), int):
                    acks[(r.stream_id, detail["seq"])] = {"operator": body.get("operator"), "note": detail.get("note"),
                                                          "time": _time(r.event_time_ns, tz)}
        notes: dict[int, list] = {}
        if rows:
            for r in conn.execute(select(alert_followups).where(alert_followups.c.alert_id.in_([x.id for x in rows]))
                                  .order_by(alert_followups.c.id)):
                notes.setdefault(r.alert_id, []).append({"at": _aware(r.at).astimezone(_zone(tz)), "by": r.by,
                                                         "note": r.note})
    cases = []
    for row in rows:
        # A reading stored before input was checked (NaN) shows as unknown, never a 500.
        case = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row._mapping.items()}
        person = people.get(row.person_id, {})
        case.update(
            event_time=_time(row.event_time_ns, tz), name=person.get("name"), unit=person.get("unit"),
            readings=_readings(case), reading_count=_reading_count(case),
            gate_ack=acks.get((row.stream_id, row.seq)) or _closed_at_gate(case, tz),
            followups=notes.get(row.id, []), staff_acknowledged=row.acknowledged_at is not None,
        )
        cases.append(case)
    return cases


# An alert row is either one flagged reading (older kiosks) or one fever case
# (columns readings = count, max_c, clinical_c, status, outcome,
# gate_operator, note, closed_at). These read either shape.


def _readings(case: dict) -> list[float]:
    """The readings to show: the first and, for a case, the highest."""
    values = [v for v in (case.get("body_c"), case.get("max_c")) if isinstance(v, (int, float))]
    return list(dict.fromkeys(values))


def _reading_count(case: dict) -> int:
    count = case.get("readings")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else len(_readings(case))


def _closed_at_gate(case: dict, tz: str) -> dict | None:
    """A case the guard closed at the gate: who, the note and the outcome."""
    if not (case.get("gate_operator") or case.get("note") or case.get("outcome")):
        return None
    closed = _aware(case.get("closed_at"))
    return {"operator": case.get("gate_operator"), "note": case.get("note"), "outcome": case.get("outcome"),
            "clinical_c": case.get("clinical_c"), "time": closed.astimezone(_zone(tz)) if closed else None}


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


def acknowledge_case(db: Database, site_id: str, alert_id: int, *, by: str) -> dict:
    return registry.acknowledge_alert(db, alert_id, by, site_id=site_id)


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
}


def ledger_rows(db: Database, site_id: str, ledger: str, day: date, *, tz: str = DEFAULT_TZ) -> list[dict]:
    """The ledger's rows of one local day, oldest first; keys as in LEDGERS."""
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
        body = _payload(r.payload)
        detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
        row = {**{k: v for k, v in detail.items() if not isinstance(v, (dict, list))},
               "time": _time(r.event_time_ns, tz), "gate": names.get(r.gate_id, str(r.gate_id)),
               "operator": body.get("operator"), "person_id": r.person_id, "body_c": r.body_c,
               "direction": body.get("direction")}
        out.append({key: row.get(key) for key, _zh, _en in columns})
    return out
