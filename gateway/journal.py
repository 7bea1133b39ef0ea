"""The offline log: one SQLite file per kiosk, the source of truth for sync.

Every gate decision, guard action and incident is an *event* with a contiguous
`seq` in this file's *stream* (a UUID made with the file). The sync client
uploads unacked events in seq order and marks them acked once the server has
committed them. Ledgers (visitors, shifts, disinfection, staff temperatures)
are tables of their own, and each ledger entry is also an event so it reaches
the registry through the same stream.

Discipline:
- WAL with synchronous=FULL on every connection: a decision that was shown or
  acted on survives a power cut.
- One writer: one connection, every write under one lock, one transaction per
  append (BEGIN IMMEDIATE).
- Numbered migrations in `MIGRATIONS`, tracked with PRAGMA user_version.
- At open, `quick_check` (confirmed by `integrity_check`); a corrupt file is
  moved aside, never overwritten, and a new stream starts with an incident
  event. Only SQLite's verdict (its result code, never the message text)
  counts as corrupt.
- A full disk, read-only filesystem or I/O error raises `JournalWriteError`
  (at open too: the file stays where it is), which the loop shows to the
  guard. Nothing is dropped silently.

    journal = Journal.open("journal.db")
    event = journal.append({"kind": "decision", "decision": "deny", ...})
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils

from gateway.clock import ClockReading, SystemClock, to_ns

log = logging.getLogger(__name__)

# The decision fields of the contract (DESIGN.md, "Decision JSON"), in order.
DECISION_FIELDS = (
    "seq",
    "time",
    "gate",
    "direction",
    "pass_id",
    "person_id",
    "object_c",
    "ambient_c",
    "body_c",
    "threshold_c",
    "decision",
    "flagged",
    "reasons",
)

# Columns a caller may set on append; the journal fills in the rest.
_CALLER_COLUMNS = (
    "kind",
    "gate",
    "direction",
    "pass_id",
    "person_id",
    "object_c",
    "ambient_c",
    "offset_c",
    "body_c",
    "threshold_c",
    "decision",
    "flagged",
    "reasons",
    "operator",
    "detail",
)

# The kiosk clock may differ from the server's time by this much before the
# server's time (carried forward by the monotonic clock) is trusted instead.
CLOCK_TOLERANCE = timedelta(minutes=5)

# Event kinds whose rows are ledgers; used for purging health data.
LEDGER_TABLES = ("visitors", "shifts", "disinfections", "staff_temperatures")


class JournalError(Exception):
    """Base of the journal's errors."""


class JournalWriteError(JournalError):
    """The journal cannot write (disk full, read-only filesystem, I/O error).

    The loop shows this to the guard and fails closed for automatic entry;
    the decision that could not be written is not acted on.
    """


def _create_v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["events"].create(
        {
            "seq": int,
            "stream_id": str,
            "kind": str,
            "time": str,
            "gate": str,
            "direction": str,
            "pass_id": str,
            "person_id": str,
            "object_c": float,
            "ambient_c": float,
            "offset_c": float,
            "body_c": float,
            "threshold_c": float,
            "decision": str,
            "flagged": int,
            "reasons": str,
            "boot_id": str,
            "mono_ns": int,
            "wall_time": int,
            "clock_synced": int,
            "operator": str,
            "detail": str,
            "acked": int,
        },
        pk="seq",
        not_null={"stream_id", "kind", "time", "boot_id", "mono_ns", "wall_time", "clock_synced", "acked"},
        defaults={"acked": 0, "flagged": 0, "reasons": "[]", "detail": "{}"},
    )
    # The uploader asks for unacked rows in seq order; keep that cheap however
    # many acked rows pile up.
    db.execute("CREATE INDEX ix_events_pending ON events(seq) WHERE acked = 0")
    db.execute("CREATE INDEX ix_events_wall ON events(wall_time)")

    ledger_common = {"id": int, "event_seq": int, "time": str, "gate": str, "operator": str}
    db["visitors"].create(
        {
            **ledger_common,
            "name": str,
            "origin": str,
            "phone": str,
            "address": str,
            "reason": str,
            "visiting": str,
            "temperature_c": float,
            "special_case": int,
            "filed_ref": str,
        },
        pk="id",
    )
    db["shifts"].create(
        {**ledger_common, "operator_id": str, "action": str},
        pk="id",
    )
    db["disinfections"].create({**ledger_common, "note": str}, pk="id")
    db["staff_temperatures"].create(
        {**ledger_common, "person": str, "period": str, "temperature_c": float},
        pk="id",
    )
    # The kiosk's copy of the registry: people, passes, keys, policy, ...
    # One generic table so the feed can add entity kinds without a migration.
    db["registry"].create(
        {"entity": str, "entity_id": str, "payload": str, "change_seq": int},
        pk=("entity", "entity_id"),
    )


