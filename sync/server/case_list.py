"""A site's fever cases, listed once for every page that shows them.

The staff board (`boards.fever_cases`), the daily report (`reports.daily_report`,
through `cases.cases_for_day`) and the street office's daily report
(`daily.site_daily`) all read `site_cases`, so they list the same cases with
the same readings, status and notes.

A case is:
- one `alerts` row made by a kiosk with fever cases (`readings` is set:
  sync/server/cases.py folds every step into it), or
- the pre-case alerts of one person on one local day: a kiosk older than
  cases raises one alert per flagged reading (re-measures included), so
  its rows are grouped by person id, else pass id, else the alert itself.
  Its `fever_ack` closes only the reading it named, so the case stays open
  until every reading is closed or acknowledged.

Each case: alert_id (its first row, where follow-ups go), alert_ids,
case_id, event_time (aware, in the zone), time (ISO text), gate, gate_name,
person_id, pass_id, name, unit (from the registry), readings (first and
highest of each row), reading_count, body_c (the highest), clinical_c,
status (open | closed), outcome, gate_operator, note, closed_at,
gate_ack {operator, note, outcome, clinical_c, time} (closed at the gate),
followups [{at, by, note}], acknowledged_at, acknowledged_by,
staff_acknowledged (every row acknowledged).
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any

from sqlalchemy import func, select

from gateway.clock import to_ns
from sync.server.db import Database, json_object
from sync.server.schema import alert_followups, alerts, gates, registry_state


def day_bounds(day: date, zone: tzinfo) -> tuple[int, int]:
    """[lo, hi) in epoch nanoseconds for a local calendar day."""
    start = datetime.combine(day, time(0), zone)
    return to_ns(start.astimezone(timezone.utc)), to_ns((start + timedelta(days=1)).astimezone(timezone.utc))


def _aware(value: datetime | None, zone: tzinfo) -> datetime | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(zone)  # SQLite drops the zone


def _finite(value) -> float | None:
    """A reading stored before input was checked (NaN) shows as unknown, never a 500."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def site_cases(db: Database, site_id: str, zone: tzinfo, *, day: date | None = None, open_only: bool = False,
               limit: int = 500) -> list[dict[str, Any]]:
    """The site's cases (of `day` in `zone`, else of every day), oldest first; at most the
    newest `limit` alert rows are read. With `open_only`, only rows nobody acknowledged."""
    query = (select(alerts, func.coalesce(gates.c.name, alerts.c.gate_name).label("gate"))
             .select_from(alerts.outerjoin(gates, gates.c.id == alerts.c.gate_id))
             .where(alerts.c.site_id == site_id))
    if day is not None:
        lo, hi = day_bounds(day, zone)
        query = query.where(alerts.c.event_time_ns >= lo, alerts.c.event_time_ns < hi)
    if open_only:
        query = query.where(alerts.c.acknowledged_at.is_(None))
    with db.read() as conn:
        rows = conn.execute(query.order_by(alerts.c.event_time_ns.desc(), alerts.c.id.desc()).limit(limit)).all()
        rows.reverse()
        person_ids = {r.person_id for r in rows if r.person_id}
        people = {}
        if person_ids:
            people = {r.entity_id: json_object(r.payload) for r in conn.execute(
                select(registry_state.c.entity_id, registry_state.c.payload).where(
                    registry_state.c.site_id == site_id, registry_state.c.entity == "person",
                    registry_state.c.entity_id.in_(person_ids)))}
        notes: dict[int, list] = {}
        if rows:
            for r in conn.execute(select(alert_followups).where(alert_followups.c.alert_id.in_([x.id for x in rows]))
                                  .order_by(alert_followups.c.at, alert_followups.c.id)):
                notes.setdefault(r.alert_id, []).append({"at": _aware(r.at, zone), "by": r.by, "note": r.note})

    cases: dict[tuple, dict] = {}
    for row in rows:
        event_time = datetime.fromtimestamp(row.event_time_ns / 1e9, timezone.utc).astimezone(zone)
        if row.readings is not None:  # a kiosk with cases: the row is the case
            key: tuple = ("case", row.id)
        else:
            key = ("reading", row.person_id or row.pass_id or f"alert-{row.id}", event_time.date())
        if key not in cases:
            cases[key] = new_case(row, event_time, people.get(row.person_id, {}))
        case = cases[key]
        add_row(case, row, zone, notes.get(row.id, []))
    return [finish(case) for case in cases.values()]


def new_case(row, event_time: datetime, person: dict) -> dict:
    """An empty case named after its first alerts row (`add_row` folds the rows in)."""
    return {
        "alert_id": row.id, "alert_ids": [], "case_id": None, "event_time": event_time,
        "time": event_time.isoformat(timespec="seconds"), "gate": row.gate, "gate_name": row.gate,
        "person_id": row.person_id, "pass_id": row.pass_id, "name": person.get("name"),
        "unit": person.get("unit"), "readings": [], "reading_count": 0, "body_c": None, "clinical_c": None,
        "open_rows": 0, "outcome": None, "gate_operator": None, "note": None, "closed_at": None,
        "gate_ack": None, "followups": [], "acknowledged_at": None, "acknowledged_by": None,
        "staff_acknowledged": True,
    }


def finish(case: dict) -> dict:
    case["status"] = "open" if case.pop("open_rows") else "closed"
    case["followups"].sort(key=lambda f: f["at"])
    return case


def add_row(case: dict, row, zone: tzinfo, followups: list) -> None:
    """Fold one alerts row into its case."""
    first, highest = _finite(row.body_c), _finite(row.max_c)
    shown = [v for v in (first, highest) if v is not None]
    case["alert_ids"].append(row.id)
    case["case_id"] = case["case_id"] or row.case_id
    case["readings"] = list(dict.fromkeys(case["readings"] + shown))
    case["reading_count"] += row.readings if row.readings and row.readings > 0 else max(1, len(set(shown)))
    top = highest if highest is not None else first
    if top is not None and (case["body_c"] is None or top > case["body_c"]):
        case["body_c"] = top
    acknowledged = row.acknowledged_at is not None
    # A pre-case alert without a status is open until acknowledged.
    if not (row.status == "closed" or (row.status is None and acknowledged)):
        case["open_rows"] += 1
    case["staff_acknowledged"] = case["staff_acknowledged"] and acknowledged
    if acknowledged:
        case["acknowledged_at"], case["acknowledged_by"] = _aware(row.acknowledged_at, zone), row.acknowledged_by
    clinical = _finite(row.clinical_c)
    case["clinical_c"] = clinical if clinical is not None else case["clinical_c"]
    if row.gate_operator or row.note or row.outcome:  # closed at the gate: who, the note and the outcome
        closed = _aware(row.closed_at, zone)
        case.update(outcome=row.outcome or case["outcome"], gate_operator=row.gate_operator, note=row.note,
                    closed_at=closed)
        case["gate_ack"] = {"operator": row.gate_operator, "note": row.note, "outcome": row.outcome,
                            "clinical_c": clinical, "time": closed}
    case["followups"].extend(followups)
