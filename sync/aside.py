"""What a journal moved aside as corrupt still holds, read for upload.

`Journal.open` moves a corrupt file aside (``journal.db.corrupt-*``) and
starts a new stream; the events in the old file that never reached the
server must still get there. This module reads such a file read-only, row by
row where it must, and turns each unreadable row into a `journal_unreadable`
placeholder so the old stream stays contiguous and the server records the
loss instead of it going unnoticed. `SyncClient.upload_aside` sends them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gateway.clock import to_ns

log = logging.getLogger(__name__)

_SIDE_FILES = ("-wal", "-shm", "-journal")


def aside_files(journal_path: Path) -> list[Path]:
    """Journals moved aside next to `journal_path`, oldest first."""
    found = journal_path.parent.glob(journal_path.name + ".corrupt-*")
    return sorted(p for p in found if not p.name.endswith(_SIDE_FILES))


@dataclass
class Salvage:
    stream_id: str | None
    stream_offset: int = 0
    first_unacked: int | None = None  # local seq; None: nothing left to send
    rows: list[dict] = field(default_factory=list)  # contiguous local seqs, placeholders for unreadable rows
    error: str | None = None


def _connect(path: Path) -> sqlite3.Connection:
    # Read-only: a file moved aside is evidence and is never written to.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def _decoded(names: list[str], row: tuple) -> dict:
    event = dict(zip(names, row))
    for key in ("reasons", "detail"):
        if isinstance(event.get(key), str):
            event[key] = json.loads(event[key])
    for key in ("flagged", "clock_synced", "acked"):
        if event.get(key) is not None:
            event[key] = bool(event[key])
    return event


def placeholder(seq: int, error: str, path: Path) -> dict:
    now = datetime.now(timezone.utc)
    return {"seq": seq, "kind": "journal_unreadable", "time": now.isoformat(timespec="milliseconds"),
            "boot_id": "unreadable", "mono_ns": 0, "wall_time": to_ns(now), "clock_synced": False,
            "flagged": False, "reasons": [], "detail": {"file": path.name, "error": error[:300]}}


def read_aside(path: Path, *, after_seq: int | None = None, limit: int = 500) -> Salvage:
    """Up to `limit` events after `after_seq` (default: from the first unacked one)."""
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        return Salvage(None, error=f"cannot open: {exc}")
    try:
        try:
            stream_id = _meta(conn, "stream_id")
            offset = int(_meta(conn, "stream_offset") or 0)
        except (sqlite3.Error, ValueError) as exc:
            return Salvage(None, error=f"no stream id: {exc}")
        salvage = Salvage(stream_id, offset)
        try:
            last = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
            if after_seq is None:
                first = conn.execute("SELECT MIN(seq) FROM events WHERE acked = 0").fetchone()[0]
                if first is None:
                    return salvage
                after_seq = first - 1
        except sqlite3.Error as exc:
            salvage.error = f"cannot read the events: {exc}"
            return salvage
        salvage.first_unacked = after_seq + 1
        end = min(last, after_seq + limit)
        try:  # the whole range at once; row by row only if that fails
            cur = conn.execute("SELECT * FROM events WHERE seq > ? AND seq <= ? ORDER BY seq", [after_seq, end])
            names = [d[0] for d in cur.description]
            by_seq = {r[0]: r for r in cur.fetchall()}
            rows = [_decoded(names, by_seq[s]) if s in by_seq else placeholder(s, "row missing", path)
                    for s in range(after_seq + 1, end + 1)]
        except (sqlite3.Error, ValueError):
            rows = [_one(conn, s, path) for s in range(after_seq + 1, end + 1)]
        salvage.rows = rows
        return salvage
    finally:
        conn.close()


def _one(conn: sqlite3.Connection, seq: int, path: Path) -> dict:
    try:
        cur = conn.execute("SELECT * FROM events WHERE seq = ?", [seq])
        row = cur.fetchone()
        if row is None:
            return placeholder(seq, "row missing", path)
        return _decoded([d[0] for d in cur.description], row)
    except (sqlite3.Error, ValueError) as exc:
        return placeholder(seq, f"{type(exc).__name__}: {exc}", path)
