"""Notices to the street office, at once: an outbox and its delivery worker.

A notice is written to the `outbox` table in the same transaction as the
event that causes it, so a committed fever case always has its notice and a
rolled-back upload never has one:
- `enqueue_fever(conn, alert_rows)`: where ingest inserts fever alerts;
- `enqueue_unstaffed(conn, gate, stream_id, good)`: where ingest stores events
  (kind `unstaffed`, from the gate rules);
- gate offline: the worker itself, when a gate's last contact is older than
  `offline_after_min` (one notice per outage: the outage is named by its last
  contact time).

`ref` (unique) names a notice within this registry, so an event re-sent after
a restore makes no second notice. The receiver's idempotency key is
`<registry instance id>:<ref>`, stable across retries and restarts.

Delivery (`Notifier`, a thread started by the server's lifespan): every
second it takes the due rows, claims each by moving its `due_ns` to the next
retry time (a conditional UPDATE, so two replicas never both claim it), sends
to each channel still pending, and records what is left. Retries back off
exponentially from `retry_base_s` to `retry_cap_s` with +-50% jitter and never
give up. A crash between the send and the record costs at most a repeat with
the same key, which the receiver drops.

What a notice holds (nothing about the person):
    {"key", "kind", "site", "gate", "at"}                      fever_case, gate_unstaffed
    {"key", "kind", "site", "gate", "last_contact", "offline_after_min"}   gate_offline

Test hook, off by default: CHECKPOINT_TEST_NOTIFY_PAUSE=before_send holds
every delivery (the outbox keeps filling), =after_send holds after the first
send, before recording it; either prints one line to stderr, so a test can
kill the server at that point.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from sync.server.db import Database
from sync.server.notify_channels import DeliveryError, send
from sync.server.notify_config import NotifyConfig
from sync.server.schema import gate_contact, gates, meta, outbox

log = logging.getLogger(__name__)

UNSTAFFED_KINDS = ("unstaffed",)
POLL_S = 1.0
CONTACT_FLUSH_S = 5.0
OFFLINE_CHECK_S = 60.0
PRUNE_EVERY_S = 3600.0
KEEP_DELIVERED_DAYS = 30
BATCH = 50
PAUSE_ENV = "CHECKPOINT_TEST_NOTIFY_PAUSE"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="seconds")


def _now_ns() -> int:
    return time.time_ns()


def _insert_ignoring_repeats(conn, rows: list[dict]) -> None:
    if not rows:
        return
    insert = (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(outbox)
    conn.execute(insert.on_conflict_do_nothing(index_elements=["ref"]), rows)


def _row(ref: str, site_id: str, kind: str, body: dict, now_ns: int) -> dict:
    return {"ref": ref, "site_id": site_id, "kind": kind, "created_at": datetime.now(timezone.utc),
            "body": json.dumps(body, ensure_ascii=False), "due_ns": now_ns, "attempts": 0}


# --- hooks, called inside the caller's transaction ------------------------------------------


def enqueue_fever(conn, alert_rows: list[dict]) -> None:
    """One fever_case notice per new alert row (as ingest builds them)."""
    now_ns = _now_ns()
    _insert_ignoring_repeats(conn, [
        _row(f"fever:{a['stream_id']}:{a['seq']}", a["site_id"], "fever_case",
             {"kind": "fever_case", "site": a["site_id"], "gate": a["gate_name"], "at": _iso(a["event_time_ns"])},
             now_ns)
        for a in alert_rows
    ])


def enqueue_unstaffed(conn, gate, stream_id: str, good: list) -> None:
    """One gate_unstaffed notice per `unstaffed` event among ingest's (seq, payload, record)."""
    now_ns = _now_ns()
    _insert_ignoring_repeats(conn, [
        _row(f"unstaffed:{stream_id}:{seq}", gate.site_id, "gate_unstaffed",
             {"kind": "gate_unstaffed", "site": gate.site_id, "gate": gate.name,
              "at": record.time.astimezone(timezone.utc).isoformat(timespec="seconds")},
             now_ns)
        for seq, _payload, record in good if record.kind in UNSTAFFED_KINDS
    ])


# --- last contact -----------------------------------------------------------------------------


