"""What the kiosk knows about time, read from the kernel.

A Pi has no real-time clock: it can boot at 1970 or at a stale saved time, and
NTP may step the clock later. So every event records the boot id, the
monotonic time since boot (CLOCK_BOOTTIME, which keeps counting in suspend),
the wall time, and whether the kernel says the clock is synchronised. The
server corrects event times afterwards from clock anchors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


def read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        # Not Linux: one id per process is the closest meaning we can give.
        return _PROCESS_BOOT_ID


_PROCESS_BOOT_ID = str(uuid.uuid4())


@functools.cache
def _libc():
    # find_library runs ldconfig in a subprocess: do it once, not per event.
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def _adjtimex_state() -> int | None:
    libc = _libc()
    if libc is None or not hasattr(libc, "adjtimex"):
        return None
    # struct timex is ~208 bytes; a zeroed, larger buffer with modes=0 makes
    # this a read-only query.
    buf = ctypes.create_string_buffer(512)
    return libc.adjtimex(buf)


def kernel_clock_synced() -> bool:
    """True when systemd-timesyncd or the kernel (adjtimex) says the clock is synced."""
    if _TIMESYNCD_FLAG.exists():
        return True
    state = _adjtimex_state()
    return state is not None and 0 <= state != _TIME_ERROR


@dataclass(frozen=True)
class ClockReading:
    boot_id: str
    mono_ns: int
    wall: datetime  # timezone-aware UTC
    synced: bool

    @property
    def wall_ns(self) -> int:
        return to_ns(self.wall)


def to_ns(when: datetime) -> int:
    """Epoch nanoseconds, exactly (float seconds would lose the last digits)."""
    whole = int(when.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + when.microsecond * 1000


class SystemClock:
    """The real clock. Tests pass a `FakeClock` with the same `read()`."""

    def __init__(self):
        self.boot_id = read_boot_id()

    def read(self) -> ClockReading:
        return ClockReading(
            boot_id=self.boot_id,
            mono_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME),
            wall=datetime.now(timezone.utc),
            synced=kernel_clock_synced(),
        )


class FakeClock:
    """A settable clock for tests and the simulator's replays."""

    def __init__(self, wall: datetime, *, synced: bool = True, boot_id: str = "fake-boot"):
        self.wall = wall
        self.mono_ns = 1_000_000_000
        self.synced = synced
        self.boot_id = boot_id

    def advance(self, seconds: float) -> None:
        self.wall = self.wall.fromtimestamp(self.wall.timestamp() + seconds, timezone.utc)
        self.mono_ns += int(seconds * 1e9)

    def read(self) -> ClockReading:
        return ClockReading(self.boot_id, self.mono_ns, self.wall, self.synced)
