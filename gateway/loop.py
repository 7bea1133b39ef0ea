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

Every timer of the per-person path (view gone, presence, reading timeout,
sample silence, the manual-open window, the beam) reads one injected
monotonic clock, `Checkpoint.mono`; `build_app(mono=...)` hands the same
clock to the sampler and the fake devices. On a gate it is `time.monotonic`
and threads run the loop; `checkpoint simulate` and the loop tests build the
app with `stepped=True` and a `gateway.sim_clock.SimClock`, and
`gateway.stepped.SteppedGate` steps it. The guard's actions live in
`gateway/guard_actions.py`, the screen's view of a decision in
`gateway/screen/decision_view.py`.
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
from gateway.clock import kernel_clock_synced
from gateway.config import Settings
from gateway.devices import Beam, CodeScanner, FrameCamera, GateOutputs, SampleSource
from gateway.decision import (
    Decision,
    GateMoment,
    crowd_decision,
    decide,
)
from gateway.fever_flow import FeverFlow, decision_subject
from gateway.guard_actions import GuardControl, OverrideRefused  # noqa: F401 - OverrideRefused: re-exported
from gateway.person_state import _Context, _Pending
from gateway.journal import Journal, JournalWriteError
from gateway.override_target import WINDOW_S as OVERRIDE_WINDOW_S
from gateway.passes import verify
from gateway.policy import Policy
from gateway.registry_copy import current_policy, load_keys, registry_entry, registry_stale, settings_under
from gateway.screen.decision_view import decision_view
from gateway.screen.history import counts_today, restore_screen
from gateway.sensor_watch import SignalFault, ThermometerWatch
from gateway.staleness import journal_staleness
from gateway.screen.state import ScreenState
from gateway.thermometry import Reading, remeasure, sensor_fault, stable_reading, timed_out
from gateway.vehicles import plate_from_pass_id

log = logging.getLogger(__name__)

VIEW_GONE_S = 1.0  # a pass unseen this long has left the view
# A crowd ends only after this long with fewer than two passes in view: one
# frame in which a code of the crowd was not decoded must not open the gate.
CROWD_CLEAR_S = 0.5
PRESENCE_GONE_S = 1.0  # no stable reading this long: the person at the thermometer has left
SAMPLE_SILENCE_S = 1.5  # no new thermometer sample for this long while measuring: a fault
PERSON_FAULT_SHOWN_S = 300.0  # a fault in one person's path stays on the health panel this long


