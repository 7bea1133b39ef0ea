"""The running checkpoint: frames, readings, decisions, relay, journal, screen.

    app = build_app(load_config("gate.toml"))
    app.start(); app.serve()      # blocks; Ctrl-C or SIGTERM stops it
    app.stop()

One person goes through `Checkpoint` like this:

1. the newest camera frame (older ones are dropped, never queued);
2. the QR text in it (unchanged frames are skipped by the scanner);
3. `passes.verify` against the issuer keys at the *trusted* now, and the
   person's entry in the registry copy;
4. a stable thermometer reading (`thermometry.stable_reading`), waiting up to
   `temperature.reading_timeout_s`: half-way the screen asks the person to
   come closer and hold still; at the end the reading is ``no_reading``;
5. `decision.decide()`;
6. the decision is **committed to the journal** (``in_flight``);
7. only then the relay, buzzer, lights, screen and sync are told, and the
   journal marks the decision as actuated.

A pass still in view after its decision is not decided again (so it cannot
trigger passback by lingering); once it has left the view for
`VIEW_GONE_S`, showing it again is a new scan. Someone standing at the
thermometer without showing a pass for `reading_timeout_s` is a
``no_credential`` decision, with their temperature, so a fever is caught
even without a pass. A thermometer, camera or disk fault fails closed for
automatic entry and shows on the screen; the guard's override still opens
the gate and is logged with the operator and the reason.

`Checkpoint.run` is one fault boundary: any other fault in one person's path
(a bad registry record, a bug) refuses that person (``internal_error``) and
shows on the health panel, and the loop goes on; a fault in every step
pauses automatic entry until a step succeeds again. A thermometer that
answers but is stuck, spiky or drifting is caught by `sensor_watch`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from drivers.errors import DriverError
from gateway import health as healthmod
from gateway import messages
from gateway.clock import kernel_clock_synced
from gateway.config import Settings
from gateway.decision import (
    Decision,
    GateMoment,
    Override,
    RegistryEntry,
    VisitorRegistration,
    crowd_decision,
    decide,
    tailgate_decision,
)
from gateway.fever_flow import FeverFlow, decision_subject
from gateway.journal import Journal, JournalWriteError
from gateway.override_target import WINDOW_S as OVERRIDE_WINDOW_S
from gateway.override_target import refusal as override_refusal
from gateway.passes import PassVerdict, verify
from gateway.policy import Policy
from gateway.registry_copy import current_policy, load_keys, registry_entry, registry_stale, settings_under
from gateway.screen.history import counts_today, restore_screen
from gateway.sensor_watch import SignalFault, ThermometerWatch
from gateway.staleness import journal_staleness
from gateway.screen.state import ScreenState
from gateway.thermometry import Reading, is_fever, remeasure, sensor_fault, stable_reading, timed_out
from gateway.vehicles import VehicleException, decide_vehicle, plate_from_pass_id

log = logging.getLogger(__name__)

VIEW_GONE_S = 1.0  # a pass unseen this long has left the view
PRESENCE_GONE_S = 1.0  # no stable reading this long: the person at the thermometer has left
SAMPLE_SILENCE_S = 1.5  # no new thermometer sample for this long while measuring: a fault
PERSON_FAULT_SHOWN_S = 300.0  # a fault in one person's path stays on the health panel this long


@dataclass
class _Pending:
    """A person being measured: their pass (if any) and when it was first seen."""

    text: str | None
    verdict: PassVerdict | None
    started: float
    direction: str
    entry: RegistryEntry | None
    health_code: str | None
    sample_from: float
    remeasure_of: int | None = None
    first_reading: Reading | None = None
    operator: str | None = None


@dataclass
class _Context:
    """What a committed decision was about: for re-measure and override."""

    text: str | None
    verdict: PassVerdict | None
    entry: RegistryEntry | None
    health_code: str | None
    reading: Reading | None
    direction: str
    flagged: bool
    subject: str | None = None  # the fever case's subject (gateway.fever_case.subject_of)
    case_id: str | None = None
    kind: str | None = None  # the pass kind: a manual open's reason must fit it
    decided_at: float | None = None  # monotonic: a manual open attaches only to a recent decision


class OverrideRefused(ValueError):
    """A manual open may not attach to this decision; `key` is the screen's error text."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


