"""Fever cases on the registry: one alert row per case, closed from the gate.

A gate journals each step of a fever case as an event (gateway/fever_case.py):
``fever_case.opened``, ``.reading``, ``.clinical`` and ``.closed``, each with
``detail.case_id``. Ingest folds them into the `alerts` table, in the same
transaction as the events themselves (`fold_case_events`):

- opened: the case's alert row (status ``open``, one reading, its maximum);
- reading: the running count and maximum the gate sends (absolute values, so
  a re-sent event changes nothing);
- clinical: the clinical thermometer's reading;
- closed: status ``closed``, the outcome, the gate's operator and note, and
  the alert is acknowledged (by that operator) unless staff already did.

Every step is idempotent, so re-sends after a lost reply or a server restored
from an older backup leave one row per case with the same values. A step
whose case has no row yet (its opening event was quarantined or purged)
creates the row from what it carries.

A kiosk of the release before cases sends ``fever_ack`` instead: the
guard acknowledged the flagged decision ``detail.seq`` of the same stream,
with a note (`fold_legacy_acks`). It becomes that alert's case, closed at the
gate with the guard's name and note (staff still acknowledge it, as they
did for those kiosks). If the server has no alert for that decision (it was
quarantined, purged, or a kind that raises none) the acknowledgement opens
one from the decision, or from itself, so the fever still reaches staff.

A flagged decision that belongs to a case (``detail.case_id``) raises no alert
of its own; a flagged decision without one (a kiosk older than cases) still
does, one per reading, as before.

`cases_for_day` lists a site's cases for the daily report (sync.server.case_list).
"""

from __future__ import annotations

import hashlib

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import func, select

from sync.server.case_list import site_cases
from sync.server.db import Database
from sync.server.schema import alerts, events

CASE_KINDS = ("fever_case.opened", "fever_case.reading", "fever_case.clinical", "fever_case.closed")
LEGACY_ACK = "fever_ack"  # kiosks before cases: the guard acknowledged one flagged decision
OUTCOMES = ("admitted", "referred", "refused")


def case_id_of(record) -> str | None:
    value = (record.detail or {}).get("case_id")
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def fold_case_events(conn, *, gate, stream_id: str, steps: list[tuple[int, Any, int]], now: datetime) -> list[dict]:
    """Fold this batch's case events into `alerts`; `steps` are (seq, EventRecord, event_time_ns)
    in seq order. Returns the alert rows created (one per new case), for the street office's notice."""
    created: list[dict] = []
    for seq, record, time_ns in steps:
        case_id = case_id_of(record)
        if case_id is None:
            continue
        detail = record.detail
        row = conn.execute(
            select(alerts.c.id, alerts.c.readings, alerts.c.max_c, alerts.c.status)
            .where(alerts.c.site_id == gate.site_id, alerts.c.case_id == case_id)
        ).first()
        if row is None:
            created.append({"site_id": gate.site_id, "gate_name": gate.name, "stream_id": stream_id,
                            "seq": seq, "event_time_ns": time_ns})
            body_c = _number(detail.get("max_c")) or _number(detail.get("body_c")) or _number(record.body_c)
            conn.execute(alerts.insert().values(
                site_id=gate.site_id, gate_id=gate.id, gate_name=gate.name, stream_id=stream_id, seq=seq,
                person_id=record.person_id, pass_id=record.pass_id, body_c=body_c, event_time_ns=time_ns,
                received_at=now, case_id=case_id, status="open", readings=1 if body_c is not None else 0,
                max_c=body_c,
            ))
            row = conn.execute(
                select(alerts.c.id, alerts.c.readings, alerts.c.max_c, alerts.c.status)
                .where(alerts.c.site_id == gate.site_id, alerts.c.case_id == case_id)
            ).one()
        changes: dict[str, Any] = {}
        readings, max_c = _number(detail.get("readings")), _number(detail.get("max_c"))
        if readings is not None and readings > (row.readings or 0):
            changes["readings"] = int(readings)
        if max_c is not None and (row.max_c is None or max_c > row.max_c):
            changes["max_c"] = max_c
        if record.kind == "fever_case.clinical" and _number(detail.get("clinical_c")) is not None:
            changes["clinical_c"] = _number(detail["clinical_c"])
        if record.kind == "fever_case.closed":
            outcome = detail.get("outcome") if detail.get("outcome") in OUTCOMES else None
            changes.update(status="closed", outcome=outcome, gate_operator=_text(record.operator, 64),
                           note=_text(detail.get("note"), 1000),
                           closed_at=datetime.fromtimestamp(time_ns / 1e9, timezone.utc))
            if _number(detail.get("clinical_c")) is not None:
                changes["clinical_c"] = _number(detail["clinical_c"])
            # Closed at the gate: the alert is handled. Staff who acknowledged first keep their name.
            conn.execute(alerts.update().where(alerts.c.id == row.id, alerts.c.acknowledged_at.is_(None))
                         .values(acknowledged_at=now, acknowledged_by=_text(record.operator, 64) or "gate"))
        if changes:
            conn.execute(alerts.update().where(alerts.c.id == row.id).values(**changes))
    return created


