"""What the guard does at the gate, as methods of `gateway.loop.Checkpoint`.

Called from the guard screen's threads (gateway/screen/actions.py): each takes
the checkpoint's lock, reads its one injected clock (`self.mono`), decides with
`gateway.decision.decide` and commits before acting (`Checkpoint._commit`),
like the per-person loop. Kept apart from the loop's state machine so each
can be read on its own; they share the checkpoint's state through `self`.
"""

from __future__ import annotations

from gateway.decision import Override, VisitorRegistration, decide, tailgate_decision
from gateway.journal import JournalWriteError
from gateway.override_target import refusal as override_refusal
from gateway.person_state import _Pending
from gateway.thermometry import Reading, is_fever, stable_reading
from gateway.vehicles import VehicleException, decide_vehicle


class OverrideRefused(ValueError):
    """A manual open may not attach to this decision; `key` is the screen's error text."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class GuardControl:
    """The guard's actions on a `Checkpoint` (a mixin: the state lives in Checkpoint)."""

    def set_direction(self, direction: str) -> None:
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be in or out, not {direction!r}")
        with self._lock:
            self.direction = direction

    def guard_open(self, operator: str, reason: str, note: str, for_seq: int | None, *,
                   case_id: str | None = None) -> dict:
        """Open the gate by hand; logged with the operator, reason and the decision it overrides.

        Raises OverrideRefused when `for_seq` is not the person at the gate any more
        (too old, or the next person is being measured) or is another kind of person
        than the reason names (gateway.override_target). An admission closing a fever
        case (`case_id`) opens for that case's person whatever the decision's age.
        """
        with self._lock:
            ctx = self._contexts.get(for_seq) if for_seq else None
            now = self.mono()
            if for_seq and case_id is None:
                measuring_next = self._pending is not None and self._pending.remeasure_of != for_seq
                age = None if ctx is None or ctx.decided_at is None or measuring_next else now - ctx.decided_at
                problem = override_refusal(reason, ctx.kind if ctx else None, age)
                if problem:
                    raise OverrideRefused(problem)
            why = reason + (f": {note}" if note else "")
            decision = decide(
                ctx.verdict if ctx else None, ctx.reading if ctx else None, ctx.entry if ctx else None,
                self.policy, self._moment(ctx.direction if ctx else self.direction, now),
                threshold_c=self.settings.temperature.threshold_c, health_code=ctx.health_code if ctx else None,
                override=Override(operator=operator, reason=why),
            )
            detail = {"override_reason": reason, "note": note, "for_seq": for_seq}
            if case_id:
                detail["case_id"] = case_id
            event = self._commit(decision, kind="override", operator=operator, extra_detail=detail, must_open=True,
                                 view_extra={"override_reason": reason, "note": note or None}, alarm=False)
            if decision.pass_id and not event.get("unlogged"):
                self._last_use[(decision.pass_id, decision.direction)] = now
            return event

    def guard_refuse(self, operator: str, refusal: str, for_seq: int | None) -> dict:
        """A refusal the guard enters with one tap (``no_mask``, ``refused_measurement``):
        the person being measured, or else the one of decision `for_seq`, is
        refused and logged with the operator. Any reading taken is kept."""
        with self._lock:
            now = self.mono()
            pending, ctx = self._pending, self._contexts.get(for_seq) if for_seq else None
            self._pending = None
            source = pending or ctx
            reading = None
            if refusal != "refused_measurement":
                reading = stable_reading(self.sampler.samples(now - self._lookback_s), self.settings.temperature)
                reading = reading or (ctx.reading if ctx and not pending else None)
            direction = source.direction if source else self.direction
            decision = decide(
                source.verdict if source else None, reading, source.entry if source else None, self.policy,
                self._moment(direction, now), threshold_c=self.settings.temperature.threshold_c,
                health_code=source.health_code if source else None, guard_refusal=refusal,
            )
            event = self._commit(decision, kind="decision", operator=operator,
                                 extra_detail={"guard_refusal": refusal, "for_seq": for_seq})
            if pending is not None:
                self._decided_text = pending.text  # still in view: not decided again
            if event is None:
                raise JournalWriteError(self.journal_error or "journal unavailable")
            return event

    def vehicle_passage(self, operator: str, plate: str, occupants: list, direction: str,
                        exception_reason: str = "") -> dict:
        """A vehicle at the lane: the scanned vehicle pass (if it is this plate's), the
        occupants' temperatures, decided by `vehicles.decide_vehicle`; one ledger event."""
        with self._lock:
            waiting = self.vehicle_waiting if self.vehicle_waiting and self.vehicle_waiting["plate"] == plate else None
            verdict = waiting["verdict"] if waiting else None
            revoked = bool(verdict and verdict.pass_id and self.journal.registry_get("revocation", verdict.pass_id))
            exception = VehicleException(operator, exception_reason) if exception_reason else None
            decision, ledger = decide_vehicle(
                verdict, plate, occupants, self.policy, self._moment(direction, self.mono()),
                threshold_c=self.settings.temperature.threshold_c, revoked=revoked, exception=exception)
            event = self._commit(decision, kind="vehicle", operator=operator, extra_detail=ledger)
            if event is None:
                raise JournalWriteError(self.journal_error or "journal unavailable")
            if waiting:
                self.vehicle_waiting = None
            for i, occupant in enumerate(occupants):  # each feverish occupant is a fever case of their own
                if occupant.body_c is not None and is_fever(occupant.body_c, self.settings.temperature.threshold_c):
                    self.fever.hand_recorded(source="vehicle_form", body_c=occupant.body_c, operator=operator,
                                             name=occupant.name or plate, subject=f"vehicle:{plate}:{i}",
                                             trigger_seq=event["seq"])
            return event

    def thermometer_now(self) -> Reading | None:
        """The thermometer's steady reading right now (a vehicle occupant held up to it), if any."""
        with self._lock:
            reading = stable_reading(self.sampler.samples(self.mono() - self._lookback_s), self.settings.temperature)
            return reading if reading is not None and reading.ok else None

    def log_tailgate(self, breaks: int) -> dict | None:
        """The beam broke `breaks` times in one opening: logged as an incident."""
        with self._lock:
            return self._commit(tailgate_decision(self.direction), kind="tailgate", extra_detail={"breaks": breaks})

    def request_remeasure(self, operator: str, for_seq: int | None) -> dict:
        """Measure the person of decision `for_seq` again; the result is a new decision."""
        with self._lock:
            ctx = self._contexts.get(for_seq) if for_seq else None
            if ctx is None:
                raise LookupError(f"no recent decision {for_seq}")
            event = self.journal.append({"kind": "remeasure", "gate": self.settings.gate.id, "operator": operator,
                                         "pass_id": ctx.verdict.pass_id if ctx.verdict else None,
                                         "person_id": ctx.verdict.person_id if ctx.verdict else None,
                                         "detail": {"for_seq": for_seq}})
            now = self.mono()
            self._pending = _Pending(
                text=ctx.text, verdict=ctx.verdict, started=now, direction=ctx.direction, entry=ctx.entry,
                health_code=ctx.health_code, sample_from=now, remeasure_of=for_seq,
                first_reading=ctx.reading if ctx.flagged else None, operator=operator,
            )
            self.state.show_measuring("prompt.remeasure")
            return event

    def admit_visitor(self, operator: str, visitor: dict) -> dict:
        """A visitor registered by the guard: decide with the policy, then act."""
        with self._lock:
            now = self.mono()
            reading = stable_reading(self.sampler.samples(now - self._lookback_s), self.settings.temperature)
            if reading is None or not reading.ok:
                # Measured by the guard with a handheld thermometer: the body value as written.
                reading = Reading(status="ok", body_c=visitor["temperature_c"], offset_c=0.0,
                                  detail="entered by the guard", mono_s=now)
            registration = VisitorRegistration(record_id=str(visitor.get("event_seq")),
                                               special_case=bool(visitor.get("special_case")),
                                               filed_ref=visitor.get("filed_ref") or "")
            decision = decide(None, reading, None, self.policy, self._moment(self.direction, now),
                              threshold_c=self.settings.temperature.threshold_c, visitor=registration)
            event = self._commit(decision, kind="decision", operator=operator,
                                 extra_detail={"visitor": visitor.get("name")})
            if event is None:
                raise JournalWriteError(self.journal_error or "journal unavailable")
            return event

    def fever_case(self, operator: str, case_id: str, *, clinical_c: float | None, outcome: str | None,
                   note: str) -> dict:
        """The guard's case dialog: the clinical reading and/or the decision that closes the case.
        Admitting a person measured at this gate opens the gate for them (logged as a manual
        open with reason ``remeasured_ok`` and the case id). Raises CaseError."""
        with self._lock:
            case = self.fever.clinical_and_decision(case_id, operator, clinical_c=clinical_c, outcome=outcome,
                                                    note=note)
            result = {"case_id": case_id, "closed": bool(outcome), "outcome": outcome}
            if outcome == "admitted" and case.source == "infrared":
                event = self.guard_open(operator, "remeasured_ok", note, case.last_seq or None, case_id=case_id)
                result["seq"] = event.get("seq")
        if outcome and self.sync_trigger is not None:
            self.sync_trigger()  # the registry's alert closes as soon as the gate closes the case
        return result

    def hand_recorded_fever(self, *, source: str, body_c: float, operator: str, name: str, subject: str,
                            trigger_seq: int | None):
        """A temperature the guard wrote down (visitor form, staff form): a case at or above the threshold."""
        with self._lock:
            case = self.fever.hand_recorded(source=source, body_c=body_c, operator=operator, name=name,
                                            subject=subject, trigger_seq=trigger_seq)
        if case is not None and self.sync_trigger is not None:
            self.sync_trigger()
        return case

    def mark_unmarked_acts(self) -> None:
        """After a write failure: record the acts whose `actuated()` could not be written."""
        with self._lock:
            while self._unmarked_acts:
                self.journal.actuated(self._unmarked_acts[0])
                self._unmarked_acts.pop(0)
