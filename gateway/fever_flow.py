"""The fever case at the gate: the CaseBook wired to the journal and the guard screen.

The loop asks `screen_decision` before it commits a decision (is this person's
case open? then the case holds the decision) and calls `record_reading` after
(the case event goes to the journal, the screen's banner and count follow).
The guard's forms call `hand_recorded` (a visitor's or a guard's own
temperature written down) and `clinical_and_decision` (the case dialog).
Every change is journalled first and applied to the book only once it is on
disk; after a restart `restore` replays the journal. See gateway/fever_case.py
for the rules and the event kinds.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gateway.fever_case import EVENT_KINDS, CaseBook, FeverCase, hold_for_case, subject_of
from gateway.journal import Journal
from gateway.screen.state import ScreenState
from gateway.thermometry import is_fever

log = logging.getLogger(__name__)

RESTORE_LIMIT = 5000  # fever_case.* events read back at start-up (a journal keeps 14 days)


class FeverFlow:
    def __init__(self, journal: Journal, state: ScreenState, gate_id: str, threshold_c: float):
        self.journal = journal
        self.state = state
        self.gate_id = gate_id
        self.threshold_c = threshold_c
        self.book = CaseBook(threshold_c)
        self._lock = threading.RLock()

    def set_threshold(self, threshold_c: float) -> None:
        """A new site policy's threshold: hand-recorded readings and clinical checks use it."""
        with self._lock:
            self.threshold_c = threshold_c
            self.book.threshold_c = threshold_c

    def restore(self) -> None:
        """Open cases from the journal, oldest event first."""
        with self._lock:
            for event in reversed(self.journal.recent(RESTORE_LIMIT, kinds=EVENT_KINDS)):
                self.book.apply(event)
            self._publish()

    # --- the loop's side ---------------------------------------------------------------

    def screen_decision(self, decision, subject: str, *, hard: bool):
        """(decision, case_id, is_new) before commit: a person with an open case is held."""
        body_c = decision.reading.body_c if decision.reading is not None else None
        with self._lock:
            case_id, is_new = self.book.plan_reading(subject, body_c, decision.flagged)
        if case_id is not None and not is_new:
            decision = hold_for_case(decision, hard=hard)
        return decision, case_id, is_new

    def record_reading(self, event: dict, decision, subject: str, case_id: str, is_new: bool) -> None:
        """After the decision is committed: the case event, then the screen."""
        body_c = decision.reading.body_c if decision.reading is not None else None
        with self._lock:
            fields = self.book.reading_event(
                case_id, is_new, subject=subject, source="infrared", trigger_seq=event["seq"], body_c=body_c,
                flagged=decision.flagged, person_id=decision.person_id, pass_id=decision.pass_id,
                name=decision.name or "")
            self._append(fields)

    # --- the guard's side --------------------------------------------------------------

    def hand_recorded(self, *, source: str, body_c: float, operator: str, name: str, subject: str,
                      trigger_seq: int | None) -> FeverCase | None:
        """A temperature written down by the guard: at or above the threshold it opens a
        case (or joins the open one of the same subject). Returns the case, if any."""
        flagged = is_fever(body_c, self.threshold_c)
        with self._lock:
            case_id, is_new = self.book.plan_reading(subject, body_c, flagged)
            if case_id is None:
                return None
            fields = self.book.reading_event(case_id, is_new, subject=subject, source=source,
                                             trigger_seq=trigger_seq, body_c=body_c, flagged=flagged, name=name)
            self._append({**fields, "operator": operator})
            return self.book.open.get(case_id)

    def clinical_and_decision(self, case_id: str, operator: str, *, clinical_c: float | None,
                              outcome: str | None, note: str) -> FeverCase:
        """The case dialog: the clinical reading, the decision, or both (reading first).
        Raises CaseError (nothing is written then)."""
        with self._lock:
            case = self.book.get(case_id)
            close = self.book.close_event(case_id, outcome, note, clinical_c) if outcome else None
            if clinical_c is not None and clinical_c != case.clinical_c:
                self._append({**self.book.clinical_event(case_id, clinical_c), "operator": operator})
            if close is not None:
                self._append({**close, "operator": operator})
            return case

    def open_case_for(self, subject: str) -> FeverCase | None:
        with self._lock:
            return self.book.find(subject)

    # --- plumbing ------------------------------------------------------------------------

    def _append(self, fields: dict[str, Any]) -> dict:
        event = self.journal.append({**fields, "gate": self.gate_id})
        case = self.book.apply(event)
        if event["kind"] == "fever_case.opened":
            self.state.count_case()
            log.warning("fever case %s opened (%s, %s)", case.case_id, case.source, case.subject)
        self._publish()
        return event

    def _publish(self) -> None:
        self.state.set_alerts(self.book.views())


def decision_subject(decision, remeasured_subject: str | None) -> str:
    """A re-measure belongs to the person measured before; else the decision's person,
    pass, or (no pass) a face of its own."""
    if remeasured_subject:
        return remeasured_subject
    return subject_of(person_id=decision.person_id, pass_id=decision.pass_id)