def legacy_case_id(stream_id: str, seq: int) -> str:
    """The case id given to a pre-case alert a `fever_ack` closes (at most 64 characters)."""
    case_id = f"ack-{stream_id}-{seq}"
    return case_id if len(case_id) <= 64 else "ack-" + hashlib.sha256(case_id.encode()).hexdigest()[:60]


def fold_legacy_acks(conn, *, gate, stream_id: str, steps: list[tuple[int, Any, int]], now: datetime) -> list[dict]:
    """Fold this batch's `fever_ack` events (seq, EventRecord, event_time_ns) into `alerts`.
    Returns the alert rows created (an acknowledged fever the server had no alert for)."""
    created: list[dict] = []
    for _seq, record, time_ns in steps:
        target = (record.detail or {}).get("seq")
        if not isinstance(target, int) or isinstance(target, bool) or target < 1:
            continue
        where = (alerts.c.site_id == gate.site_id, alerts.c.stream_id == stream_id, alerts.c.seq == target)
        alert_id = conn.execute(select(alerts.c.id).where(*where)).scalar()
        if alert_id is None:
            flagged = conn.execute(
                select(events.c.person_id, events.c.pass_id, events.c.body_c, events.c.event_time_ns)
                .where(events.c.stream_id == stream_id, events.c.seq == target)).first()
            row = {"site_id": gate.site_id, "gate_id": gate.id, "gate_name": gate.name, "stream_id": stream_id,
                   "seq": target, "person_id": flagged.person_id if flagged else None,
                   "pass_id": flagged.pass_id if flagged else None, "body_c": flagged.body_c if flagged else None,
                   "event_time_ns": flagged.event_time_ns if flagged else time_ns, "received_at": now}
            conn.execute(alerts.insert().values(**row))
            created.append(row)
        detail = record.detail or {}
        changes = {"case_id": func.coalesce(alerts.c.case_id, legacy_case_id(stream_id, target)),
                   "status": "closed", "gate_operator": _text(record.operator, 64),
                   "note": _text(detail.get("note"), 1000),
                   "closed_at": datetime.fromtimestamp(time_ns / 1e9, timezone.utc)}
        if detail.get("outcome") in OUTCOMES:
            changes["outcome"] = detail["outcome"]
        conn.execute(alerts.update().where(*where).values(**changes))
    return created


def decision_raises_alert(record) -> bool:
    """A flagged decision raises an alert of its own only when no case carries it."""
    return record.flagged and record.kind in ("decision", "remeasure") and case_id_of(record) is None


def cases_for_day(db: Database, site_id: str, day: date, zone) -> list[dict]:
    """The site's fever cases whose first reading falls on `day` in `zone`, oldest first
    (sync.server.case_list.site_cases, as the boards list them), as plain JSON values."""
    def iso(value: datetime | None) -> str | None:
        return value.isoformat(timespec="seconds") if value else None

    return [{"alert_id": c["alert_id"], "case_id": c["case_id"], "time": c["time"], "gate": c["gate"],
             "person_id": c["person_id"], "pass_id": c["pass_id"], "body_c": c["body_c"],
             "readings": c["reading_count"], "clinical_c": c["clinical_c"], "status": c["status"],
             "outcome": c["outcome"], "gate_operator": c["gate_operator"], "note": c["note"],
             "closed_at": iso(c["closed_at"]), "acknowledged_at": iso(c["acknowledged_at"]),
             "acknowledged_by": c["acknowledged_by"]}
            for c in site_cases(db, site_id, zone, day=day)]
