"""No entrance without anyone on duty (L607 严禁出现无人值守的出入口).

A guard's sign-in lasts one shift (`policy.staffing.shift_h`); the screen asks
for the hand-over `handover_warning_min` before it ends, and at the end the
guard is signed out. Nobody on duty for longer than `unstaffed_grace_min`
raises the ``unstaffed`` alarm: on the screen and, as a journalled event of
kind ``unstaffed``, to the registry (the gates board); a guard signing in
ends it with a ``staffed`` event. Meanwhile the policy chooses: keep
screening residents automatically (``screen``) or refuse automatic entry
(``refuse``: decisions get the ``unstaffed`` reason).

`staffing_status()` is pure; `StaffingWatch` keeps the state in the
journal's meta table (so a restart neither forgets nor repeats an alarm)
and is ticked by the kiosk's housekeeping thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from gateway.policy import StaffingRules

log = logging.getLogger(__name__)

META_UNSTAFFED_SINCE = "unstaffed_since"
META_ALARM_SEQ = "unstaffed_alarm_seq"


@dataclass(frozen=True)
class StaffingStatus:
    operator: str | None  # the guard on duty, if their shift is still running
    shift_ends: datetime | None
    handover_due: bool  # the shift ends within the warning time: ask for the hand-over
    shift_over: bool  # a sign-in whose shift has ended (to be signed out)
    unstaffed_since: datetime | None
    alarm: bool  # nobody on duty for longer than the grace
    refusing: bool  # ...and the policy refuses automatic entry meanwhile

    def as_view(self) -> dict[str, Any]:
        return {
            "operator": self.operator,
            "shift_ends": _iso(self.shift_ends),
            "handover_due": self.handover_due,
            "unstaffed_since": _iso(self.unstaffed_since),
            "alarm": self.alarm,
            "refusing": self.refusing,
        }


def staffing_status(operator: dict | None, unstaffed_since: datetime | None, now: datetime,
                    rules: StaffingRules) -> StaffingStatus:
    """Where the gate stands. `operator` is the signed-in guard ({"name", "since"}),
    `unstaffed_since` when the gate was last left without a guard."""
    since = _parse(operator.get("since")) if operator else None
    if operator and since is not None:
        ends = since + timedelta(hours=rules.shift_h)
        if now < ends:
            return StaffingStatus(
                operator=operator.get("name"), shift_ends=ends,
                handover_due=now >= ends - timedelta(minutes=rules.handover_warning_min),
                shift_over=False, unstaffed_since=None, alarm=False, refusing=False,
            )
        unstaffed_since = max(ends, unstaffed_since) if unstaffed_since else ends
        over = True
    else:
        over = False
    alarm = unstaffed_since is not None and now - unstaffed_since >= timedelta(minutes=rules.unstaffed_grace_min)
    return StaffingStatus(
        operator=None, shift_ends=None, handover_due=False, shift_over=over, unstaffed_since=unstaffed_since,
        alarm=alarm, refusing=alarm and rules.unattended == "refuse",
    )


class StaffingWatch:
    """Applies `staffing_status` to a running kiosk once a tick.

    `policy()` gives the policy in force, `now()` the trusted wall time.
    `on_status` gets each status (the loop sets `checkpoint.unstaffed`).
    """

    def __init__(self, *, journal, state, actions, gate_id: str, policy: Callable, now: Callable[[], datetime],
                 on_status: Callable[[StaffingStatus], None], sync_trigger: Callable[[], None] | None = None):
        self.journal = journal
        self.state = state
        self.actions = actions
        self.gate_id = gate_id
        self.policy = policy
        self.now = now
        self.on_status = on_status
        self.sync_trigger = sync_trigger

    def tick(self) -> StaffingStatus:
        now = self.now()
        rules = self.policy().staffing
        operator = self.state.operator
        since = _parse(self.journal.get_meta(META_UNSTAFFED_SINCE))
        if operator is None and since is None:
            since = now  # first start, or nobody signed in since: the clock starts now
            self.journal.set_meta(META_UNSTAFFED_SINCE, since.isoformat())
        status = staffing_status(operator, since, now, rules)
        if status.shift_over:
            self._end_shift(operator["name"], status.unstaffed_since)
        if status.operator is not None:
            self._staffed(status.operator, since)
        elif status.alarm:
            self._raise(status, rules.unattended)
        self.on_status(status)
        return status

    def _end_shift(self, name: str, ended: datetime) -> None:
        """The shift is over and nobody took over: the sign-in lapses (logged)."""
        self.journal.add_ledger_entry("shifts", {"operator_id": name, "action": "shift_ended"},
                                      operator=name, gate=self.gate_id)
        self.journal.set_meta("shift_operator", "")
        self.journal.set_meta(META_UNSTAFFED_SINCE, ended.isoformat())
        self.state.set_operator(None)
        log.warning("gate %s: %s's shift ended without a hand-over", self.gate_id, name)

    def _raise(self, status: StaffingStatus, mode: str) -> None:
        if self.journal.get_meta(META_ALARM_SEQ):
            return  # raised once per unstaffed spell, across restarts
        event = self.journal.append({
            "kind": "unstaffed", "gate": self.gate_id, "reasons": ["unstaffed"],
            "detail": {"since": _iso(status.unstaffed_since), "unattended": mode},
        })
        self.journal.set_meta(META_ALARM_SEQ, str(event["seq"]))
        log.warning("gate %s unstaffed since %s (%s)", self.gate_id, _iso(status.unstaffed_since), mode)
        if self.sync_trigger is not None:
            self.sync_trigger()  # the gates board hears about it now, not at the next round

    def _staffed(self, name: str, since: datetime | None) -> None:
        alarm_seq = self.journal.get_meta(META_ALARM_SEQ)
        if alarm_seq:
            self.journal.append({"kind": "staffed", "gate": self.gate_id, "operator": name,
                                 "detail": {"alarm_seq": int(alarm_seq), "unstaffed_since": _iso(since)}})
            self.journal.set_meta(META_ALARM_SEQ, "")
            if self.sync_trigger is not None:
                self.sync_trigger()
        if since is not None:
            self.journal.set_meta(META_UNSTAFFED_SINCE, "")


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