@dataclass
class Checkpoint:
    """The per-person loop. `run(stop)` on a thread; guard actions from any thread."""

    settings: Settings
    journal: Journal
    camera: Any
    sampler: Any
    scanner: Any
    outputs: Any
    state: ScreenState
    keys: dict
    policy: Policy
    mono: Callable[[], float] = time.monotonic
    sync_trigger: Callable[[], None] | None = None
    listeners: list[Callable[[dict, Decision | None], None]] = field(default_factory=list)
    view_gone_s: float = VIEW_GONE_S
    presence_gone_s: float = PRESENCE_GONE_S
    beam: Any = None  # optional pass-through beam (gateway/beam.py)
    fever: FeverFlow | None = None  # the fever cases (build_app wires one)
    heartbeat: Callable[[], None] | None = None  # called after every step (gateway.watchdog)

    def __post_init__(self):
        self._lock = threading.RLock()
        self._pending: _Pending | None = None
        self._frame_seq = 0
        self._last_texts: list[str] = []
        self._visible_text: str | None = None
        self._visible_at = 0.0
        self._decided_text: str | None = None
        self._presence_since: float | None = None
        self._presence_seen = 0.0
        self._presence_decided = False
        self._last_use: dict[tuple[str, str], float] = {}
        self._contexts: dict[int, _Context] = {}
        self.direction = self.settings.gate.direction if self.settings.gate.direction != "both" else "in"
        self.journal_error: str | None = None
        # The loop's own fault, for the health panel: {"detail", "blocks", "at"}.
        # One person's fault (`blocks` False) refuses that person only; a fault
        # in every step (`blocks` True) pauses automatic entry until it passes.
        self.fault: dict | None = None
        self._unmarked_acts: list[int] = []  # acted on, but `actuated()` could not be written
        self.sensor_watch = ThermometerWatch(self.settings.temperature)
        self.decisions = 0
        self.unstaffed = False  # set by the staffing watch (gateway/staffing.py)
        self.vehicle_waiting: dict | None = None  # the last vehicle pass scanned (gateway/vehicles.py)
        self._crowd = False
        t = self.settings.temperature
        self._window_s = t.min_samples / t.sample_hz
        self._lookback_s = self._window_s + 2.0 / t.sample_hz
        if self.fever is None:
            self.fever = FeverFlow(self.journal, self.state, self.settings.gate.id, t.threshold_c)

    # --- the loop ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The fault boundary: nothing that goes wrong in a step stops the gate."""
        while not stop.is_set():
            try:
                self.step()
            except DriverError as exc:  # a device failed mid-step: the health tick shows it
                log.debug("step: %s", exc)
                stop.wait(0.1)
            except Exception as exc:  # noqa: BLE001 - the relay stays closed; the guard sees why
                self._note_fault(exc, blocks=True)
                stop.wait(0.1)
            else:
                if self.fault and self.fault["blocks"]:
                    log.warning("the checkpoint loop runs again after: %s", self.fault["detail"])
                    self.fault = None
            if self.heartbeat is not None:  # the loop turned: the watchdog may ping
                self.heartbeat()

    def _note_fault(self, exc: BaseException, *, blocks: bool, who: str | None = None) -> None:
        detail = (f"{who}: " if who else "") + f"{type(exc).__name__}: {exc}"[:300]
        if self.fault is None or self.fault["detail"] != detail:  # log each new fault once, not every step
            log.error("checkpoint fault (%s): %s", "automatic entry paused" if blocks else "one person refused",
                      detail, exc_info=exc)
        self.fault = {"detail": detail, "blocks": blocks, "at": self.mono()}

    def _person_fault(self, exc: Exception, now: float) -> None:
        """A fault in one person's path (a bad registry record, a full disk, a
        bug): refuse that person automatically, log it, show it; the loop goes on."""
        pending, self._pending = self._pending, None
        text = pending.text if pending else self._visible_text
        self._decided_text = text  # not retried until the pass leaves the view
        self._presence_decided = True
        verdict = pending.verdict if pending else None
        if verdict is None and text:
            try:
                verdict = verify(text, self.keys, self.journal.trusted_now())
            except Exception:  # noqa: BLE001
                verdict = None
        who = f"person {verdict.person_id}" if verdict and verdict.person_id else "checkpoint"
        self._note_fault(exc, blocks=False, who=who)
        direction = pending.direction if pending else self.direction
        decision = Decision(
            decision="deny", flagged=False, reasons=["internal_error"], guard_message="guard.internal_error",
            public_message="public.see_staff", direction=direction, alert=True,
            kind=verdict.kind if verdict else None, pass_id=verdict.pass_id if verdict else None,
            person_id=verdict.person_id if verdict and verdict.signature_ok else None,
            message_fields={"error": f"{type(exc).__name__}: {exc}"[:200]},
        )
        try:
            event = self._commit(decision, kind="decision", operator=pending.operator if pending else None)
        except Exception:  # noqa: BLE001 - even the refusal failed: the health panel still shows it
            log.exception("could not log the refusal after a fault")
            return
        if event is not None and event.get("seq") is not None:
            known = verdict if verdict and verdict.signature_ok else None
            self._remember(event["seq"], _Context(text, known, None, None, None, direction, False,
                                                  kind=known.kind if known else None, decided_at=now))

    def step(self, timeout: float = 0.1) -> None:
        """Process the next frame (or, without one, advance the timers)."""
        frame = self.camera.wait_frame(after_seq=self._frame_seq, timeout=timeout)
        now = self.mono()
        texts = self._last_texts
        if frame is not None:
            self._frame_seq = frame.seq
            scanned = self.scanner.scan(frame.image)
            if scanned is not None:  # None: unchanged frame, same texts as before
                texts = self._last_texts = scanned
        elif self.camera.latest() is None:
            texts = self._last_texts = []  # camera down: nothing is in view
        with self._lock:
            if self._one_at_a_time(texts):
                return
            self._track_view(texts, now)
            try:
                if self._pending is None and self._visible_text and self._visible_text != self._decided_text:
                    self._start(self._visible_text, now)
                if self._pending is not None:
                    self._advance(now)
                else:
                    self._watch_presence(now)
            except DriverError:
                raise
            except Exception as exc:  # noqa: BLE001 - one person's fault must not stop the gate
                if self._pending is None and self._visible_text is None:
                    # Nobody identified (the presence watch failed): nothing to
                    # refuse, and a refusal every step would flood the journal.
                    raise
                self._person_fault(exc, now)

    def _one_at_a_time(self, texts: list[str]) -> bool:
        """Two or more different passes in view: decide nobody, open nothing,
        ask for one at a time (logged once per crowd). The person being
        measured, if any, is not decided either."""
        count = len(set(texts))
        if count < 2:
            self._crowd = False
            return False
        if not self._crowd:
            self._crowd = True
            self._pending = None
            self._commit(crowd_decision(self.direction, count), kind="one_at_a_time")
        return True

    def _track_view(self, texts: list[str], now: float) -> None:
        text = self._choose(texts)
        if text is not None:
            if text != self._visible_text:
                self._visible_text = text
            self._visible_at = now
        elif self._visible_text is not None and now - self._visible_at >= self.view_gone_s:
            self._visible_text = None
            self._decided_text = None

    def _choose(self, texts: list[str]) -> str | None:
        """Several codes in view: keep the one already being handled, else the first."""
        if not texts:
            return None
        for text in texts:
            if text in (self._visible_text, self._decided_text):
                return text
        return texts[0]

    def _start(self, text: str, now: float) -> None:
        verdict = verify(text, self.keys, self.journal.trusted_now())
        if verdict.kind == "vehicle" and verdict.signature_ok:
            # A vehicle pass is not a person's: it waits for the guard, who enters the occupants.
            self.vehicle_waiting = {"text": text, "verdict": verdict, "plate": plate_from_pass_id(verdict.pass_id),
                                    "household": verdict.person_id}
            self.state.set_notice("vehicle.waiting", plate=self.vehicle_waiting["plate"] or "?")
            self._decided_text = text
            return
        entry, health_code = registry_entry(self.journal, verdict, self.journal.trusted_now())
        self._pending = _Pending(
            text=text, verdict=verdict, started=now, direction=self.direction, entry=entry,
            health_code=health_code, sample_from=now - self._lookback_s,
        )
        self.state.show_measuring()

    def _reading(self, pending: _Pending, now: float, *, final: bool) -> Reading | None:
        ok, why = self.sampler.health()
        if not ok:
            return sensor_fault(why, mono_s=now)
        signal = self.signal_fault(now)
        if signal is not None:  # answering, but not measuring: no automatic entry on it
            return sensor_fault(signal.detail, mono_s=now)
        samples = self.sampler.samples(pending.sample_from)
        newest_sample = samples[-1].mono_s if samples else None
        if now - pending.started > SAMPLE_SILENCE_S and (newest_sample is None or now - newest_sample > SAMPLE_SILENCE_S):
            return sensor_fault(f"no thermometer samples for {SAMPLE_SILENCE_S:g} s", mono_s=now)
        reading = stable_reading(samples, self.settings.temperature)
        if reading is not None:
            return reading
        if final:
            return timed_out(samples, self.settings.temperature)
        return None

    def signal_fault(self, now: float | None = None) -> SignalFault | None:
        """A thermometer that answers but is stuck, erroring, spiky or drifting."""
        now = self.mono() if now is None else now
        return self.sensor_watch.fault(self.sampler.samples(), getattr(self.sampler, "bad_samples", 0), now)

    def _advance(self, now: float) -> None:
        pending = self._pending
        elapsed = now - pending.started
        timeout = self.settings.temperature.reading_timeout_s
        reading = self._reading(pending, now, final=elapsed >= timeout)
        if reading is None:
            prompt = "prompt.remeasure" if pending.remeasure_of else None
            if elapsed >= timeout / 2:
                prompt = "prompt.hold_still"
            self.state.show_measuring(prompt)
            return
        self._pending = None
        self._decide_and_act(pending, reading, now)

    def _watch_presence(self, now: float) -> None:
        """Someone at the thermometer without a pass: decide ``no_credential`` once."""
        samples = self.sampler.samples(now - self._lookback_s)
        reading = stable_reading(samples, self.settings.temperature)
        if reading is None or reading.status == "sensor_fault":
            if self._presence_since is not None and now - self._presence_seen >= self.presence_gone_s:
                self._presence_since, self._presence_decided = None, False
                if self.state.phase == "measuring":
                    self.state.show_idle()
            return
        self._presence_seen = now
        if self._presence_since is None:
            self._presence_since = now
        if self._presence_decided or self._visible_text:
            return
        if now - self._presence_since >= self.settings.temperature.reading_timeout_s:
            pending = _Pending(None, None, self._presence_since, self.direction, None, None, self._presence_since)
            self._decide_and_act(pending, reading, now)

    # --- decide, commit, act -------------------------------------------------------------

    def _moment(self, direction: str, now: float) -> GateMoment:
        trusted = self.journal.trusted_now()
        return GateMoment(site_id=self.settings.gate.site, direction=direction, now=trusted, mono_s=now,
                          registry_stale=registry_stale(self.journal, self.settings, trusted),
                          gate_id=self.settings.gate.id, unstaffed=self.unstaffed)

    def _decide_and_act(self, pending: _Pending, reading: Reading, now: float) -> None:
        used_reading: Any = reading
        if pending.remeasure_of is not None and pending.first_reading is not None and pending.first_reading.ok:
            used_reading = remeasure(pending.first_reading, reading if reading.ok else None, self.settings.temperature)
        last_use = last_opposite = None
        if pending.verdict is not None and pending.verdict.pass_id and pending.remeasure_of is None:
            last_use = self._last_use.get((pending.verdict.pass_id, pending.direction))
            last_opposite = self._last_use.get((pending.verdict.pass_id, _OPPOSITE.get(pending.direction)))
        decision = decide(
            pending.verdict, used_reading, pending.entry, self.policy, self._moment(pending.direction, now),
            threshold_c=self.settings.temperature.threshold_c, last_use_mono_s=last_use,
            health_code=pending.health_code, last_opposite_mono_s=last_opposite,
        )
        detail = {"remeasure_of": pending.remeasure_of} if pending.remeasure_of else {}
        # One fever, one case: a person whose case is open is held by the case, not this reading.
        earlier = self._contexts.get(pending.remeasure_of) if pending.remeasure_of else None
        subject = decision_subject(decision, earlier.subject if earlier else None)
        decision, case_id, new_case = self.fever.screen_decision(decision, subject,
                                                                 hard=self.policy.enforcement == "hard")
        if case_id:
            detail["case_id"] = case_id
        event = self._commit(decision, kind="decision", operator=pending.operator, extra_detail=detail,
                             alarm=new_case,  # one alarm per case: a flagged reading always has one
                             view_extra={"case_id": case_id, "held": bool(case_id and not new_case)})
        self._decided_text = pending.text
        self._presence_decided = True
        if event is None:
            return
        if case_id:
            self._record_case_reading(event, decision, subject, case_id, new_case)
        if decision.admitted and decision.pass_id:
            self._last_use[(decision.pass_id, pending.direction)] = now
        self._remember(event["seq"], _Context(pending.text, pending.verdict, pending.entry, pending.health_code,
                                              decision.reading, pending.direction, decision.flagged,
                                              subject=subject, case_id=case_id, kind=decision.kind,
                                              decided_at=now))

    def _record_case_reading(self, event: dict, decision: Decision, subject: str, case_id: str, new: bool) -> None:
        try:
            self.fever.record_reading(event, decision, subject, case_id, new)
        except JournalWriteError as exc:  # the decision is logged (with its case id); the disk is failing
            self.journal_error = str(exc)
            log.error("fever case event not logged: %s", exc)

    def _commit(self, decision: Decision, *, kind: str, operator: str | None = None,
                extra_detail: dict | None = None, must_open: bool = False,
                view_extra: dict | None = None, alarm: bool | None = None) -> dict | None:
        """Journal first, then the gate. Returns the event, or None if it could not be logged.

        `alarm` (default: the decision's fever flag) sounds the fever signal and
        sends the event to the server at once: once per fever case, not per reading.

        An unlogged automatic decision is not acted on (fail closed). A guard
        override (`must_open`) opens even then: no failure may lock a
        resident out, and the guard is told the log is missing.
        """
        record = decision.to_record()
        record["detail"] = {**record["detail"], **(extra_detail or {})}
        record.update(kind=kind, gate=self.settings.gate.id, operator=operator or decision.operator)
        try:
            event = self.journal.append(record, in_flight=True)
            self.journal_error = None
        except JournalWriteError as exc:
            self.journal_error = str(exc)
            log.error("decision not logged (%s): %s", exc, json.dumps(record, ensure_ascii=False, default=str))
            if must_open:
                self._actuate(decision, alarm=False)
                self.state.show_decision({**self._view(decision, {"seq": None, "time": _iso_now()}, kind, operator),
                                          **(view_extra or {}), "unlogged": True})
                return {"seq": None, "unlogged": True}
            self.state.show_decision(self._view(
                Decision(decision="deny", flagged=decision.flagged, reasons=["journal_fault"],
                         guard_message="guard.internal_error", public_message="public.see_staff",
                         direction=decision.direction, reading=decision.reading),
                {"seq": None, "time": _iso_now()}, kind, operator))
            return None
        alarm = decision.flagged if alarm is None else alarm
        self._actuate(decision, alarm=alarm)
        self.state.show_decision({**self._view(decision, event, kind, operator), **(view_extra or {})})
        self.decisions += 1
        for listener in list(self.listeners):
            try:
                listener(event, decision)
            except Exception:  # noqa: BLE001 - a printer or stats hook must not stop the gate
                log.exception("decision listener failed")
        try:
            self.journal.actuated(event["seq"])
        except JournalWriteError as exc:  # the gate has acted; say so once the disk can write again
            self.journal_error = str(exc)
            self._unmarked_acts.append(event["seq"])
        if alarm and self.sync_trigger is not None:
            self.sync_trigger()  # a new fever goes to the server at once
        return event

    def _actuate(self, decision: Decision, *, alarm: bool) -> None:
        try:
            if decision.admitted:
                self.outputs.open_for(self.settings.outputs.open_s)
                if self.beam is not None:
                    self.beam.opened(self.settings.outputs.open_s)
            self.outputs.signal("fever" if alarm else decision.decision)
        except DriverError as exc:
            log.error("gate outputs failed: %s", exc)

    def _view(self, decision: Decision, event: dict, kind: str, operator: str | None) -> dict:
        fields = dict(decision.message_fields)
        r = decision.reading
        return {
            "seq": event.get("seq"),
            "time": event.get("time"),
            "kind": kind,
            "decision": decision.decision,
            "flagged": decision.flagged,
            # Home observation stays undisclosed even to the guard (SPEC rule 9).
            "reasons": decision.guard_reasons,
            "pass_id": decision.pass_id,
            "person_id": decision.person_id,
            "pass_kind": decision.kind,
            "person": {"name": decision.name, "unit": decision.unit} if (decision.name or decision.unit) else None,
            "reading": None if r is None or r.object_c is None else {
                "object_c": r.object_c, "ambient_c": r.ambient_c, "offset_c": r.offset_c,
                "body_c": r.body_c, "threshold_c": decision.threshold_c,
            },
            "guard_text": {lang: messages.text(decision.guard_message, lang, **fields) for lang in messages.LANGUAGES},
            "public_text": {lang: messages.text(decision.public_message, lang, **fields) for lang in messages.LANGUAGES},
            "operator": operator or decision.operator,
            "note": (decision.override.reason if decision.override else None),
        }

    def _remember(self, seq: int, context: _Context) -> None:
        self._contexts[seq] = context
        while len(self._contexts) > 50:
            self._contexts.pop(next(iter(self._contexts)))

    # --- guard actions (called from the screen's threads) ------------------------------------

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

    # --- health -------------------------------------------------------------------------

    def health(self, sync_status: dict | None = None) -> dict[str, dict]:
        s = self.settings
        therm_ok, therm_why = self.sampler.health()
        cam_ok, cam_why = self.camera.health()
        try:
            disk = self.journal.disk_status(s.journal.min_free_mb)
            free, low = disk.free_bytes, disk.low
        except OSError as exc:
            free, low = None, True
            self.journal_error = self.journal_error or str(exc)
        return {
            "thermometer": healthmod.thermometer(therm_ok, therm_why, self.signal_fault() if therm_ok else None),
            "camera": healthmod.device(cam_ok, cam_why, "health.camera.fault"),
            "disk": healthmod.disk(free, low, self.journal_error),
            "checkpoint": healthmod.checkpoint(self._current_fault()),
            "clock": healthmod.clock(kernel_clock_synced(), self.journal.clock_refused()),
            "registry": healthmod.registry_status(
                journal_staleness(self.journal, s.sync.staleness_limit_h if s.sync else None),
                self.journal.registry_synced_at(), configured=s.sync is not None),
            "sync": healthmod.sync(s.sync is not None, self.journal.pending_count(), sync_status),
        }


    def _current_fault(self) -> dict | None:
        fault = self.fault
        if fault and not fault["blocks"] and self.mono() - fault["at"] > PERSON_FAULT_SHOWN_S:
            self.fault = fault = None
        return fault


