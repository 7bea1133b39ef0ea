"""decide() and decide_vehicle() give, for 15,000 seeded inputs, exactly the
outputs recorded from the code before they were split into rule functions
(issue 11): the same decision, reasons in the same order, messages, flags and
log fields. A difference names the case and both outputs.

The inputs (tests/decision_cases.py) mix ordinary values with hostile ones
(no pass, forged and expired passes, NaN readings, naive times, objects of the
wrong type, closed gates, every policy switch), and reach every line of both
functions. Re-record (`python -m tests.decision_cases`) only for a decision
that is meant to change, and say so in the commit.
"""

from __future__ import annotations

import pytest

from tests import decision_cases as cases


@pytest.fixture(scope="module")
def recorded():
    data = cases.recorded()
    assert data["seed"] == cases.SEED
    return data


def _differences(now: list[str], before: list[str]) -> list[str]:
    assert len(now) == len(before)
    return [f"case {i}:\n  now    {a}\n  before {b}" for i, (a, b) in enumerate(zip(now, before)) if a != b]


def test_person_decisions_are_unchanged(recorded):
    before = cases.unpack(recorded["person"])
    assert len(before) == cases.PERSON_CASES
    differ = _differences(cases.person_outcomes(), before)
    assert not differ, f"{len(differ)} decisions changed; first:\n" + "\n".join(differ[:3])


def test_vehicle_decisions_are_unchanged(recorded):
    before = cases.unpack(recorded["vehicle"])
    assert len(before) == cases.VEHICLE_CASES
    differ = _differences(cases.vehicle_outcomes(), before)
    assert not differ, f"{len(differ)} decisions changed; first:\n" + "\n".join(differ[:3])


def test_the_cases_are_not_all_alike(recorded):
    """The set reaches admits, denials, overrides and internal errors, not one outcome many times."""
    outcomes = cases.unpack(recorded["person"])
    for needle in ('"decision": "admit"', '"decision": "deny"', '"guard_override"', '"internal_error"',
                   '"reasons": ["ok"]', '"under_observation"', '"guard.fever_soft"'):
        assert sum(needle in text for text in outcomes) >= 20, needle
    assert len(set(outcomes)) > cases.PERSON_CASES // 2
