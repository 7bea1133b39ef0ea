"""Gate relay, buzzer and status lights through gpiozero.

- The relay is a `DigitalOutputDevice` with the configured active level and
  `initial_value=False`: building it closes the gate, so a reboot or a restart
  never leaves the gate open. `close()` (also on leaving the `with` block, and
  on SIGTERM inside `exit_on_sigterm()`) drives it closed before releasing it.
- `open_for(seconds)` returns at once; gpiozero's background thread closes the
  relay when the time is up. A second call extends the opening (never shortens
  it) without an off/on glitch.
- `signal(kind)` shows admit (green, one chirp), deny (red, two short beeps),
  fever (red flashing, three long beeps) or fault (amber, one long beep).

Tests use gpiozero's own MockFactory (`pin_factory=MockFactory()`).
"""

from __future__ import annotations

import contextlib
import logging
import signal as signals
import threading
import time
from typing import Callable
from dataclasses import dataclass

from gpiozero import LED, Buzzer, DigitalOutputDevice, GPIOZeroError

from drivers.errors import RelayFault

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Beeps:
    on_s: float
    off_s: float
    count: int

    @property
    def duration_s(self) -> float:
        return self.count * (self.on_s + self.off_s)


# Distinct by ear without looking: a fever must never sound like a refusal.
BEEPS = {
    "admit": Beeps(0.08, 0.0, 1),
    "deny": Beeps(0.12, 0.12, 2),
    "fever": Beeps(0.45, 0.15, 3),
    "fault": Beeps(1.0, 0.0, 1),
}
LIGHT = {"admit": "green", "deny": "red", "fever": "red", "fault": "amber"}
SIGNALS = tuple(BEEPS)


class GateOutputs:
    """The gate's outputs from `[outputs]` settings; `pin_factory=None` = gpiozero's default."""

    def __init__(self, settings, pin_factory=None, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._clock = clock
        # Stepped (a simulation on an injected clock, gateway.stepped): the relay
        # closes in `tick()` once `clock` passes the opening's end, instead of
        # gpiozero timing it in real time. Lights and buzzer still blink in real time.
        self.stepped = False
        self._lock = threading.RLock()
        self._open_until = 0.0
        self._closed = False
        self.relay: DigitalOutputDevice | None = None
        self.buzzer: Buzzer | None = None
        self.lights: dict[str, LED] = {}
        pin = settings.relay_pin
        try:
            self.relay = DigitalOutputDevice(
                pin, active_high=settings.relay_active_high, initial_value=False, pin_factory=pin_factory
            )
            if settings.buzzer_pin is not None:
                pin = settings.buzzer_pin
                self.buzzer = Buzzer(pin, initial_value=False, pin_factory=pin_factory)
            for colour in ("green", "red", "amber"):
                pin = getattr(settings, f"{colour}_pin")
                if pin is not None:
                    self.lights[colour] = LED(pin, initial_value=False, pin_factory=pin_factory)
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            self.close()
            raise RelayFault(f"cannot drive GPIO{pin}", exc) from exc

    def __repr__(self) -> str:
        return f"<GateOutputs relay=GPIO{self.settings.relay_pin} open={self.is_open}>"

    def __enter__(self) -> "GateOutputs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _gpio(self, what: str):
        if self._closed:
            raise RelayFault(f"{what}: the gate outputs are closed")
        try:
            with self._lock:
                yield
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            raise RelayFault(f"{what} failed", exc) from exc

    @property
    def is_open(self) -> bool:
        """Whether the relay is energised (the gate is open)."""
        try:
            return bool(self.relay is not None and not self._closed and self.relay.value)
        except GPIOZeroError:
            return False

    def open_for(self, seconds: float | None = None) -> None:
        """Open the gate for `seconds` (default `outputs.open_s`) without blocking."""
        seconds = self.settings.open_s if seconds is None else seconds
        if not seconds > 0:
            raise ValueError(f"open_for needs a positive duration, got {seconds!r}")
        with self._gpio(f"opening the gate (GPIO{self.settings.relay_pin})"):
            now = self._clock()
            until = max(now + seconds, self._open_until if self.is_open else 0.0)
            self._open_until = until
            if self.stepped:
                self.relay.on()
            else:
                self.relay.blink(on_time=until - now, off_time=0, n=1, background=True)

    def tick(self) -> None:
        """A stepped run: close the relay once the opening's time is over on the injected clock."""
        if self.stepped and self._open_until and self._clock() >= self._open_until:
            with self._gpio(f"closing the gate (GPIO{self.settings.relay_pin})"):
                self._open_until = 0.0
                self.relay.off()

    def close_gate(self) -> None:
        """Close the gate now (cancels a pending opening)."""
        with self._gpio(f"closing the gate (GPIO{self.settings.relay_pin})"):
            self._open_until = 0.0
            self.relay.off()

    def signal(self, kind: str, seconds: float | None = None) -> None:
        """Show `kind` (admit, deny, fever, fault) on the lights for `seconds` and beep its pattern."""
        if kind not in BEEPS:
            raise ValueError(f"unknown signal {kind!r}; expected one of {', '.join(SIGNALS)}")
        seconds = self.settings.open_s if seconds is None else seconds
        with self._gpio(f"signal {kind}"):
            for light in self.lights.values():
                light.off()
            light = self.lights.get(LIGHT[kind])
            if light is not None:
                if kind == "fever":
                    light.blink(on_time=0.25, off_time=0.25, n=max(1, round(seconds / 0.5)))
                else:
                    light.blink(on_time=seconds, off_time=0, n=1)
            if self.buzzer is not None:
                beeps = BEEPS[kind]
                self.buzzer.blink(on_time=beeps.on_s, off_time=beeps.off_s, n=beeps.count)

    def quiet(self) -> None:
        """Lights and buzzer off (the relay is left alone)."""
        with self._gpio("clearing lights"):
            for device in (*self.lights.values(), self.buzzer):
                if device is not None:
                    device.off()

    def close(self) -> None:
        """Safe state: relay closed first, then every pin released. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for device in (self.relay, self.buzzer, *self.lights.values()):
                if device is None:
                    continue
                try:
                    device.off()
                    device.close()
                except GPIOZeroError:  # already closed; keep closing the rest
                    log.debug("closing %r failed", device, exc_info=True)


@contextlib.contextmanager
def exit_on_sigterm():
    """Turn SIGTERM into SystemExit(143) inside the block, so `with`/`finally` run.

    Python's default SIGTERM action kills the process without unwinding, which
    would skip `GateOutputs.close()`. systemd stops services with SIGTERM.
    Only the main thread can install signal handlers; elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signals.signal(signals.SIGTERM, handler)
    try:
        yield
    finally:
        signals.signal(signals.SIGTERM, previous)
