"""What the registry knows about the gate rules, from the events the gates
uploaded (issue 12). For the reg-staff pages (gates board, reports):

- `staffing_of(conn, site, gate)`: the one staffing rule (the newest shift
  sign-in/out, ``unstaffed`` or ``staffed`` event), which the gates board uses;
  `gate_staffing(db, site)`: it for every gate (L607: which gates are staffed);
- `refusal_counts(db, site, day)`: refusals by reason code and tailgates, the
  daily report's count; `gate_rule_counts(db, site, day)`: the same for the
  gate-rule codes (no mask, refused measurement, one at a time, vehicles);
- `disinfections_logged(db, site, day)`: the disinfection times each gate
  logged; `disinfection_day(db, site, day, policy.disinfection_times)`: per
  gate, each set time done or missed (`gateway.disinfection.disinfection_report`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.clock import to_ns
from sync.server.db import Database, json_object
from sync.server.schema import events, gates

# Events whose refusals count: people at the gate, several passes in one frame, and
# vehicles. (A tailgate is an incident, counted apart.)
REFUSAL_KINDS = ("decision", "one_at_a_time", "vehicle")
RULE_REASONS = ("no_mask", "refused_measurement", "one_at_a_time", "tailgate", "gate_closed", "unstaffed",
                "vehicle_outside", "vehicle_exception", "vehicle_no_pass")


# Kinds that say whether someone is at the gate, newest wins: the guard's
# shift sign-in/out (ledger), the kiosk's unstaffed alarm and its end.
STAFFING_KINDS = ("ledger.shifts", "unstaffed", "staffed")


@dataclass(frozen=True)
class Staffing:
    """One gate's staffing as its newest staffing event tells it."""

    on_duty: str | None = None  # the guard signed in (sign-in or the end of an alarm)
    duty_since_ns: int | None = None
    unstaffed: bool = False  # the alarm (L607): nobody on duty past the policy's grace
    since: str | None = None  # when the gate was left without a guard (the kiosk's clock)
    unattended: str | None = None  # what the kiosk does meanwhile: screen or refuse
    changed_ns: int | None = None


def staffing_of(conn, site_id: str, gate_id: int) -> Staffing:
    """The one staffing rule: the gate's newest shift sign-in/out, unstaffed or
    staffed event decides. Used by the gates board and `gate_staffing`."""
    row = conn.execute(
        select(events.c.kind, events.c.event_time_ns, events.c.payload)
        .where(events.c.site_id == site_id, events.c.gate_id == gate_id, events.c.kind.in_(STAFFING_KINDS))
        .order_by(events.c.event_time_ns.desc(), events.c.seq.desc()).limit(1)).first()
    if row is None:
        return Staffing()
    body = json_object(row.payload)
    detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
    if row.kind == "unstaffed":
        return Staffing(unstaffed=True, since=detail.get("since"), unattended=detail.get("unattended"),
                        changed_ns=row.event_time_ns)
    if row.kind == "ledger.shifts" and detail.get("action") == "sign_in":
        name = detail.get("operator_id") or body.get("operator")
        return Staffing(on_duty=str(name or ""), duty_since_ns=row.event_time_ns, changed_ns=row.event_time_ns)
    if row.kind == "staffed":
        name = body.get("operator") or detail.get("operator")
        return Staffing(on_duty=str(name or ""), duty_since_ns=row.event_time_ns, changed_ns=row.event_time_ns)
    return Staffing(changed_ns=row.event_time_ns)  # signed out or the shift ended: nobody, no alarm yet


def gate_staffing(db: Database, site_id: str) -> list[dict]:
    """Every gate of the site: staffed or unstaffed (an alarm), by `staffing_of`."""
    with db.read() as conn:
        names = {r.id: r.name for r in conn.execute(
            select(gates.c.id, gates.c.name).where(gates.c.site_id == site_id, gates.c.revoked_at.is_(None)))}
        states = {gate_id: staffing_of(conn, site_id, gate_id) for gate_id in names}
    board = []
    for gate_id, name in sorted(names.items(), key=lambda item: item[1]):
        state = states[gate_id]
        t = state.changed_ns
        board.append({
            "gate": name,
            "unstaffed": state.unstaffed,
            "on_duty": state.on_duty,
            "since": state.since,
            "unattended": state.unattended,
            "changed_at": datetime.fromtimestamp(t / 1e9, timezone.utc).isoformat(timespec="seconds") if t else None,
        })
    return board