_OPPOSITE = {"in": "out", "out": "in"}


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --- wiring ---------------------------------------------------------------------------------


@dataclass
class App:
    """Everything one kiosk runs, built by `build_app` and started in order."""

    settings: Settings
    journal: Journal
    hardware: Any
    sampler: Any
    checkpoint: Checkpoint
    state: ScreenState
    actions: Any
    screen: Any
    sync_worker: Any = None
    gate_watch: Any = None  # staffing, disinfection, posted rules (gateway/gate_watch.py)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _jpeg: tuple[int, bytes | None] = (0, None)
    _started: bool = False
    failed: BaseException | None = None  # set when the loop thread died of a bug

    def start(self) -> "App":
        """Start devices, the loop, housekeeping and sync; the relay is closed first."""
        if self._started:
            return self
        self._started = True
        self.hardware.outputs.close_gate()
        self.hardware.camera.start()
        self.sampler.start()
        self._spawn("checkpoint", self._run_checkpoint)
        self._spawn("housekeeping", self._housekeeping)
        if self.sync_worker is not None:
            self.sync_worker.start()
        log.info("checkpoint %s started (%s hardware)", self.settings.gate.id, self.settings.hardware.kind)
        return self

    def stop(self) -> None:
        """Stop everything in reverse order; the relay ends closed."""
        self.stop_event.set()
        self.screen.state.deps.stopping.set()
        if self.sync_worker is not None:
            _quietly(self.sync_worker.stop)
        for thread in reversed(self._threads):
            thread.join(timeout=5)
        self._threads.clear()
        _quietly(self.hardware.outputs.close_gate)
        _quietly(self.sampler.stop)
        _quietly(self.hardware.camera.stop)
        _quietly(self.hardware.outputs.close)
        if self.checkpoint.beam is not None:
            _quietly(self.checkpoint.beam.close)
        _quietly(self.journal.close)
        self._started = False

    def serve(self, host: str | None = None, port: int | None = None, *, until: threading.Event | None = None) -> None:
        """Serve the guard screen until Ctrl-C / SIGTERM, `until`, or the loop failing; blocks."""
        import uvicorn

        config = uvicorn.Config(
            self.screen, host=host or self.settings.screen.host, port=port or self.settings.screen.port,
            log_level="warning", timeout_graceful_shutdown=2, access_log=False,
        )
        server = uvicorn.Server(config)
        stops = [self.stop_event] + ([until] if until is not None else [])

        def watch():
            while not any(event.wait(0.2) for event in stops):
                pass
            server.should_exit = True

        threading.Thread(target=watch, name="serve-until", daemon=True).start()
        server.run()

    def camera_jpeg(self) -> bytes | None:
        """The newest frame as a JPEG for the screen (encoded once per frame)."""
        import cv2

        frame = self.hardware.camera.latest()
        if frame is None:
            return None
        seq, cached = self._jpeg
        if seq == frame.seq and cached is not None:
            return cached
        image = frame.image
        height, width = image.shape[:2]
        if width > 640:  # the screen shows it small; encode less
            image = cv2.resize(image, (640, int(height * 640 / width)), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
        jpeg = data.tobytes() if ok else None
        self._jpeg = (frame.seq, jpeg)
        return jpeg

    def _run_checkpoint(self) -> None:
        """The loop thread. `Checkpoint.run` turns every fault into one the
        guard sees and goes on; only what escapes even that (a bug in the
        boundary itself) stops the kiosk (relay closed, exit status 70)."""
        try:
            self.checkpoint.run(self.stop_event)
        except BaseException as exc:
            log.critical("the checkpoint loop crashed; stopping the kiosk", exc_info=True)
            self.failed = exc
            _quietly(self.hardware.outputs.close_gate)
            self.stop_event.set()

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _housekeeping(self) -> None:
        """Once a second: health and expiry. Every 30 s: counts, keys and policy. Hourly: purge."""
        health_log = healthmod.HealthLog()
        tick = 0
        while not self.stop_event.wait(1.0 if tick else 0.0):
            self.state.expire()
            status = _quietly(self.sync_worker.status) if self.sync_worker is not None else None
            health = self.checkpoint.health(status)
            health_log.update(health)
            self.state.set_health(health)
            if tick % 30 == 0:
                self.state.set_counts(counts_today(self.journal))
                self._refresh_registry()
            if self.gate_watch is not None:  # after the policy refresh: staffing, disinfection, posted rules
                _quietly(self.gate_watch.tick)
            if tick % 10 == 0 and self.checkpoint.journal_error:
                self.probe_journal()
            if tick % 3600 == 1800:
                _quietly(self.journal.purge)
            tick += 1

    def probe_journal(self) -> None:
        """After a write failure: can the journal write again? (Clears the fault on screen.)"""
        try:
            self.journal.set_meta("write_probe", _iso_now())
            self.checkpoint.mark_unmarked_acts()
        except JournalWriteError:
            return
        log.warning("journal writable again")
        self.checkpoint.journal_error = None

    def _refresh_registry(self) -> None:
        """Issuer keys and the policy may arrive through the registry feed."""
        keys = load_keys(self.settings, self.journal)
        policy = current_policy(self.settings, self.journal)
        with self.checkpoint._lock:
            self.checkpoint.keys = keys
            if policy.version != self.checkpoint.policy.version:
                log.info("policy version %d (%s) now in force", policy.version, policy.name)
            self.checkpoint.policy = policy
            self.checkpoint.settings = settings_under(policy, self.settings)
        self.state.policy.update(enforcement=policy.enforcement, visitor_mode=policy.visitor_mode)


def build_hardware(settings: Settings):
    """The devices the config names (drivers.hardware decides real or fake, by name)."""
    from drivers.hardware import build_hardware as build

    return build(settings)


def start_sync(settings: Settings, journal: Journal):
    """The background sync worker when `[sync]` is configured and sync/client.py exists."""
    if settings.sync is None:
        return None
    try:
        from sync.client import SyncWorker
    except ImportError:
        log.warning("[sync] is configured but this build has no sync client; events stay queued")
        return None
    return SyncWorker(journal, settings)


def build_app(settings: Settings, *, hardware=None, clock=None, enable_sync: bool = True) -> App:
    """Wire one kiosk: journal, devices, loop, guard screen, sync. Nothing runs until `start()`.

    Raises PassKeyError for unreadable issuer keys and JournalWriteError when
    the journal cannot be opened for writing (both are start-up failures).
    """
    from drivers.qr import Scanner
    from drivers.thermometer import ThermometerSampler
    from gateway.beam import PassThroughBeam
    from gateway.gate_watch import GateRulesWatch
    from gateway.screen.actions import GuardActions
    from gateway.screen.app import ScreenDeps, create_app

    journal = Journal.open(settings.journal.path, clock=clock, retention_days=settings.journal.retention_days)
    interrupted = journal.recover_interrupted()
    if interrupted:
        log.warning("decision %s was interrupted by a crash before the gate acted; logged as seq %s",
                    interrupted["detail"]["seq"], interrupted["seq"])
    hardware = hardware or build_hardware(settings)
    hardware.outputs.close_gate()  # a reboot never leaves the gate open
    keys = load_keys(settings, journal)
    policy = current_policy(settings, journal)
    t = settings.temperature
    sampler = ThermometerSampler(hardware.thermometer, hz=t.sample_hz, keep_s=max(10.0, t.reading_timeout_s + 2))
    state = ScreenState(
        gate={"id": settings.gate.id, "name": settings.gate.name or settings.gate.id, "site": settings.gate.site,
              "direction": settings.gate.direction, "threshold_c": t.threshold_c,
              "override_window_s": OVERRIDE_WINDOW_S},
        rules=list(settings.gate.rules),
        policy={"enforcement": policy.enforcement, "visitor_mode": policy.visitor_mode},
    )
    restore_screen(state, journal, policy)
    sync_worker = start_sync(settings, journal) if enable_sync else None
    checkpoint = Checkpoint(
        settings=settings_under(policy, settings), journal=journal, camera=hardware.camera, sampler=sampler,
        scanner=Scanner(settings.qr.backend), outputs=hardware.outputs, state=state, keys=keys, policy=policy,
        sync_trigger=getattr(sync_worker, "trigger", None),
    )
    checkpoint.fever.restore()
    actions = GuardActions(journal=journal, state=state, control=checkpoint, gate_id=settings.gate.id,
                           pin=settings.screen.pin, threshold_c=t.threshold_c,
                           visitor_mode=lambda: checkpoint.policy.visitor_mode)
    checkpoint.beam = PassThroughBeam.from_settings(settings.outputs, hardware.outputs, checkpoint.log_tailgate,
                                                    pin_factory=hardware.outputs.relay.pin_factory)
    actions.restore_shift()
    app = App(settings=settings, journal=journal, hardware=hardware, sampler=sampler, checkpoint=checkpoint,
              state=state, actions=actions, screen=None, sync_worker=sync_worker)
    app.gate_watch = GateRulesWatch(settings=settings, journal=journal, state=state, checkpoint=checkpoint,
                                    actions=actions, sync_trigger=getattr(sync_worker, "trigger", None))
    app.screen = create_app(ScreenDeps(state=state, actions=actions, pin=settings.screen.pin,
                                       language=settings.screen.language, camera_jpeg=app.camera_jpeg))
    return app


def _quietly(fn, *args):
    """Shutdown and status steps: a failing one is logged, the rest still run."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        log.exception("%s failed", getattr(fn, "__qualname__", fn))
        return None
