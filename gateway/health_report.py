"""Device health and the upload backlog, reported to the registry's gates board.

The guard screen's health panel (`gateway.health`) lives only on the kiosk.
The street office also needs it: a gate whose thermometer failed, or whose
uploads pile up, is a gate nobody is really screening. So the kiosk journals
a compact ``health`` event, which travels like every other event (journal,
then the exactly-once upload stream):

    {"kind": "health", "gate": "east-1",
     "detail": {"devices": {"thermometer": "ok", "camera": "fault", ...}, "pending": 12}}

Only each device's status word and the count of events not yet uploaded:
no readings, no people, nothing the board does not show. Because every
event is uploaded and kept, the reporter is rate-limited: it writes when a
device's status changes (at most once per `min_interval_s`, so a flapping
device cannot flood the journal) and otherwise once per `heartbeat_s` with
the current backlog. The health event itself counts in the next backlog.
"""

from __future__ import annotations

import time
from typing import Any, Callable

MIN_INTERVAL_S = 60.0  # a status change waits at most this long
START_AFTER_S = 10.0  # not before the devices have had a moment to start
HEARTBEAT_S = 300.0  # the backlog is reported at least this often (the board calls a gate online within 5 min)


def compact(health: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each device's status word (ok, warn, fault, off), the panel's order kept."""
    return {str(name): str(item.get("status", "unknown")) if isinstance(item, dict) else str(item)
            for name, item in health.items()}


class HealthReporter:
    """Decides when the kiosk journals a ``health`` event; `tick` once a second or so."""

    def __init__(self, journal, gate_id: str, *, min_interval_s: float = MIN_INTERVAL_S,
                 heartbeat_s: float = HEARTBEAT_S, start_after_s: float = START_AFTER_S,
                 monotonic: Callable[[], float] = time.monotonic):
        self.journal = journal
        self.gate_id = gate_id
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.monotonic = monotonic
        self._started = monotonic()
        self.start_after_s = start_after_s
        self._last_devices: dict[str, str] | None = None
        self._last_at: float | None = None

    def tick(self, health: dict[str, dict[str, Any]]) -> dict | None:
        """The event written, or None when nothing is due."""
        now = self.monotonic()
        if now - self._started < self.start_after_s:
            return None  # the camera's first frame and the first sync are still coming
        devices = compact(health)
        if self._last_at is not None:
            since = now - self._last_at
            changed = devices != self._last_devices
            if not (changed and since >= self.min_interval_s) and since < self.heartbeat_s:
                return None
        # Remembered first: a journal that cannot write is retried at the next interval, not every second.
        self._last_devices, self._last_at = devices, now
        return self.journal.append({"kind": "health", "gate": self.gate_id,
                                    "detail": {"devices": devices, "pending": self.journal.pending_count()}})
