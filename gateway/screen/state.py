"""What the guard screen shows, kept in one thread-safe object.

The loop and the guard actions change it; every change bumps a version and
wakes the server-sent-event streams, which send a fresh snapshot. Snapshots
come in two views: `guard` (everything) and `public` (admit or "please see
the staff", never a temperature, a name or a reason).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


RECENT_LIMIT = 12
DECISION_SHOWN_S = 8.0  # how long a decision stays big on screen before "waiting"


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


@dataclass
class ScreenState:
    gate: dict[str, Any]
    rules: list[str]
    policy: dict[str, Any]
    version: int = 0
    phase: str = "idle"  # idle | measuring | decided
    prompt: str | None = None  # an i18n key, e.g. prompt.hold_still
    current: dict[str, Any] | None = None
    current_until: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: {"admit": 0, "deny": 0, "flagged": 0})
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # open fever cases (gateway.fever_case views)
    operator: dict[str, Any] | None = None
    notice: dict[str, Any] | None = None  # last guard action result, e.g. "visitor registered"
    relief: dict[str, Any] | None = None  # a guard with a fever was signed out: ask for relief
    gate_rules: dict[str, Any] = field(default_factory=dict)  # staffing, disinfection, lane (gateway/gate_watch.py)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _subscribers: list[_Subscriber] = field(default_factory=list, repr=False)
    _changed: threading.Condition = field(default=None, repr=False)

    def __post_init__(self):
        self._changed = threading.Condition(self._lock)

    # --- changes (any thread) --------------------------------------------------

    def show_measuring(self, prompt: str | None = None) -> None:
        """The next person is being measured: the previous decision leaves the screen
        (it belonged to someone else), and the reading box goes neutral."""
        with self._lock:
            if self.phase == "measuring" and self.prompt == prompt:
                return
            self.phase, self.prompt, self.current = "measuring", prompt, None
            self._bump()

    def show_idle(self) -> None:
        with self._lock:
            if self.phase == "idle" and self.prompt is None:
                return
            self.phase, self.prompt, self.current = "idle", None, None
            self._bump()

    def show_decision(self, view: dict[str, Any], shown_s: float = DECISION_SHOWN_S) -> None:
        """A committed decision (or override): big on screen, top of the recent list."""
        with self._lock:
            self.phase, self.prompt, self.current = "decided", None, view
            self.current_until = time.monotonic() + shown_s
            self.recent.appendleft(view)
            if view.get("kind", "decision") == "decision" and view.get("seq"):
                key = view["decision"]
                self.counts[key] = self.counts.get(key, 0) + 1
            # Fevers are counted, and alerted, per case (count_case, set_alerts), not per reading.
            self._bump()

    def expire(self, now: float | None = None) -> None:
        """Back to "waiting" once a decision has been shown long enough."""
        with self._lock:
            if self.phase == "decided" and (now or time.monotonic()) >= self.current_until:
                self.phase, self.current = "idle", None
                self._bump()

    def count_case(self) -> None:
        """A fever case was opened: today's fever count is a count of cases."""
        with self._lock:
            self.counts["flagged"] = self.counts.get("flagged", 0) + 1
            self._bump()

    def ask_for_relief(self, name: str | None, case_id: str | None = None) -> None:
        """A guard has a fever: the screen asks for a relief guard until one signs in."""
        with self._lock:
            self.relief = {"name": name, "case_id": case_id} if name else None
            self._bump()

    def set_counts(self, counts: dict[str, int]) -> None:
        with self._lock:
            if counts != self.counts:
                self.counts = dict(counts)
                self._bump()

    def set_recent(self, views: list[dict[str, Any]]) -> None:
        with self._lock:
            self.recent = deque(views[:RECENT_LIMIT], maxlen=RECENT_LIMIT)
            self._bump()

    def set_alerts(self, views: list[dict[str, Any]]) -> None:
        with self._lock:
            self.alerts = list(views)
            self._bump()

    def set_health(self, health: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            if health != self.health:
                self.health = health
                self._bump()

    def set_operator(self, operator: dict[str, Any] | None) -> None:
        with self._lock:
            self.operator = operator
            self._bump()

    def set_gate_rules(self, values: dict[str, Any]) -> None:
        with self._lock:
            if values != self.gate_rules:
                self.gate_rules = dict(values)
                self._bump()

    def set_rules(self, rules: list) -> None:
        """The rules posted at the gate (strings, or {"zh", "en"} texts)."""
        with self._lock:
            if rules != self.rules:
                self.rules = list(rules)
                self._bump()

    def set_notice(self, key: str, **values) -> None:
        with self._lock:
            self.notice = {"key": key, "values": values, "at": time.time()}
            self._bump()

    # --- reading ------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Automatic entry is paused while a device the decision needs is down."""
        return any(h.get("blocks_entry") and h.get("status") == "fault" for h in self.health.values())

    def snapshot(self, view: str = "guard") -> dict[str, Any]:
        with self._lock:
            if view == "public":
                current = None
                if self.current:
                    # The queue sees admit or a neutral message: never a reading, a name or a reason.
                    current = {"decision": self.current["decision"], "seq": self.current.get("seq"),
                               "public_text": self.current.get("public_text")}
                return {"version": self.version, "view": "public", "gate": self.gate, "phase": self.phase,
                        "prompt": self.prompt, "current": current, "rules": self.rules, "paused": self.paused}
            return {
                "version": self.version,
                "view": "guard",
                "gate": self.gate,
                "policy": self.policy,
                "rules": self.rules,
                "phase": self.phase,
                "prompt": self.prompt,
                "current": self.current,
                "counts": dict(self.counts),
                "recent": list(self.recent),
                "health": self.health,
                "paused": self.paused,
                "alerts": list(self.alerts),
                "operator": self.operator,
                "notice": self.notice,
                "relief": self.relief,
                "gate_rules": self.gate_rules,
            }

    def wait_for_change(self, after_version: int, timeout: float) -> int:
        """Block until the version passes `after_version` (for tests and tools)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > after_version, timeout)
            return self.version

    # --- server-sent events -----------------------------------------------------------

    def subscribe(self) -> asyncio.Queue:
        """A queue that gets the new version after each change (call from the event loop)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        with self._lock:
            self._subscribers.append(_Subscriber(asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s.queue is not queue]

    def _bump(self) -> None:
        self.version += 1
        self._changed.notify_all()
        for sub in list(self._subscribers):
            try:
                sub.loop.call_soon_threadsafe(_offer, sub.queue, self.version)
            except RuntimeError:  # that event loop has closed: the stream is gone
                self._subscribers.remove(sub)


def _offer(queue: asyncio.Queue, version: int) -> None:
    # Only "something changed" matters; the stream sends the newest snapshot,
    # so a slow client gets fewer, fresher updates instead of a backlog.
    if queue.full():
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(version)
