"""Device health for the guard screen: one small dict per device.

Each entry is ``{"status": ok|warn|fault|off, "key": i18n key or None,
"values": {...}, "blocks_entry": bool, "detail": English text for the log}``.
A device whose fault pauses automatic entry (thermometer, camera, journal
disk) has ``blocks_entry``; the guard can still open the gate by hand.
Changes are logged once when a device fails and once when it recovers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

Health = dict[str, Any]


def entry(status: str, key: str | None = None, *, blocks_entry: bool = False, detail: str = "", **values) -> Health:
    return {"status": status, "key": key, "values": values, "blocks_entry": blocks_entry, "detail": detail}


def device(ok: bool, reason: str, fault_key: str) -> Health:
    """A driver's (ok, reason) as a health entry that blocks automatic entry."""
    if ok:
        return entry("ok", blocks_entry=True)
    return entry("fault", fault_key, blocks_entry=True, detail=reason)


def thermometer(ok: bool, reason: str, signal=None) -> Health:
    """The driver's (ok, reason), and a signal fault (`sensor_watch.SignalFault`) when it answers."""
    if ok and signal is not None:
        return entry("fault", f"health.thermometer.{signal.code}", blocks_entry=True, detail=signal.detail)
    return device(ok, reason, "health.thermometer.fault")


def disk(free_bytes: int | None, low: bool, write_error: str | None) -> Health:
    if write_error:
        return entry("fault", "health.disk.fault", blocks_entry=True, detail=write_error)
    if low:
        return entry("warn", "health.disk.low", detail=f"{(free_bytes or 0) // 1_000_000} MB free")
    return entry("ok", blocks_entry=True)


def checkpoint(fault: dict | None) -> Health:
    """The loop's own faults: one person's (that person refused) or every step's (paused)."""
    if fault is None:
        return entry("ok")
    return entry("fault", "health.checkpoint.fault", blocks_entry=fault["blocks"], detail=fault["detail"])


def clock(synced: bool, refused: str | None = None) -> Health:
    """`refused`: why the kiosk's own time is not trusted (the server's is used instead)."""
    if refused:
        return entry("warn", "health.clock.refused", detail=refused)
    return entry("ok") if synced else entry("warn", "health.clock.unsynced")


def registry_status(reason: str | None, synced_at: datetime | None, configured: bool = True) -> Health:
    """The registry copy, by `staleness.registry_staleness`'s reason (the rule decide uses too)."""
    if not configured:
        return entry("off")
    detail = f"last update {synced_at.isoformat()}" if synced_at else ""
    if reason == "registry_never_synced":
        return entry("warn", "health.registry.never")
    if reason == "registry_incomplete":
        return entry("warn", "health.registry.incomplete", detail=detail)
    if reason is not None:
        return entry("warn", "health.registry.stale", detail=detail)
    return entry("ok")


def sync(configured: bool, pending: int, worker_status: dict | None) -> Health:
    if not configured:
        if pending:
            return entry("off", "health.sync.backlog", n=pending)
        return entry("off")
    online = worker_status is None or not worker_status.get("failures")
    if not online:
        return entry("warn", "health.sync.offline", detail=str(worker_status.get("last_error", "")), n=pending)
    if pending > 100:
        return entry("warn", "health.sync.backlog", n=pending)
    return entry("ok", "health.sync.backlog" if pending else None, n=pending)


class HealthLog:
    """Logs each device's transitions into and out of a fault, once each."""

    def __init__(self):
        self._last: dict[str, str] = {}
        # The first check runs before the camera's first frame: do not call
        # that start-up moment a fault.
        self._grace = 1

    def update(self, health: dict[str, Health]) -> None:
        if self._grace:
            self._grace -= 1
            return
        for name, item in health.items():
            before = self._last.get(name)
            now = item["status"]
            if now == "fault" and before != "fault":
                log.warning("%s fault: %s", name, item.get("detail") or item.get("key"))
            elif before == "fault" and now != "fault":
                log.warning("%s recovered", name)
            self._last[name] = now


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