def refusal_counts(db: Database, site_id: str, day: date, tz: str = "Asia/Shanghai") -> tuple[Counter, int]:
    """The day's refusals by reason code (each refused event of REFUSAL_KINDS once per code,
    "unknown" when it names none) and its tailgates: the one count behind the daily report
    and `gate_rule_counts`."""
    lo, hi = _day_bounds(day, ZoneInfo(tz))
    with db.read() as conn:
        rows = conn.execute(
            select(events.c.kind, events.c.payload)
            .where(events.c.site_id == site_id, events.c.kind.in_((*REFUSAL_KINDS, "tailgate")),
                   events.c.event_time_ns >= lo, events.c.event_time_ns < hi,
                   (events.c.decision == "deny") | (events.c.kind == "tailgate"))).all()
    refusals: Counter = Counter()
    tailgates = 0
    for kind, payload in rows:
        if kind == "tailgate":
            tailgates += 1
            continue
        for code in dict.fromkeys(_detail_reasons(payload) or ["unknown"]):
            refusals[code] += 1
    return refusals, tailgates


def gate_rule_counts(db: Database, site_id: str, day: date, tz: str = "Asia/Shanghai") -> dict[str, int]:
    """The day's refusals by gate-rule reason code, and its tailgates (`refusal_counts`)."""
    refusals, tailgates = refusal_counts(db, site_id, day, tz)
    return {**{code: refusals[code] for code in RULE_REASONS}, "tailgate": tailgates}


def disinfections_logged(db: Database, site_id: str, day: date, tz: str = "Asia/Shanghai") -> dict[str, list[datetime]]:
    """Per gate name, when the thermometer was disinfected that day."""
    zone = ZoneInfo(tz)
    lo, hi = _day_bounds(day, zone)
    with db.read() as conn:
        names = {r.id: r.name for r in conn.execute(select(gates.c.id, gates.c.name).where(gates.c.site_id == site_id))}
        rows = conn.execute(
            select(events.c.gate_id, events.c.event_time_ns)
            .where(events.c.site_id == site_id, events.c.kind == "ledger.disinfections",
                   events.c.event_time_ns >= lo, events.c.event_time_ns < hi)
            .order_by(events.c.event_time_ns)
        ).all()
    logged: dict[str, list[datetime]] = {}
    for gate_id, t in rows:
        logged.setdefault(names.get(gate_id, str(gate_id)), []).append(datetime.fromtimestamp(t / 1e9, timezone.utc))
    return logged


def disinfection_day(db: Database, site_id: str, day: date, times: list[str], overdue_min: float = 30.0,
                     now: datetime | None = None, tz: str = "Asia/Shanghai") -> dict[str, dict]:
    """Per gate of the site: the day's set times done and missed (`policy.disinfection_times`)."""
    from gateway.disinfection import disinfection_report

    now = now or datetime.now(timezone.utc)
    logged = disinfections_logged(db, site_id, day, tz)
    with db.read() as conn:
        names = [r.name for r in conn.execute(
            select(gates.c.name).where(gates.c.site_id == site_id, gates.c.revoked_at.is_(None)))]
    return {name: disinfection_report(times, logged.get(name, []), day, now, overdue_min) for name in sorted(names)}


def _day_bounds(day: date, zone) -> tuple[int, int]:
    start = datetime.combine(day, time(0), zone)
    return to_ns(start.astimezone(timezone.utc)), to_ns((start + timedelta(days=1)).astimezone(timezone.utc))


def _detail_reasons(payload: str) -> list[str]:
    try:
        record = json.loads(payload)
    except (TypeError, ValueError):
        return []
    reasons = record.get("reasons") if isinstance(record, dict) else None
    return [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []
