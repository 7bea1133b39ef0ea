"""The guard screen's memory across restarts, read back from the journal.

After a restart the screen shows today's counts, the recent decisions (with
names from the registry copy). The open fever cases come back from the
journal through gateway.fever_flow.FeverFlow.restore.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway import messages
from gateway.decision import DISCREET_REASONS
from gateway.journal import Journal
from gateway.policy import Policy
from gateway.screen.state import ScreenState


def counts_today(journal: Journal) -> dict[str, int]:
    """Today's counts by the kiosk's local calendar day."""
    now = datetime.now().astimezone()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return journal.counts_for_day(start, start + timedelta(days=1))


def restore_screen(state: ScreenState, journal: Journal, policy: Policy) -> None:
    """After a restart: recent decisions and today's counts."""
    fields = {"dropoff": policy.courier_dropoff.as_dict()}
    events = journal.recent(200, kinds=("decision", "override"))
    views = []
    for event in events:
        detail = event.get("detail") or {}
        view = {
            "seq": event["seq"], "time": event["time"], "kind": event["kind"], "decision": event["decision"],
            "flagged": event["flagged"], "pass_id": event["pass_id"],
            "reasons": [r for r in event["reasons"] if r not in DISCREET_REASONS],
            "person_id": event["person_id"], "pass_kind": detail.get("kind"),
            "person": _person_view(journal.registry_get("person", event["person_id"])) if event["person_id"] else None,
            "reading": None if event["object_c"] is None else {
                "object_c": event["object_c"], "ambient_c": event["ambient_c"], "offset_c": event["offset_c"],
                "body_c": event["body_c"], "threshold_c": event["threshold_c"]},
            "guard_text": {lang: messages.text(detail.get("guard_message", ""), lang, **fields) for lang in messages.LANGUAGES},
            "public_text": {lang: messages.text(detail.get("public_message", ""), lang, **fields) for lang in messages.LANGUAGES},
            "operator": event["operator"], "note": detail.get("note"),
            "override_reason": detail.get("override_reason"), "case_id": detail.get("case_id"),
        }
        views.append(view)
    state.set_recent(views)
    state.set_counts(counts_today(journal))


def _person_view(person: dict | None) -> dict | None:
    # A bad registry record must not stop the kiosk from starting (issue 11).
    if not isinstance(person, dict) or not (person.get("name") or person.get("unit")):
        return None
    return {"name": str(person.get("name") or ""), "unit": str(person.get("unit") or "")}