@dataclass
class Checkpoint(GuardControl):
    """The per-person loop. `run(stop)` on a thread (or `step_guarded()` from a
    stepper); guard actions (gateway/guard_actions.py) from any thread."""

    settings: Settings
    journal: Journal
    camera: FrameCamera
    sampler: SampleSource
    scanner: CodeScanner
    outputs: GateOutputs
    state: ScreenState
    keys: dict
    policy: Policy
    mono: Callable[[], float] = time.monotonic
    sync_trigger: Callable[[], None] | None = None
    listeners: list[Callable[[dict, Decision | None], None]] = field(default_factory=list)
    view_gone_s: float = VIEW_GONE_S
    presence_gone_s: float = PRESENCE_GONE_S
    beam: Beam | None = None  # optional pass-through beam (gateway/beam.py)
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
        self._crowd_seen_at = 0.0  # monotonic: when two or more passes were last in view
        t = self.settings.temperature
        self._window_s = t.min_samples / t.sample_hz
        self._lookback_s = self._window_s + 2.0 / t.sample_hz
        if self.fever is None:
            self.fever = FeverFlow(self.journal, self.state, self.settings.gate.id, t.threshold_c)

    # --- the loop ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The loop thread of a kiosk: steps until `stop`, pausing briefly after a failed step."""
        while not stop.is_set():
            if not self.step_guarded():
                stop.wait(0.1)

    def step_guarded(self, timeout: float = 0.1) -> bool:
        """One `step` inside the fault boundary: nothing that goes wrong in a step
        stops the gate. False when the step failed (the guard sees why)."""
        ok = False
        try:
            self.step(timeout)
            ok = True
        except DriverError as exc:  # a device failed mid-step: the health tick shows it
            log.debug("step: %s", exc)
        except Exception as exc:  # noqa: BLE001 - the relay stays closed; the guard sees why
            self._note_fault(exc, blocks=True)
        else:
            if self.fault and self.fault["blocks"]:
                log.warning("the checkpoint loop runs again after: %s", self.fault["detail"])
                self.fault = None
        if self.heartbeat is not None:  # the loop turned: the watchdog may ping
            self.heartbeat()
        return ok

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
            if self._one_at_a_time(texts, now):
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

    def _one_at_a_time(self, texts: list[str], now: float) -> bool:
        """Two or more different passes in view: decide nobody, open nothing,
        ask for one at a time (logged once per crowd). The person being
        measured, if any, is not decided either."""
        count = len(set(texts))
        if count < 2:
            if self._crowd and now - self._crowd_seen_at < CROWD_CLEAR_S:
                return True  # still the crowd, until the others have stepped back for a moment
            self._crowd = False
            return False
        self._crowd_seen_at = now
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
                self.state.show_decision({**decision_view(decision, {"seq": None, "time": _iso_now()}, kind, operator),
                                          **(view_extra or {}), "unlogged": True})
                return {"seq": None, "unlogged": True}
            self.state.show_decision(decision_view(
                Decision(decision="deny", flagged=decision.flagged, reasons=["journal_fault"],
                         guard_message="guard.internal_error", public_message="public.see_staff",
                         direction=decision.direction, reading=decision.reading),
                {"seq": None, "time": _iso_now()}, kind, operator))
            return None
        alarm = decision.flagged if alarm is None else alarm
        self._actuate(decision, alarm=alarm)
        self.state.show_decision({**decision_view(decision, event, kind, operator), **(view_extra or {})})
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

    def _remember(self, seq: int, context: _Context) -> None:
        self._contexts[seq] = context
        while len(self._contexts) > 50:
            self._contexts.pop(next(iter(self._contexts)))

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
    health_reporter: Any = None  # the compact `health` event for the gates board (gateway/health_report.py)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _jpeg: tuple[int, bytes | None] = (0, None)
    _started: bool = False
    failed: BaseException | None = None  # set when the loop thread died of a bug
    # True: no camera, sampler or loop thread; `gateway.stepped.SteppedGate`
    # advances the injected clock and calls them (simulate, loop tests).
    stepped: bool = False
    _turn_go: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _turn_done: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def start(self) -> "App":
        """Start devices, the loop, housekeeping and sync; the relay is closed first."""
        if self._started:
            return self
        self._started = True
        self.hardware.outputs.close_gate()
        if not self.stepped:  # a stepped run (gateway.stepped) drives camera, sampler and loop itself
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
        while not self._housekeeping_wait(tick):
            self.state.expire()
            status = _quietly(self.sync_worker.status) if self.sync_worker is not None else None
            health = self.checkpoint.health(status)
            health_log.update(health)
            self.state.set_health(health)
            if self.health_reporter is not None:
                _quietly(self.health_reporter.tick, health)
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

    def _housekeeping_wait(self, tick: int) -> bool:
        """Until the next housekeeping tick; True to stop. Threaded: one second of
        real time. Stepped: the stepping thread's `housekeeping_turn()` (once per
        simulated second), which waits for the tick to finish, so the health panel
        and registry refresh happen at the same simulated moments at every speed."""
        if not self.stepped:
            return self.stop_event.wait(1.0 if tick else 0.0)
        if tick:
            self._turn_done.release()
        while not self._turn_go.acquire(timeout=0.2):
            if self.stop_event.is_set():
                return True
        return self.stop_event.is_set()

    def housekeeping_turn(self) -> None:
        """Stepped runs: let the housekeeping thread run one tick, and wait for it."""
        if not self._started or self.stop_event.is_set():
            return
        self._turn_go.release()
        while not self._turn_done.acquire(timeout=0.2):
            if self.stop_event.is_set() or not any(t.name == "housekeeping" and t.is_alive() for t in self._threads):
                return  # stopping, or housekeeping died of a bug: the loop must not wait for it forever

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
            threshold = self.checkpoint.settings.temperature.threshold_c
            self.checkpoint.fever.set_threshold(threshold)
        # One threshold in force: the decision's, the guard screen's and the hand-recorded forms'.
        self.actions.threshold_c = threshold
        self.state.set_threshold(threshold)
        self.state.policy.update(enforcement=policy.enforcement, visitor_mode=policy.visitor_mode)


