"""Which decision a manual open may attach to: a table."""

from __future__ import annotations

import pytest

from gateway.override_target import WINDOW_S, refusal

CASES = [
    # reason, pass kind of the decision, age in seconds, expected error key
    ("resident_fault", "resident", 5.0, None),
    ("resident_fault", "staff", 5.0, None),
    ("resident_fault", None, 5.0, None),  # a resident whose pass did not scan
    ("resident_fault", "visitor", 5.0, "err.reason_kind"),
    ("resident_fault", "courier", 5.0, "err.reason_kind"),
    ("registered_visitor", "visitor", 5.0, None),
    ("registered_visitor", "resident", 5.0, "err.reason_kind"),
    ("emergency", "courier", 5.0, None),
    ("remeasured_ok", "visitor", 5.0, None),
    ("other", "resident", WINDOW_S, None),
    ("other", "resident", WINDOW_S + 0.1, "err.decision_stale"),
    ("emergency", "resident", None, "err.decision_stale"),  # superseded by the next person
    ("emergency", "resident", -1.0, "err.decision_stale"),
]


@pytest.mark.parametrize("reason,kind,age,expected", CASES)
def test_refusal(reason, kind, age, expected):
    assert refusal(reason, kind, age) == expected