class ContactLog:
    """When each gate last called this process; written to `gate_contact` in
    one statement every few seconds rather than one write per request."""

    def __init__(self):
        self._seen: dict[int, int] = {}
        self._lock = threading.Lock()

    def saw(self, gate_id: int) -> None:
        self._seen[gate_id] = _now_ns()  # one dict store: atomic under the GIL

    def flush(self, db: Database) -> int:
        with self._lock:
            seen, self._seen = self._seen, {}
        if not seen:
            return 0
        rows = [{"gate_id": g, "last_contact_ns": ns} for g, ns in seen.items()]
        insert = db.insert(gate_contact)
        # Several replicas flush: the latest contact wins, never an older one.
        stmt = insert.on_conflict_do_update(
            index_elements=["gate_id"], set_={"last_contact_ns": insert.excluded.last_contact_ns},
            where=gate_contact.c.last_contact_ns < insert.excluded.last_contact_ns,
        )
        with db.write() as conn:
            conn.execute(stmt, rows)
        return len(rows)


def enqueue_offline(db: Database, offline_after_min: float, now_ns: int | None = None) -> int:
    """A gate_offline notice for each enrolled gate silent past the limit (once per outage)."""
    now_ns = now_ns or _now_ns()
    limit_ns = int(offline_after_min * 60e9)
    query = (select(gates.c.id, gates.c.site_id, gates.c.name, gate_contact.c.last_contact_ns)
             .join(gate_contact, gate_contact.c.gate_id == gates.c.id)
             .where(gates.c.revoked_at.is_(None), gate_contact.c.last_contact_ns < now_ns - limit_ns))
    with db.write() as conn:
        silent = conn.execute(query).all()
        known = set(conn.execute(select(outbox.c.ref).where(
            outbox.c.ref.in_([f"offline:{g.id}:{g.last_contact_ns}" for g in silent]))).scalars()) if silent else set()
        rows = [
            _row(f"offline:{g.id}:{g.last_contact_ns}", g.site_id, "gate_offline",
                 {"kind": "gate_offline", "site": g.site_id, "gate": g.name,
                  "last_contact": _iso(g.last_contact_ns), "offline_after_min": offline_after_min},
                 now_ns)
            for g in silent if f"offline:{g.id}:{g.last_contact_ns}" not in known
        ]
        _insert_ignoring_repeats(conn, rows)
    return len(rows)


# --- delivery -----------------------------------------------------------------------------------