def build_hardware(settings: Settings, mono: Callable[[], float] | None = None):
    """The devices the config names (drivers.hardware decides real or fake, by name);
    fake devices run on `mono` when given."""
    from drivers.hardware import build_hardware as build

    return build(settings, clock=mono) if mono is not None else build(settings)


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


def build_app(settings: Settings, *, hardware=None, clock=None, enable_sync: bool = True,
              mono: Callable[[], float] | None = None, stepped: bool = False) -> App:
    """Wire one kiosk: journal, devices, loop, guard screen, sync. Nothing runs until `start()`.

    `clock` is the journal's (wall time, boot id); `mono` is the one monotonic
    clock of the per-person loop, the beam, the sampler and the fake devices
    (default `time.monotonic`; a `SimClock` in a stepped run). `stepped`: the
    caller drives camera, sampler and loop (`gateway.stepped.SteppedGate`).

    Raises PassKeyError for unreadable issuer keys and JournalWriteError when
    the journal cannot be opened for writing (both are start-up failures).
    """
    from drivers.qr import Scanner
    from drivers.thermometer import ThermometerSampler
    from gateway.beam import PassThroughBeam
    from gateway.gate_watch import GateRulesWatch
    from gateway.health_report import HealthReporter
    from gateway.screen.actions import GuardActions
    from gateway.screen.app import ScreenDeps, create_app

    journal = Journal.open(settings.journal.path, clock=clock, retention_days=settings.journal.retention_days)
    interrupted = journal.recover_interrupted()
    if interrupted:
        log.warning("decision %s was interrupted by a crash before the gate acted; logged as seq %s",
                    interrupted["detail"]["seq"], interrupted["seq"])
    hardware = hardware or build_hardware(settings, mono)
    mono = mono or time.monotonic
    hardware.outputs.close_gate()  # a reboot never leaves the gate open
    keys = load_keys(settings, journal)
    policy = current_policy(settings, journal)
    t = settings.temperature
    sampler = ThermometerSampler(hardware.thermometer, hz=t.sample_hz, keep_s=max(10.0, t.reading_timeout_s + 2),
                                 clock=mono)
    state = ScreenState(
        gate={"id": settings.gate.id, "name": settings.gate.name or settings.gate.id, "site": settings.gate.site,
              "direction": settings.gate.direction,
              "threshold_c": settings_under(policy, settings).temperature.threshold_c,  # the one in force
              "override_window_s": OVERRIDE_WINDOW_S},
        rules=list(settings.gate.rules),
        policy={"enforcement": policy.enforcement, "visitor_mode": policy.visitor_mode},
    )
    restore_screen(state, journal, policy)
    sync_worker = start_sync(settings, journal) if enable_sync else None
    checkpoint = Checkpoint(
        settings=settings_under(policy, settings), journal=journal, camera=hardware.camera, sampler=sampler,
        scanner=Scanner(settings.qr.backend), outputs=hardware.outputs, state=state, keys=keys, policy=policy,
        sync_trigger=getattr(sync_worker, "trigger", None), mono=mono,
    )
    checkpoint.fever.restore()
    actions = GuardActions(journal=journal, state=state, control=checkpoint, gate_id=settings.gate.id,
                           pin=settings.screen.pin, threshold_c=checkpoint.settings.temperature.threshold_c,
                           visitor_mode=lambda: checkpoint.policy.visitor_mode)
    checkpoint.beam = PassThroughBeam.from_settings(settings.outputs, hardware.outputs, checkpoint.log_tailgate,
                                                    pin_factory=hardware.outputs.relay.pin_factory, mono=mono)
    actions.restore_shift()
    app = App(settings=settings, journal=journal, hardware=hardware, sampler=sampler, checkpoint=checkpoint,
              state=state, actions=actions, screen=None, sync_worker=sync_worker, stepped=stepped)
    app.health_reporter = HealthReporter(journal, settings.gate.id)
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
