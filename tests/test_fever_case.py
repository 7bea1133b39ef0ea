"""The fever case as a unit: a table of steps through one CaseBook, journal-free."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.fever_case import CaseBook, CaseError, hold_for_case, subject_of

T = 37.3


class FakeJournal:
    """Gives each event a seq and a time, like Journal.append."""

    def __init__(self):
        self.events = []

    def append(self, event):
        stored = {**event, "seq": len(self.events) + 1, "time": f"2026-02-01T08:00:{len(self.events):02d}"}
        self.events.append(stored)
        return stored


def read(book, journal, subject, body_c, flagged, source="infrared", **who):
    case_id, is_new = book.plan_reading(subject, body_c, flagged)
    if case_id is None:
        return None
    event = book.reading_event(case_id, is_new, subject=subject, source=source, trigger_seq=len(journal.events),
                               body_c=body_c, flagged=flagged, **who)
    return book.apply(journal.append(event))


# (readings of one person: (body_c, flagged)), expected: (open cases, readings in the case, event kinds)
READING_CASES = [
    ("normal reading: no case", [(36.6, False)], 0, None, []),
    ("first flag opens a case", [(37.6, True)], 1, 1, ["fever_case.opened"]),
    ("normal re-measure joins, never clears", [(37.6, True), (36.8, False)], 1, 2,
     ["fever_case.opened", "fever_case.reading"]),
    ("twelve re-measures: still one case", [(37.6, True)] + [(37.4, True), (36.9, False)] * 6, 1, 13,
     ["fever_case.opened"] + ["fever_case.reading"] * 12),
]


@pytest.mark.parametrize("name,readings,open_cases,n_readings,kinds", READING_CASES, ids=[c[0] for c in READING_CASES])
def test_readings_of_one_person(name, readings, open_cases, n_readings, kinds):
    book, journal = CaseBook(T), FakeJournal()
    subject = subject_of(person_id="r-1")
    for body_c, flagged in readings:
        read(book, journal, subject, body_c, flagged, person_id="r-1")
    assert len(book.open) == open_cases
    assert [e["kind"] for e in journal.events] == kinds
    if open_cases:
        (case,) = book.open.values()
        assert len(case.readings) == n_readings and case.max_c == max(b for b, _ in readings)
        if n_readings > 1:  # each reading event carries the running count and maximum
            assert journal.events[-1]["detail"]["readings"] == n_readings


def test_two_people_two_cases_and_unknown_faces_never_merge():
    book, journal = CaseBook(T), FakeJournal()
    read(book, journal, subject_of(person_id="r-1"), 37.5, True)
    read(book, journal, subject_of(pass_id="v-9"), 37.8, True)
    read(book, journal, subject_of(seq=10), 37.4, True)  # no pass: a face is its own subject
    read(book, journal, subject_of(seq=11), 37.4, True)
    assert len(book.open) == 4 and book.opened_total == 4


# closing: (clinical typed before, clinical with the decision, outcome) -> error key or None
CLOSE_CASES = [
    (None, 36.8, "admitted", None),
    (36.7, None, "admitted", None),
    (None, None, "admitted", "err.case_needs_clinical"),
    (None, 37.5, "admitted", "err.case_clinical_fever"),
    (37.9, None, "admitted", "err.case_clinical_fever"),
    (None, None, "referred", None),
    (37.9, None, "referred", None),
    (None, None, "refused", None),
    (None, None, "let_in", "err.case_outcome"),
]


@pytest.mark.parametrize("before,with_decision,outcome,error", CLOSE_CASES)
def test_the_guards_decision_closes_the_case(before, with_decision, outcome, error):
    book, journal = CaseBook(T), FakeJournal()
    case = read(book, journal, subject_of(person_id="r-1"), 37.6, True, person_id="r-1")
    if before is not None:
        book.apply(journal.append(book.clinical_event(case.case_id, before)))
        assert not case.alarm  # the clinical reading silences the alarm
    else:
        assert case.alarm
    if error:
        with pytest.raises(CaseError) as exc:
            book.close_event(case.case_id, outcome, "note", with_decision)
        assert exc.value.key == error
        assert case.case_id in book.open
        return
    closed = book.apply(journal.append(book.close_event(case.case_id, outcome, "已引导", with_decision)))
    assert closed is case and book.open == {}
    detail = journal.events[-1]["detail"]
    assert detail["outcome"] == outcome and detail["note"] == "已引导"
    assert detail["clinical_c"] == (with_decision if with_decision is not None else before)
    assert detail["readings"] == 1 and detail["max_c"] == 37.6
    # After closing, the next flagged reading of the same person is a new case.
    read(book, journal, subject_of(person_id="r-1"), 37.6, True)
    assert len(book.open) == 1 and book.opened_total == 2


def test_replaying_the_journal_rebuilds_the_open_cases():
    book, journal = CaseBook(T), FakeJournal()
    a = read(book, journal, subject_of(person_id="a"), 37.6, True)
    read(book, journal, subject_of(person_id="b"), 37.7, True)
    read(book, journal, subject_of(person_id="a"), 36.9, False)
    book.apply(journal.append(book.clinical_event(a.case_id, 36.6)))
    book.apply(journal.append(book.close_event(a.case_id, "admitted", "")))
    again = CaseBook(T)
    for event in journal.events:
        again.apply(event)
    assert [c.subject for c in again.open.values()] == ["person:b"]
    assert again.views() == book.views() and again.opened_total == 2


def test_a_decision_about_an_open_case_is_held():
    from gateway.decision import Decision

    admit = Decision(decision="admit", flagged=False, reasons=["ok"], guard_message="guard.admit",
                     public_message="public.welcome", direction="in")
    held = hold_for_case(admit, hard=True)
    assert (held.decision, held.reasons, held.guard_message, held.public_message) == (
        "deny", ["fever_case_open"], "guard.fever_case", "public.see_staff")
    confirmed = Decision(decision="deny", flagged=True, reasons=["fever"], guard_message="guard.fever",
                         public_message="public.see_staff", direction="in")
    assert hold_for_case(confirmed, hard=True).reasons == ["fever", "fever_case_open"]
    assert hold_for_case(admit, hard=False).decision == "admit"  # SOFT: admitted, the case still open
    leaving = dataclasses.replace(admit, direction="out")
    assert hold_for_case(leaving, hard=True).decision == "admit"  # never kept in (on the way to the clinic)
    assert hold_for_case(leaving, hard=True).reasons == ["fever_case_open"]
