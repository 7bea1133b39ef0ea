"""Trusted time: what the kiosk may take as "now" for passes and dates, bounded
by the watermark and by the server's time once known; a mixin of `gateway.journal.Journal`."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone

log = logging.getLogger("gateway.journal")

# The kiosk clock may differ from the server's time by this much before the
# server's time (carried forward by the monotonic clock) is trusted instead.
CLOCK_TOLERANCE = timedelta(minutes=5)


class TrustedTime:
    """Trusted-time methods of `Journal` (its connection, meta, clock and `_server_ref` live there)."""

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


def _parse_server_ref(value: str | None) -> tuple[datetime, str, int] | None:
    if not value:
        return None
    try:
        ref = json.loads(value)
        return datetime.fromisoformat(ref["server"]), str(ref["boot_id"]), int(ref["mono_ns"])
    except (ValueError, KeyError, TypeError):
        return None
