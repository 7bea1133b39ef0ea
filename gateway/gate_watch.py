"""The gate-rule checks the kiosk runs once a second beside the loop:
staffing (gateway/staffing.py), the disinfection reminder
(gateway/disinfection.py) and the rules posted on the queue's screen
(gateway/posted.py), all from the policy in force. The results go to the
screen state (`gate_rules`, `rules`) and, for staffing, to the loop
(`checkpoint.unstaffed`) and the journal.
"""

from __future__ import annotations

from datetime import datetime

from gateway.config import DEFAULT_RULES
from gateway.disinfection import BEIJING, disinfection_slots, reminder
from gateway.posted import posted_rules
from gateway.staffing import StaffingStatus, StaffingWatch


class GateRulesWatch:
    def __init__(self, *, settings, journal, state, checkpoint, actions, sync_trigger=None):
        self.settings = settings
        self.journal = journal
        self.state = state
        self.checkpoint = checkpoint
        self.staffing = StaffingWatch(
            journal=journal, state=state, actions=actions, gate_id=settings.gate.id,
            policy=lambda: checkpoint.policy, now=journal.trusted_now, on_status=self._staffing_status,
            sync_trigger=sync_trigger,
        )
        self._status: StaffingStatus | None = None

    def _staffing_status(self, status: StaffingStatus) -> None:
        self._status = status
        with self.checkpoint._lock:
            self.checkpoint.unstaffed = status.alarm

    def tick(self) -> None:
        policy = self.checkpoint.policy
        gate_id = self.settings.gate.id
        status = self.staffing.tick()
        now = self.journal.trusted_now()
        today = now.astimezone(BEIJING).date()
        done = [datetime.fromisoformat(row["time"]) for row in self.journal.ledger("disinfections", limit=100)]
        slots = disinfection_slots(policy.disinfection_times, done, today, now, policy.disinfection_overdue_min)
        self.state.set_gate_rules({
            "staffing": {**status.as_view(), "unattended": policy.staffing.unattended},
            "disinfection": {"reminder": reminder(slots), "slots": slots},
            "mask_required": policy.mask_required,
            "lane": "vehicle" if gate_id in policy.vehicles.vehicle_gates else "person",
            "closed": gate_id in policy.closed_gates,
            "level": policy.level,
            "vehicle_waiting": (self.checkpoint.vehicle_waiting or {}).get("plate"),
        })
        extra = [r for r in self.settings.gate.rules if r not in DEFAULT_RULES]
        self.state.set_rules(posted_rules(policy, threshold_c=self.settings.temperature.threshold_c,
                                          gate_id=gate_id, extra=extra))
