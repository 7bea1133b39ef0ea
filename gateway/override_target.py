"""Which decision a manual open may attach to. Pure.

The decision on screen belongs to one person. A manual open names a reason,
and the log ties it to the decision it overrides; so the kiosk refuses to tie
it to a decision that is no longer the person at the gate (older than
`WINDOW_S`, or superseded by the next person being measured) or to another
kind of person than the reason names: "resident; device fault" cannot be
logged against a visitor's or a courier's decision. Without a decision (the
camera is down, nobody was measured) every reason may still be used: no
failure may lock a resident out.
"""

from __future__ import annotations

WINDOW_S = 60.0  # a decision older than this is no longer "the person at the gate"

# reason -> the pass kinds it may be logged against (None: a person the kiosk
# could not identify, e.g. a resident whose pass does not scan). A reason not
# listed fits any decision.
REASON_KINDS: dict[str, frozenset] = {
    "resident_fault": frozenset({"resident", "staff", "volunteer", None}),
    "registered_visitor": frozenset({"visitor", None}),
}


def refusal(reason: str, kind: str | None, age_s: float | None) -> str | None:
    """The screen's error key when `reason` may not attach to a decision about a
    person of `kind` taken `age_s` seconds ago; None when it may."""
    if age_s is None or age_s > WINDOW_S or age_s < 0:
        return "err.decision_stale"
    allowed = REASON_KINDS.get(reason)
    if allowed is not None and kind not in allowed:
        return "err.reason_kind"
    return None
