"""A kiosk stepped on a simulated clock: no device threads, no sleeps.

`SteppedGate` runs the fake camera, the thermometer sampler and the
per-person loop of an App built with `stepped=True` on one thread, all
reading one `SimClock`. Each `step()` moves the clock to the next device
event (a camera frame every 1/fps s, a thermometer sample every 1/sample_hz s),
runs it, and after each frame steps the loop once inside its fault boundary
(the loop thread of a kiosk wakes for each new frame too). So

- the loop tests say `gate.run_for(1.5)` instead of sleeping 1.5 s, and
- `checkpoint simulate --speed X` plays a scenario X times faster than real
  time (`speed`: simulated seconds per wall second; None = as fast as the CPU
  can), with the same decisions at every speed: the same events happen at the
  same simulated times, in the same order.

Housekeeping (health, registry refresh, staffing) keeps its own thread, but
takes its turn once a simulated second (`App.housekeeping_turn`) while the
stepping thread waits.

    clock = SimClock()
    app = build_app(settings, mono=clock, stepped=True)
    gate = SteppedGate(app, clock)
    app.hardware.camera.show(text)
    gate.run_for(3.0, until=lambda: app.checkpoint.decisions)
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from gateway.sim_clock import SimClock


class SteppedGate:
    def __init__(self, app, clock: SimClock, *, speed: float | None = None):
        if not app.stepped:
            raise ValueError("build the app with stepped=True: its device threads would race the stepped clock")
        self.app = app
        self.clock = clock
        self.speed = speed
        self.frame_s = 1.0 / app.settings.camera.fps
        self.sample_s = app.sampler.period_s
        now = clock.now()
        self._next_frame = now
        self._next_sample = now
        self._next_housekeeping = now
        self._sim_start = now
        self._wall_start = time.monotonic()
        self.steps = 0
        app.hardware.outputs.stepped = True  # the relay closes on this clock too

    def step(self) -> None:
        """Move to the next device event, run it, and step the loop once."""
        moment = min(self._next_frame, self._next_sample)
        self.clock.advance_to(moment)
        self._pace()
        if self._next_sample <= moment:
            self.app.sampler.sample_once()
            self._next_sample += self.sample_s
        self.app.hardware.outputs.tick()
        if self._next_housekeeping <= moment:  # health, registry refresh: once a simulated second
            self.app.housekeeping_turn()
            self._next_housekeeping += 1.0
        if self._next_frame <= moment:
            self.app.hardware.camera.tick()
            self._next_frame += self.frame_s
            # Like the loop thread, which wakes for each new frame: one step per frame.
            self.app.checkpoint.step_guarded(timeout=0)
            self.steps += 1

    def run_for(self, seconds: float, until: Callable[[], object] | None = None,
                stop: threading.Event | None = None) -> bool:
        """Step for `seconds` of simulated time, or until `until()` is true (checked
        before each step) or `stop` is set. Returns whether `until()` came true."""
        deadline = self.clock.now() + seconds
        while True:
            if until is not None and until():
                return True
            if self.clock.now() >= deadline or (stop is not None and stop.is_set()):
                return False
            self.step()

    def _pace(self) -> None:
        """At `speed`, wait until the wall clock has caught up with simulated time / speed."""
        if not self.speed:
            return
        due = self._wall_start + (self.clock.now() - self._sim_start) / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
