"""What the registry knows about the gate rules, from the events the gates
uploaded (issue 12). For the reg-staff pages (gates board, reports):

- `gate_staffing(db, site)`: each gate's staffing state from its latest
  ``unstaffed`` / ``staffed`` event (L607: the system shows which gates are staffed);
- `gate_rule_counts(db, site, day)`: refusals by gate-rule reason code
  (no mask, refused measurement, one at a time, tailgates, vehicles) for the daily report;
- `disinfections_logged(db, site, day)`: the disinfection times each gate
  logged; `disinfection_day(db, site, day, policy.disinfection_times)`: per
  gate, each set time done or missed (`gateway.disinfection.disinfection_report`).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.clock import to_ns
from sync.server.db import Database
from sync.server.schema import events, gates

RULE_REASONS = ("no_mask", "refused_measurement", "one_at_a_time", "tailgate", "gate_closed", "unstaffed",
                "vehicle_outside", "vehicle_exception", "vehicle_no_pass")


def gate_staffing(db: Database, site_id: str) -> list[dict]:
    """Every gate of the site: staffed or unstaffed (an alarm), by its latest staffing event."""
    with db.read() as conn:
        names = {r.id: r.name for r in conn.execute(
            select(gates.c.id, gates.c.name).where(gates.c.site_id == site_id, gates.c.revoked_at.is_(None)))}
        rows = conn.execute(
            select(events.c.gate_id, events.c.kind, events.c.event_time_ns, events.c.payload)
            .where(events.c.site_id == site_id, events.c.kind.in_(("unstaffed", "staffed")))
            .order_by(events.c.event_time_ns, events.c.seq)
        ).all()
    latest = {gate_id: (kind, t, payload) for gate_id, kind, t, payload in rows}
    board = []
    for gate_id, name in sorted(names.items(), key=lambda item: item[1]):
        kind, t, payload = latest.get(gate_id, (None, None, "{}"))
        detail = _detail(payload)
        board.append({
            "gate": name,
            "unstaffed": kind == "unstaffed",
            "since": detail.get("since") if kind == "unstaffed" else None,
            "unattended": detail.get("unattended") if kind == "unstaffed" else None,
            "changed_at": datetime.fromtimestamp(t / 1e9, timezone.utc).isoformat(timespec="seconds") if t else None,
        })
    return board


def gate_rule_counts(db: Database, site_id: str, day: date, tz: str = "Asia/Shanghai") -> dict[str, int]:
    """How many events of the day carried each gate-rule reason code."""
    counts = dict.fromkeys(RULE_REASONS, 0)
    for payload in _day_payloads(db, site_id, day, tz, ("decision", "one_at_a_time", "tailgate", "vehicle")):
        for reason in set(_detail_reasons(payload)):
            if reason in counts:
                counts[reason] += 1
    return counts


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


def _day_payloads(db: Database, site_id: str, day: date, tz: str, kinds: tuple[str, ...]) -> list[str]:
    lo, hi = _day_bounds(day, ZoneInfo(tz))
    with db.read() as conn:
        return [r.payload for r in conn.execute(
            select(events.c.payload).where(events.c.site_id == site_id, events.c.kind.in_(kinds),
                                           events.c.event_time_ns >= lo, events.c.event_time_ns < hi))]


def _detail(payload: str) -> dict:
    try:
        record = json.loads(payload)
    except (TypeError, ValueError):
        return {}
    detail = record.get("detail") if isinstance(record, dict) else None
    return detail if isinstance(detail, dict) else {}


def _detail_reasons(payload: str) -> list[str]:
    try:
        record = json.loads(payload)
    except (TypeError, ValueError):
        return []
    reasons = record.get("reasons") if isinstance(record, dict) else None
    return [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []
