"""systemd supervision for `checkpoint run`: READY=1, and WATCHDOG=1 only while
the loop actually steps.

checkpoint.service is `Type=notify` with `WatchdogSec=`: systemd sets
NOTIFY_SOCKET and WATCHDOG_USEC, and restarts the kiosk when the pings stop.
The loop calls `beat()` after every step (one camera frame processed, or the
frame wait timed out and the timers advanced). A pinger thread sends
WATCHDOG=1 every half watchdog period, but only if the loop stepped within
that half period: a loop hung inside a driver call, a decoder or a journal
commit stops the pings, so systemd stops the kiosk (relay closed) and starts
it again. A camera that is merely unplugged does not: the loop keeps
stepping, the guard screen shows the fault and the gate fails closed for
automatic entry; a restart would not plug the camera back in.

The notification protocol is a few lines over an AF_UNIX datagram socket
(sd_notify(3)); it is written here instead of depending on `sdnotify`
(last released 2017, unmaintained) or `systemd-python` (a C extension that
needs libsystemd-dev and a compiler on the Pi). Without NOTIFY_SOCKET (a
foreground run, the simulator, tests) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


def notify(message: str, *, environ=os.environ) -> bool:
    """Send one sd_notify message ("READY=1", "WATCHDOG=1", ...); False without a socket."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
        return True
    except OSError as exc:  # systemd gone (shutting down): nothing to tell it
        log.debug("sd_notify %r: %s", message, exc)
        return False


def watchdog_interval(environ=os.environ) -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None when no watchdog is set for us."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (our parent)
    return int(usec) / 1_000_000 / 2


class Watchdog:
    """`ready()` once the kiosk serves; `beat()` from the loop; `stop()` on the way out."""

    def __init__(self, environ=os.environ, mono: Callable[[], float] = time.monotonic):
        self._environ = dict(environ)
        self._mono = mono
        self.interval = watchdog_interval(self._environ)
        self._last_beat = mono()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hung_logged = False

    @property
    def active(self) -> bool:
        return bool(self._environ.get("NOTIFY_SOCKET"))

    def beat(self) -> None:
        """The loop completed a step (called from the loop thread; cheap)."""
        self._last_beat = self._mono()

    def alive(self) -> bool:
        """Did the loop step within the last ping interval?"""
        return self.interval is None or self._mono() - self._last_beat <= self.interval

    def ready(self, status: str = "") -> None:
        """Tell systemd the kiosk is up, and start pinging (if a watchdog is set)."""
        notify("READY=1" + (f"\nSTATUS={status}" if status else ""), environ=self._environ)
        if self.interval is not None and self._thread is None:
            self._thread = threading.Thread(target=self._ping, name="watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        notify("STOPPING=1", environ=self._environ)
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _ping(self) -> None:
        while not self._stop.wait(self.interval):
            if self.alive():
                self._hung_logged = False
                notify("WATCHDOG=1", environ=self._environ)
            elif not self._hung_logged:
                self._hung_logged = True
                log.critical("the checkpoint loop has not stepped for %.0f s; no watchdog ping, so "
                             "systemd will restart the kiosk", self._mono() - self._last_beat)
