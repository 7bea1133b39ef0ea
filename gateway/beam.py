"""An optional pass-through beam: one opening, one person.

A light barrier (or any switch) behind the gate, wired to a GPIO input and
read through gpiozero. The loop calls `opened()` each time it opens the gate
for someone. The first break of the beam in that opening means the person
has passed: the gate closes at once instead of waiting out `open_s`. A
second break in the same opening is a second person following (尾随): the
`on_tailgate` callback logs it. The opening lasts `open_s` plus a short
grace, because the follower may cross just after the relay dropped.

    beam = PassThroughBeam(DigitalInputDevice(pin, pull_up=True), outputs, on_tailgate)
    beam.opened(3.0)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

FOLLOW_GRACE_S = 2.0  # a follower crossing just after the gate closed still counts


class PassThroughBeam:
    def __init__(self, device: Any, outputs: Any, on_tailgate: Callable[[int], None],
                 mono: Callable[[], float] = time.monotonic):
        self.device = device
        self.outputs = outputs
        self.on_tailgate = on_tailgate
        self.mono = mono
        self._lock = threading.Lock()
        self._until = 0.0
        self._breaks = 0
        device.when_activated = self._broken

    @classmethod
    def from_settings(cls, outputs_settings, outputs, on_tailgate, pin_factory=None) -> "PassThroughBeam | None":
        """The beam on `[outputs] beam_pin`, or None when none is wired."""
        if outputs_settings.beam_pin is None:
            return None
        from gpiozero import DigitalInputDevice

        device = DigitalInputDevice(outputs_settings.beam_pin, pull_up=True, pin_factory=pin_factory)
        return cls(device, outputs, on_tailgate)

    def opened(self, open_s: float) -> None:
        """The gate just opened for one person."""
        with self._lock:
            self._until = self.mono() + open_s + FOLLOW_GRACE_S
            self._breaks = 0

    def _broken(self, *_args) -> None:
        with self._lock:
            if self.mono() > self._until:
                return  # nobody was let through: not ours to judge (the guard sees the camera)
            self._breaks += 1
            breaks = self._breaks
        if breaks == 1:
            try:
                self.outputs.close_gate()  # one person has passed
            except Exception as exc:  # noqa: BLE001 - the relay's own fault shows on the screen
                log.error("beam: closing the gate failed: %s", exc)
        elif breaks == 2:  # the third and later breaks are the same incident
            try:
                self.on_tailgate(breaks)
            except Exception:  # noqa: BLE001 - logging a tailgate must not stop the beam
                log.exception("beam: logging the tailgate failed")

    def close(self) -> None:
        try:
            self.device.close()
        except Exception:  # noqa: BLE001
            pass