def retry_delay_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with +-50% jitter: attempt 1 waits ~base, then doubles to the cap."""
    return min(cap_s, base_s * 2 ** max(0, attempt - 1)) * rng.uniform(0.5, 1.5)


def instance_id(db: Database) -> str:
    with db.read() as conn:
        value = conn.execute(select(meta.c.value).where(meta.c.key == "instance_id")).scalar_one_or_none()
    if value is None:
        raise RuntimeError("the registry database has no instance_id: run its migrations first")
    return value


class Notifier:
    """The delivery worker. `step()` does one round (tests call it directly);
    `start()`/`stop()` run it in a thread."""

    def __init__(self, db: Database, config: NotifyConfig | None = None, contacts: ContactLog | None = None,
                 *, rng: random.Random | None = None, poll_s: float = POLL_S):
        self.db = db
        self.config = config or NotifyConfig()
        self.contacts = contacts or ContactLog()
        self.channels = {c.name: c for c in self.config.channels}
        self.instance = instance_id(db)
        self.poll_s = poll_s
        self._rng = rng or random.Random()
        self._pause = os.environ.get(PAUSE_ENV, "")
        self._paused_said = False
        self._started_ns = _now_ns()
        self._next = {"flush": 0.0, "offline": 0.0, "prune": 0.0}
        self._failing: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Notifier":
        self._thread = threading.Thread(target=self._run, name="notify-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # a database outage must not end notices for good
                if not failing:
                    log.error("notify: worker failing, retrying every %.0f s: %s", self.poll_s, exc, exc_info=True)
                failing = True
            else:
                if failing:
                    log.info("notify: worker running again")
                failing = False
            self._stop.wait(self.poll_s)

    def step(self, now: float | None = None) -> int:
        """Flush contacts, look for silent gates, deliver what is due; returns rows sent to every channel."""
        now = time.monotonic() if now is None else now
        if now >= self._next["flush"]:
            self.contacts.flush(self.db)
            self._next["flush"] = now + CONTACT_FLUSH_S
        # Right after a start-up every gate looks silent for as long as the
        # server was down: judge only once this process has watched a full period.
        limit_ns = self.config.offline_after_min * 60e9
        if now >= self._next["offline"] and self.config.wants("gate_offline") \
                and _now_ns() - self._started_ns >= limit_ns:
            enqueue_offline(self.db, self.config.offline_after_min)
            self._next["offline"] = now + min(OFFLINE_CHECK_S, self.config.offline_after_min * 60 / 3)
        if now >= self._next["prune"]:
            self.prune()
            self._next["prune"] = now + PRUNE_EVERY_S
        return self.deliver_due()

    def _hold(self, point: str) -> bool:
        if self._pause != point:
            return False
        if not self._paused_said:
            print(f"notify: test pause at {point} ({PAUSE_ENV})", file=sys.stderr, flush=True)
            self._paused_said = True
        return True

    def route(self, site_id: str, kind: str) -> list[str]:
        return [c.name for c in self.config.channels if c.wants(site_id, kind)]

    def deliver_due(self) -> int:
        now_ns = _now_ns()
        with self.db.read() as conn:
            due = conn.execute(select(outbox).where(outbox.c.due_ns <= now_ns)
                               .order_by(outbox.c.due_ns).limit(BATCH)).all()
        if not due or self._hold("before_send"):
            return 0
        done = 0
        # A channel that failed once this round is not tried again until the
        # next round: one hung SMTP server costs one timeout, not one per row,
        # and the other channels' notices still go at once.
        failed_this_round: set[str] = set()
        for row in due:
            done += self._deliver(row, failed_this_round)
            if self._stop.is_set():
                break
        return done

    def _deliver(self, row, failed_this_round: set[str]) -> int:
        cfg = self.config
        next_ns = _now_ns() + int(retry_delay_s(row.attempts + 1, cfg.retry_base_s, cfg.retry_cap_s, self._rng) * 1e9)
        with self.db.write() as conn:
            claimed = conn.execute(
                update(outbox).where(outbox.c.id == row.id, outbox.c.due_ns == row.due_ns)
                .values(due_ns=next_ns, attempts=outbox.c.attempts + 1)
            ).rowcount == 1
        if not claimed:  # another replica has it
            return 0
        pending = json.loads(row.pending) if row.pending is not None else self.route(row.site_id, row.kind)
        notice = {"key": f"{self.instance}:{row.ref}", **json.loads(row.body)}
        left, errors = [], []
        for name in pending:
            channel = self.channels.get(name)
            if channel is None:
                log.warning("notify: channel %s is no longer configured; notice %s not sent there", name, notice["key"])
                continue
            if name in failed_this_round:
                left.append(name)
                errors.append(f"{name}: not tried, failed earlier this round")
                continue
            try:
                send(channel, notice)
            except DeliveryError as exc:
                left.append(name)
                failed_this_round.add(name)
                errors.append(f"{name}: {exc}"[:300])
                if name not in self._failing:
                    self._failing.add(name)
                    log.warning("notify: channel %s failing: %s (retrying with backoff)", name, exc)
                continue
            if name in self._failing:
                self._failing.discard(name)
                log.info("notify: channel %s delivering again", name)
        while self._hold("after_send") and not self._stop.is_set():
            self._stop.wait(0.5)
        values = {"pending": json.dumps(left), "last_error": "; ".join(errors) or None}
        if not left:
            values.update(due_ns=None, delivered_at=datetime.now(timezone.utc))
        with self.db.write() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
        return 0 if left else 1

    def prune(self) -> int:
        """Delivered notices are kept 30 days (for questions), then deleted."""
        cutoff = datetime.now(timezone.utc) - timedelta(days=KEEP_DELIVERED_DAYS)
        with self.db.write() as conn:
            return conn.execute(outbox.delete().where(outbox.c.due_ns.is_(None),
                                                      outbox.c.delivered_at < cutoff)).rowcount
