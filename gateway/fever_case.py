"""Fever cases: one person, one fever, one case. Pure: no clock, no I/O.

A reading is a screening result; the unit the guard handles, the registry
reports and the street office counts is the *case*:

1. **Opened** by the first flagged reading of a person: an infrared decision
   at the gate (a person with a pass, or an unknown face without one), or a
   temperature the guard wrote down at or above the threshold (a visitor's on
   the visitor form, a guard's own on the staff form).
2. **Readings.** Every later reading of that person while the case is open (a
   re-measure, the same pass shown again) joins the case. It never opens a
   second case and never clears the flag by itself: a normal infrared
   re-measure still leaves the gate shut (``fever_case_open``) until the guard
   decides.
3. **Clinical reading.** The guard types in what the clinical thermometer
   (mercury or electronic) said. It silences the alarm; the case stays open.
4. **Closed** by the guard's decision, with the operator and a note:
   ``admitted`` (only after a normal clinical reading), ``referred`` (to the
   fever clinic) or ``refused``.

One alarm per case: the screen's alarm and the gate's fever signal sound
when a case opens, never again for its later readings.

Each step is an event in the journal, so it reaches the registry through the
same exactly-once stream as every decision, and the book of open cases is
rebuilt from the journal after a restart (`CaseBook.apply`):

    fever_case.opened    case_id, subject, source, trigger_seq, body_c, threshold_c, name
    fever_case.reading   case_id, trigger_seq, body_c, flagged, readings, max_c
    fever_case.clinical  case_id, clinical_c, fever
    fever_case.closed    case_id, outcome, note, clinical_c, readings, max_c

The methods that change a case return the event to append (a dict for
`Journal.append`); the caller journals it and then `apply`s the stored event.
Nothing changes in the book until the event is on disk.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.thermometry import is_fever

EVENT_KINDS = ("fever_case.opened", "fever_case.reading", "fever_case.clinical", "fever_case.closed")
OUTCOMES = ("admitted", "referred", "refused")
Source = Literal["infrared", "visitor_form", "staff_form"]
HELD_REASON = "fever_case_open"


class CaseError(ValueError):
    """A guard's step the case cannot take: `key` is the screen's error text, `field` the form field."""

    def __init__(self, key: str, field: str = "form", **values):
        super().__init__(key)
        self.key, self.field, self.values = key, field, values


@dataclass
class FeverCase:
    case_id: str
    subject: str
    source: str
    opened_seq: int
    opened_time: str
    person_id: str | None = None
    pass_id: str | None = None
    name: str = ""
    readings: list[float] = field(default_factory=list)
    clinical_c: float | None = None
    clinical_fever: bool | None = None
    last_seq: int = 0  # the newest decision of this case (what an admission opens the gate for)

    @property
    def max_c(self) -> float | None:
        return max(self.readings) if self.readings else None

    @property
    def alarm(self) -> bool:
        """The alarm sounds until the guard has the clinical reading."""
        return self.clinical_c is None

    def view(self) -> dict[str, Any]:
        """What the guard screen shows for an open case."""
        return {
            "case_id": self.case_id, "seq": self.opened_seq, "time": self.opened_time, "source": self.source,
            "person_id": self.person_id, "pass_id": self.pass_id,
            "person": {"name": self.name, "unit": ""} if self.name else None,
            "reading": {"body_c": self.readings[0] if self.readings else None},
            "readings": len(self.readings), "max_c": self.max_c, "last_c": self.readings[-1] if self.readings else None,
            "clinical_c": self.clinical_c, "alarm": self.alarm, "for_seq": self.last_seq or None,
        }


def subject_of(*, person_id: str | None = None, pass_id: str | None = None, visitor: str | None = None,
               staff: str | None = None, seq: int | None = None) -> str:
    """Who a reading belongs to, as one key: the person, else the pass, else the form's
    record; an unknown face without a pass is its own subject (it cannot be told apart)."""
    if person_id:
        return f"person:{person_id}"
    if pass_id:
        return f"pass:{pass_id}"
    if visitor:
        return f"visitor:{visitor}"
    if staff:
        return f"staff:{staff}"
    return f"face:{seq if seq is not None else uuid.uuid4().hex}"


@dataclass
class CaseBook:
    """The open cases of one gate, keyed by case id."""

    threshold_c: float
    open: dict[str, FeverCase] = field(default_factory=dict)
    opened_total: int = 0  # cases opened since the book was built (restore counts the journal's)

    def find(self, subject: str) -> FeverCase | None:
        for case in self.open.values():
            if case.subject == subject:
                return case
        return None

    def get(self, case_id: str) -> FeverCase:
        case = self.open.get(case_id)
        if case is None:
            raise CaseError("err.unknown_case")
        return case

    # --- steps: each returns the event to journal --------------------------------

    def plan_reading(self, subject: str, body_c: float | None, flagged: bool) -> tuple[str | None, bool]:
        """(case_id, is_new) for a reading about to be committed; (None, False) when it
        concerns no case (a normal reading of someone without an open case)."""
        case = self.find(subject)
        if case is not None:
            return case.case_id, False
        if flagged:
            return uuid.uuid4().hex, True
        return None, False

    def reading_event(self, case_id: str, is_new: bool, *, subject: str, source: str, trigger_seq: int | None,
                      body_c: float | None, flagged: bool, person_id: str | None = None,
                      pass_id: str | None = None, name: str = "") -> dict[str, Any]:
        """The event for a reading planned with `plan_reading`."""
        common = {"person_id": person_id, "pass_id": pass_id, "body_c": body_c,
                  "threshold_c": self.threshold_c}
        if is_new:
            return {**common, "kind": "fever_case.opened", "flagged": True, "detail": {
                "case_id": case_id, "subject": subject, "source": source, "trigger_seq": trigger_seq,
                "body_c": body_c, "threshold_c": self.threshold_c, "name": name}}
        case = self.get(case_id)
        readings = case.readings + ([body_c] if body_c is not None else [])
        return {**common, "kind": "fever_case.reading", "flagged": bool(flagged), "person_id": case.person_id,
                "pass_id": case.pass_id, "detail": {
                    "case_id": case_id, "trigger_seq": trigger_seq, "body_c": body_c, "flagged": bool(flagged),
                    "readings": len(readings), "max_c": max(readings) if readings else None}}

    def clinical_event(self, case_id: str, clinical_c: float) -> dict[str, Any]:
        case = self.get(case_id)
        return {"kind": "fever_case.clinical", "person_id": case.person_id, "pass_id": case.pass_id,
                "body_c": clinical_c, "threshold_c": self.threshold_c,
                "flagged": is_fever(clinical_c, self.threshold_c),
                "detail": {"case_id": case_id, "clinical_c": clinical_c,
                           "fever": is_fever(clinical_c, self.threshold_c)}}

    def close_event(self, case_id: str, outcome: str, note: str, clinical_c: float | None = None) -> dict[str, Any]:
        """The guard's decision. Admission needs a normal clinical reading (given now or before)."""
        case = self.get(case_id)
        if outcome not in OUTCOMES:
            raise CaseError("err.case_outcome", "outcome")
        clinical = clinical_c if clinical_c is not None else case.clinical_c
        if outcome == "admitted":
            if clinical is None:
                raise CaseError("err.case_needs_clinical", "clinical_c")
            if is_fever(clinical, self.threshold_c):
                raise CaseError("err.case_clinical_fever", "clinical_c", threshold=self.threshold_c)
        return {"kind": "fever_case.closed", "person_id": case.person_id, "pass_id": case.pass_id,
                "body_c": case.max_c, "threshold_c": self.threshold_c, "flagged": True,
                "detail": {"case_id": case_id, "outcome": outcome, "note": note, "clinical_c": clinical,
                           "readings": len(case.readings), "max_c": case.max_c, "source": case.source,
                           "subject": case.subject, "opened_seq": case.opened_seq}}

    # --- folding stored events in ----------------------------------------------------

    def apply(self, event: dict[str, Any]) -> FeverCase | None:
        """Fold one journalled event into the book (live, or replaying the journal)."""
        kind, detail = event.get("kind"), event.get("detail") or {}
        case_id = detail.get("case_id")
        if kind == "fever_case.opened":
            case = FeverCase(case_id=case_id, subject=detail.get("subject") or f"case:{case_id}",
                             source=detail.get("source") or "infrared", opened_seq=event["seq"],
                             opened_time=event.get("time") or "", person_id=event.get("person_id"),
                             pass_id=event.get("pass_id"), name=detail.get("name") or "",
                             readings=[] if detail.get("body_c") is None else [float(detail["body_c"])],
                             last_seq=detail.get("trigger_seq") or 0)
            self.open[case_id] = case
            self.opened_total += 1
            return case
        case = self.open.get(case_id)
        if case is None:
            return None
        if kind == "fever_case.reading":
            if detail.get("body_c") is not None:
                case.readings.append(float(detail["body_c"]))
            case.last_seq = detail.get("trigger_seq") or case.last_seq
        elif kind == "fever_case.clinical":
            case.clinical_c = detail.get("clinical_c")
            case.clinical_fever = bool(detail.get("fever"))
        elif kind == "fever_case.closed":
            self.open.pop(case_id, None)
        return case

    def views(self) -> list[dict[str, Any]]:
        return [case.view() for case in sorted(self.open.values(), key=lambda c: c.opened_seq)]


def hold_for_case(decision, *, hard: bool):
    """A decision about a person whose case is open: the case, not this reading, decides.

    Under HARD enforcement an admit on entry becomes a deny (``fever_case_open``):
    a normal infrared re-measure never opens the gate by itself. On exit the
    case is noted, never a reason to keep someone in (they may be on their
    way to the fever clinic). The guard is told to take the clinical reading,
    not to re-measure again.
    """
    if decision.override is not None:
        return decision
    reasons = [r for r in decision.reasons if r != "ok"] + [HELD_REASON]
    outcome = "deny" if hard and decision.direction == "in" else decision.decision
    return dataclasses.replace(decision, decision=outcome, reasons=reasons, guard_message="guard.fever_case",
                               public_message="public.see_staff" if outcome == "deny" else decision.public_message,
                               alert=True)