MIGRATIONS = [_create_v1]


@dataclass(frozen=True)
class DiskStatus:
    free_bytes: int
    low: bool


class Journal:
    """The kiosk's offline log. Thread-safe; one instance per file."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, clock=None, retention_days: int = 14):
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self.path = path
        self.clock = clock or SystemClock()
        self.retention_days = retention_days
        self.stream_id: str = self.get_meta("stream_id")
        # seq on the wire = local seq - stream_offset (see `rotate_stream`).
        self.stream_offset: int = int(self.get_meta("stream_offset") or 0)
        self._server_ref = _parse_server_ref(self.get_meta("server_clock"))

    # --- opening --------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, clock=None, retention_days: int = 14) -> "Journal":
        """Open (or create) the journal, moving it aside first only if it is corrupt.

        A full disk, a read-only filesystem or an I/O error is not corruption:
        the file is left where it is and `JournalWriteError` says why, so a
        healthy journal full of unsynced events is never abandoned.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        incident = None
        conn = None
        try:
            conn = _connect(path)
            _check_integrity(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if not is_corruption(exc):
                raise _write_error(exc, path) from exc
            moved = _move_aside(path)
            log.error("journal %s is corrupt (%s); moved to %s, starting a new stream", path, exc, moved)
            incident = {"error": str(exc), "moved_to": str(moved)}
            try:
                conn = _connect(path)
            except sqlite3.DatabaseError as again:
                raise _write_error(again, path) from again
        try:
            _migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _write_error(exc, path) from exc
        journal = cls(conn, path, clock=clock, retention_days=retention_days)
        if incident:
            journal.append({"kind": "journal_corrupt", "detail": incident})
        return journal

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- events ----------------------------------------------------------------

    def append(self, fields: dict[str, Any], *, in_flight: bool = False) -> dict[str, Any]:
        """Commit one event durably and return it as stored (with seq and time).

        Only after this returns may the gate act on a decision. With
        `in_flight`, the event is also marked as being acted on until
        `actuated(seq)`; a crash in between is found by `recover_interrupted`.
        """
        unknown = set(fields) - set(_CALLER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown event fields: {sorted(unknown)}")
        if "kind" not in fields:
            raise ValueError("an event needs a kind")
        now = self.clock.read()
        estimate = self._server_estimate(now)
        if now.synced and estimate is not None and abs(now.wall - estimate) > CLOCK_TOLERANCE:
            # "Synced" but far from the server's time: not synced; the server places it by its anchor.
            now = ClockReading(now.boot_id, now.mono_ns, now.wall, False)
        row = {key: fields.get(key) for key in _CALLER_COLUMNS}
        row["flagged"] = int(bool(row["flagged"]))
        row["reasons"] = json.dumps(list(row["reasons"] or []))
        row["detail"] = json.dumps(row["detail"] or {}, ensure_ascii=False, default=str)
        row.update(
            stream_id=self.stream_id,
            time=now.wall.isoformat(timespec="milliseconds"),
            boot_id=now.boot_id,
            mono_ns=now.mono_ns,
            wall_time=now.wall_ns,
            clock_synced=int(now.synced),
        )
        columns = list(row)
        sql = (
            f"INSERT INTO events (seq, {', '.join(columns)}) "
            f"SELECT COALESCE(MAX(seq), 0) + 1, {', '.join('?' * len(columns))} FROM events"
        )
        with self._write() as conn:
            cur = conn.execute(sql, [row[c] for c in columns])
            seq = cur.lastrowid
            if in_flight:
                self._set_meta(conn, "in_flight_seq", str(seq))
            if now.synced:
                candidate = self._watermark_candidate(now)
                if candidate is not None:
                    self._raise_watermark(conn, candidate)
        row["seq"] = seq
        row["acked"] = 0
        return _decode(row)

    def actuated(self, seq: int) -> None:
        """The relay, lights and screen have acted on event `seq`."""
        with self._write() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'in_flight_seq' AND value = ?", [str(seq)])

    def recover_interrupted(self) -> dict | None:
        """After a crash: log an `interrupted` event for a decision left mid-action."""
        seq = self.get_meta("in_flight_seq")
        if seq is None:
            return None
        with self._write() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'in_flight_seq'")
            return self.append({"kind": "interrupted", "detail": {"seq": int(seq)}})

    def events(self, *, after_seq: int = 0, limit: int | None = None, kind: str | None = None) -> list[dict]:
        sql = "SELECT * FROM events WHERE seq > ?"
        params: list[Any] = [after_seq]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY seq"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return self._select(sql, params)

    def recent(self, limit: int = 20, kinds: Iterable[str] = ("decision",)) -> list[dict]:
        kinds = list(kinds)
        marks = ", ".join("?" * len(kinds))
        return self._select(
            f"SELECT * FROM events WHERE kind IN ({marks}) ORDER BY seq DESC LIMIT ?", [*kinds, limit]
        )

    def pending(self, limit: int = 500) -> list[dict]:
        """Unacked events in seq order: what the uploader sends next."""
        return self._select("SELECT * FROM events WHERE acked = 0 ORDER BY seq LIMIT ?", [limit])

    def stored_rows(self, columns: Iterable[str], *, after_seq: int | None = None, limit: int = 500) -> list[tuple]:
        """`columns` of events in seq order exactly as stored (JSON columns as
        text, flags as 0/1): unacked ones, or every one after `after_seq`.

        The uploader's fast path: it would only re-encode what `events()`
        decodes, which cost more than the upload itself.
        """
        columns = list(columns)
        unknown = [c for c in columns if c not in self._event_columns()]
        if unknown:
            raise ValueError(f"unknown event columns: {unknown}")
        where, params = ("acked = 0", [limit]) if after_seq is None else ("seq > ?", [after_seq, limit])
        with self._lock:
            return self._conn.execute(
                f"SELECT {', '.join(columns)} FROM events WHERE {where} ORDER BY seq LIMIT ?", params
            ).fetchall()

    def _event_columns(self) -> set[str]:
        if not hasattr(self, "_columns_cache"):
            self._columns_cache = {row[1] for row in self._conn.execute("PRAGMA table_info(events)")}
        return self._columns_cache

    def pending_count(self) -> int:
        return self._scalar("SELECT COUNT(*) FROM events WHERE acked = 0")

    def last_seq(self) -> int:
        return self._scalar("SELECT COALESCE(MAX(seq), 0) FROM events")

    def mark_acked(self, through_seq: int) -> int:
        """The server committed everything up to `through_seq`."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE events SET acked = 1 WHERE acked = 0 AND seq <= ?", [through_seq]
            ).rowcount

    def mark_unacked_after(self, acked_through: int) -> int:
        """The server knows less than we thought (restored from backup): resend."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE events SET acked = 0 WHERE acked = 1 AND seq > ?", [acked_through]
            ).rowcount

    def rotate_stream(self, from_seq: int, *, diverged_at: int) -> dict:
        """Move the events from local seq `from_seq` on to a new stream.

        Used when the server holds different events under those seqs: this
        file was restored from an older copy and reused seqs already
        uploaded. Everything before `from_seq` is on the server as it is
        here; the rest is unacked and goes out on the new stream, whose seq
        1 is local `from_seq`. Returns the `stream_rotated` event.
        """
        old, old_offset = self.stream_id, self.stream_offset
        new = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute("UPDATE events SET acked = 1 WHERE acked = 0 AND seq < ?", [from_seq])
            conn.execute("UPDATE events SET acked = 0, stream_id = ? WHERE seq >= ?", [new, from_seq])
            self._set_meta(conn, "stream_id", new)
            self._set_meta(conn, "stream_offset", str(from_seq - 1))
            self.stream_id, self.stream_offset = new, from_seq - 1
            try:
                event = self.append({"kind": "stream_rotated", "detail": {
                    "previous_stream": old, "diverged_at": diverged_at, "from_local_seq": from_seq}})
            except BaseException:
                self.stream_id, self.stream_offset = old, old_offset
                raise
        log.error("journal %s: stream %s diverged from the server at seq %d (restored from an older copy?); "
                  "events from local seq %d on go to the new stream %s", self.path, old, diverged_at, from_seq, new)
        return event

    def counts_for_day(self, day_start: datetime, day_end: datetime) -> dict[str, int]:
        """Today's admits and denials, and fever *cases* opened (not flagged readings), for the guard screen."""
        lo, hi = to_ns(day_start), to_ns(day_end)
        rows = self._select(
            "SELECT decision, COUNT(*) AS n FROM events "
            "WHERE kind = 'decision' AND wall_time >= ? AND wall_time < ? GROUP BY decision",
            [lo, hi],
        )
        counts = {"admit": 0, "deny": 0, "flagged": 0}
        for row in rows:
            if row["decision"] in counts:
                counts[row["decision"]] = row["n"]
        # Not named "flagged": _decode would turn the count into a boolean (the count fell back to 1).
        counts["flagged"] = self._scalar(
            "SELECT COUNT(*) FROM events WHERE kind = 'fever_case.opened' AND wall_time >= ? AND wall_time < ?",
            [lo, hi],
        )
        return counts

    # --- ledgers ---------------------------------------------------------------

    def add_ledger_entry(self, table: str, entry: dict[str, Any], *, operator: str, gate: str) -> dict:
        """Write a ledger row and its event in one transaction."""
        if table not in LEDGER_TABLES:
            raise ValueError(f"unknown ledger {table!r}; expected one of {LEDGER_TABLES}")
        with self._write():
            event = self.append(
                {"kind": f"ledger.{table}", "gate": gate, "operator": operator, "detail": entry}
            )
            row = {**entry, "event_seq": event["seq"], "time": event["time"], "gate": gate, "operator": operator}
            self._db[table].insert(row, alter=False)
        return row

    def ledger(self, table: str, limit: int = 100) -> list[dict]:
        if table not in LEDGER_TABLES:
            raise ValueError(f"unknown ledger {table!r}")
        return self._select(f"SELECT * FROM [{table}] ORDER BY id DESC LIMIT ?", [limit])

    # --- the registry copy -------------------------------------------------------

    def apply_registry_page(self, changes: list[dict], cursor: str, *, replace: bool = False) -> None:
        """Apply one page of the registry feed and its cursor atomically.

        `changes` are dicts with entity, entity_id, op ("upsert"|"delete"),
        payload and change_seq. Redelivered or stale changes are ignored.
        `replace` clears the copy first (the first page of a snapshot).
        """
        with self._write() as conn:
            if replace:
                conn.execute("DELETE FROM registry")
            for change in changes:
                key = (change["entity"], str(change["entity_id"]))
                current = conn.execute(
                    "SELECT change_seq FROM registry WHERE entity = ? AND entity_id = ?", key
                ).fetchone()
                if current and current[0] is not None and current[0] >= change["change_seq"]:
                    continue
                if change.get("op") == "delete":
                    conn.execute("DELETE FROM registry WHERE entity = ? AND entity_id = ?", key)
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO registry (entity, entity_id, payload, change_seq) VALUES (?, ?, ?, ?)",
                    (*key, json.dumps(change.get("payload") or {}, ensure_ascii=False), change["change_seq"]),
                )
            self._set_meta(conn, "registry_cursor", cursor)
            self._set_meta(conn, "registry_synced_wall", self.clock.read().wall.isoformat())

    def touch_registry(self) -> None:
        """The registry answered 'nothing new': our copy is fresh as of now."""
        self.set_meta("registry_synced_wall", self.clock.read().wall.isoformat())

    def registry_get(self, entity: str, entity_id: str) -> dict | None:
        rows = self._select(
            "SELECT payload FROM registry WHERE entity = ? AND entity_id = ?", [entity, str(entity_id)]
        )
        return json.loads(rows[0]["payload"]) if rows else None

    def registry_all(self, entity: str) -> dict[str, dict]:
        rows = self._select("SELECT entity_id, payload FROM registry WHERE entity = ?", [entity])
        return {r["entity_id"]: json.loads(r["payload"]) for r in rows}

    def registry_cursor(self) -> str | None:
        return self.get_meta("registry_cursor")

    def registry_synced_at(self) -> datetime | None:
        value = self.get_meta("registry_synced_wall")
        return datetime.fromisoformat(value) if value else None

    # --- trusted time --------------------------------------------------------------

    def trusted_now(self, wall: datetime | None = None) -> datetime:
        """max(wall clock, watermark): a clock rolled back cannot revive an expired pass.

        Once the server's time is known in this boot, a wall clock more than
        `CLOCK_TOLERANCE` away from it (the server's time carried forward by
        the monotonic clock) is refused: a clock that jumped ahead cannot
        expire valid passes either.
        """
        reading = self.clock.read()
        wall = wall or reading.wall
        estimate = self._server_estimate(reading)
        if estimate is not None and abs(wall - estimate) > CLOCK_TOLERANCE:
            wall = estimate
        mark = self.watermark()
        return max(wall, mark) if mark else wall

    def clock_refused(self) -> str | None:
        """Why the kiosk's own time is not trusted right now, for the guard; None when it is."""
        reading = self.clock.read()
        estimate = self._server_estimate(reading)
        if estimate is not None and abs(reading.wall - estimate) > CLOCK_TOLERANCE:
            off = (reading.wall - estimate).total_seconds()
            return f"the kiosk clock is {off:+.0f} s from the server's time; using the server's"
        refused = self.get_meta("server_refused_time")
        if refused and refused.split("|", 1)[0] == reading.boot_id:
            return refused.split("|", 1)[1]
        return None

    def note_time_refused(self, why: str) -> None:
        """The server corrected the time of events this boot sent (see sync)."""
        self.set_meta("server_refused_time", f"{self.clock.read().boot_id}|{why}")

    def watermark(self) -> datetime | None:
        value = self.get_meta("trusted_time")
        return datetime.fromisoformat(value) if value else None

    def record_server_time(self, server_time: datetime) -> dict:
        """A sync response's server time: the reference for trusted time, and a clock anchor.

        The watermark rises to the server's time, or comes down to it if a
        clock that jumped ahead had raised it further. The anchor event
        (boot_id, mono_ns, server_time) lets the server correct the times of
        events recorded while the clock was unsynced.
        """
        reading = self.clock.read()
        with self._write() as conn:
            mark = conn.execute("SELECT value FROM meta WHERE key = 'trusted_time'").fetchone()
            if mark and datetime.fromisoformat(mark[0]) > server_time + CLOCK_TOLERANCE:
                log.warning("trusted time %s was ahead of the server's %s (a clock jump); reset", mark[0],
                            server_time.isoformat())
                self._set_meta(conn, "trusted_time", server_time.astimezone(timezone.utc).isoformat())
            self._raise_watermark(conn, server_time)
            ref = {"server": server_time.isoformat(), "boot_id": reading.boot_id, "mono_ns": reading.mono_ns}
            self._set_meta(conn, "server_clock", json.dumps(ref))
            previous, self._server_ref = self._server_ref, _parse_server_ref(json.dumps(ref))
            try:
                return self.append({"kind": "clock_anchor", "detail": {"server_time": server_time.isoformat()}})
            except BaseException:
                self._server_ref = previous
                raise

    def _server_estimate(self, reading) -> datetime | None:
        """The server's time now, if it answered during this boot."""
        ref = self._server_ref
        if ref is None or ref[1] != reading.boot_id:
            return None
        return ref[0] + timedelta(microseconds=(reading.mono_ns - ref[2]) // 1000)

    def _watermark_candidate(self, reading) -> datetime | None:
        """What a synced local clock may raise the watermark to; None: nothing.

        Never synced with a server: the clock (it is all there is). Server
        time known in this boot: the clock, unless it is more than the
        tolerance away from the server's time, then the server's time.
        Known only from an earlier boot: nothing until the server answers.
        """
        if self._server_ref is None:
            return reading.wall
        estimate = self._server_estimate(reading)
        if estimate is None:
            return None
        return reading.wall if abs(reading.wall - estimate) <= CLOCK_TOLERANCE else estimate

    def _raise_watermark(self, conn: sqlite3.Connection, when: datetime) -> None:
        # Stored as an ISO string; compare as datetimes so it only moves forward.
        row = conn.execute("SELECT value FROM meta WHERE key = 'trusted_time'").fetchone()
        if row is None or datetime.fromisoformat(row[0]) < when:
            self._set_meta(conn, "trusted_time", when.astimezone(timezone.utc).isoformat())

    # --- housekeeping ------------------------------------------------------------

    def purge(self, now: datetime | None = None) -> int:
        """Delete acked events (and their ledger rows) older than the retention.

        Unacked events are never purged, and neither is the newest event, whose
        seq the next append continues from.
        """
        now = self.trusted_now(now)
        cutoff_ns = to_ns(now - timedelta(days=self.retention_days))
        with self._write() as conn:
            doomed = "SELECT seq FROM events WHERE acked = 1 AND wall_time < ? AND seq < (SELECT MAX(seq) FROM events)"
            for table in LEDGER_TABLES:
                conn.execute(f"DELETE FROM [{table}] WHERE event_seq IN ({doomed})", [cutoff_ns])
            purged = conn.execute(f"DELETE FROM events WHERE seq IN ({doomed})", [cutoff_ns]).rowcount
        if purged:
            log.info("purged %d acked events older than %d days", purged, self.retention_days)
        return purged

    def disk_status(self, min_free_mb: int) -> DiskStatus:
        free = shutil.disk_usage(self.path.parent).free
        return DiskStatus(free_bytes=free, low=free < min_free_mb * 1024 * 1024)

    def checkpoint_wal(self) -> None:
        # A checkpoint cannot run inside a transaction; the lock is enough.
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- meta ----------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._select("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            self._set_meta(conn, key, value)

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- plumbing ------------------------------------------------------------------

    def _write(self):
        return _WriteTransaction(self)

    def _select(self, sql: str, params: list) -> list[dict]:
        with self._lock:
            cur = self._conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [_decode(dict(zip(names, row))) for row in cur.fetchall()]

    def _scalar(self, sql: str, params: list | None = None):
        with self._lock:
            return self._conn.execute(sql, params or []).fetchone()[0]


class _WriteTransaction:
    """BEGIN IMMEDIATE ... COMMIT under the writer lock; nests by joining.

    SQLite errors that mean "cannot write" become JournalWriteError.
    """

    def __init__(self, journal: Journal):
        self.journal = journal
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        j = self.journal
        j._lock.acquire()
        conn = j._conn
        if not conn.in_transaction:
            self.outer = True
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                j._lock.release()
                raise _write_error(exc, j.path) from exc
        return conn

    def __exit__(self, exc_type, exc, tb):
        j = self.journal
        try:
            if not self.outer:
                return False
            if exc_type is None:
                try:
                    j._conn.execute("COMMIT")
                except sqlite3.DatabaseError as err:
                    _rollback(j._conn)
                    raise _write_error(err, j.path) from err
            else:
                _rollback(j._conn)
                if _is_write_failure(exc):
                    raise _write_error(exc, j.path) from exc
            return False
        finally:
            j._lock.release()


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls a transaction back by itself after SQLITE_FULL or an I/O
    # error; a second ROLLBACK would raise "no transaction is active" and
    # hide the real cause.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            log.warning("journal rollback failed", exc_info=True)


# Primary SQLite result codes (the low byte of `sqlite_errorcode`).
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corruption(exc: BaseException) -> bool:
    """Only SQLite's own verdict (CORRUPT, NOTADB, or a failed integrity check) means corrupt."""
    return isinstance(exc, JournalCorrupt) or _primary_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _is_write_failure(exc: BaseException | None) -> bool:
    # Integrity and programming errors are bugs and stay what they are.
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
    )


def _write_error(exc: sqlite3.Error, path: Path) -> JournalWriteError:
    code = _primary_code(exc)
    if code == SQLITE_FULL:
        why = "the disk is full"
    elif code == SQLITE_READONLY:
        why = "the filesystem is read-only"
    elif code in (SQLITE_IOERR, SQLITE_CANTOPEN):
        why = f"disk I/O error, is the disk full or failing? ({exc})"
    elif code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        why = f"the file is damaged ({exc})"
    else:
        why = f"SQLite refused the write ({exc})"
    return JournalWriteError(f"cannot write the journal {path}: {why}")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    # Not persistent: must be set on every connection.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


class JournalCorrupt(sqlite3.DatabaseError):
    """PRAGMA integrity_check found damage."""


def _check_integrity(conn: sqlite3.Connection) -> None:
    """quick_check at every open (cheap); a damaged result is confirmed by integrity_check."""
    if conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]:
        return
    result = conn.execute("PRAGMA integrity_check").fetchall()
    if result != [("ok",)]:
        raise JournalCorrupt("integrity_check: " + "; ".join(r[0] for r in result[:5]))


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}-{uuid.uuid4().hex[:6]}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(target) + suffix))
    return target


def _migrate(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migration(db)
            if number == 1:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('stream_id', ?), ('created_at', ?)",
                    (str(uuid.uuid4()), datetime.now(timezone.utc).isoformat()),
                )
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _parse_server_ref(value: str | None) -> tuple[datetime, str, int] | None:
    if not value:
        return None
    try:
        ref = json.loads(value)
        return datetime.fromisoformat(ref["server"]), str(ref["boot_id"]), int(ref["mono_ns"])
    except (ValueError, KeyError, TypeError):
        return None


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    """Columns stored as JSON text come back as Python values."""
    for key in ("reasons", "detail"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    if "flagged" in row and row["flagged"] is not None:
        row["flagged"] = bool(row["flagged"])
    for key in ("clock_synced", "acked"):
        if key in row and row[key] is not None:
            row[key] = bool(row[key])
    return row


def decision_record(event: dict[str, Any]) -> dict[str, Any]:
    """The contract's decision JSON for a stored decision event."""
    return {key: event.get(key) for key in DECISION_FIELDS}
