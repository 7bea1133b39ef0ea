"""A decision as the screens show it: both languages, the reading, the person."""

from __future__ import annotations

from gateway import messages
from gateway.decision import Decision


def decision_view(decision: Decision, event: dict, kind: str, operator: str | None) -> dict:
    """A committed (or unlogged) decision as the guard and public screens show it."""
    fields = dict(decision.message_fields)
    r = decision.reading
    return {
        "seq": event.get("seq"),
        "time": event.get("time"),
        "kind": kind,
        "decision": decision.decision,
        "flagged": decision.flagged,
        # Home observation stays undisclosed even to the guard (SPEC rule 9).
        "reasons": decision.guard_reasons,
        "pass_id": decision.pass_id,
        "person_id": decision.person_id,
        "pass_kind": decision.kind,
        "person": {"name": decision.name, "unit": decision.unit} if (decision.name or decision.unit) else None,
        "reading": None if r is None or r.object_c is None else {
            "object_c": r.object_c, "ambient_c": r.ambient_c, "offset_c": r.offset_c,
            "body_c": r.body_c, "threshold_c": decision.threshold_c,
        },
        "guard_text": {lang: messages.text(decision.guard_message, lang, **fields) for lang in messages.LANGUAGES},
        "public_text": {lang: messages.text(decision.public_message, lang, **fields) for lang in messages.LANGUAGES},
        "operator": operator or decision.operator,
        "note": (decision.override.reason if decision.override else None),
    }
