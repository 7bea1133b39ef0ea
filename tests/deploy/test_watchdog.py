"""`checkpoint run` under systemd's watchdog protocol.

The kiosk runs as a real process with NOTIFY_SOCKET pointing at a datagram
socket this test reads, as systemd would. The only fake is at the hardware
edge: the fake camera, made to hang inside `wait_frame` (as a stuck V4L2 read
would) once a flag file appears.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.watchdog import Watchdog, notify, watchdog_interval
from tests.sync.sync_harness import free_port

ROOT = Path(__file__).resolve().parents[2]

HANGING_CAMERA_KIOSK = """
import atexit, sys, threading, pathlib
import drivers.hardware
from drivers.camera import FakeCamera
build = drivers.hardware._build_fake
def build_and_report(settings):
    hw = build(settings)
    # At exit, the relay pin's history from the MockFactory: it must end closed.
    pin = hw.outputs.relay.pin
    atexit.register(lambda: print("relay", [s.state for s in pin.states], hw.outputs._closed, flush=True))
    return hw
drivers.hardware._build_fake = build_and_report
hang = pathlib.Path(sys.argv[1])
original = FakeCamera.wait_frame
def wait_frame(self, *args, **kwargs):
    if hang.exists():
        threading.Event().wait()  # the driver call never returns
    return original(self, *args, **kwargs)
FakeCamera.wait_frame = wait_frame
from gateway.cli import main
sys.exit(main(["run", "--config", sys.argv[2]]))
"""


class NotifySocket:
    """What systemd listens on: collects (monotonic time, message) pairs."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            got.append((time.monotonic(), data.decode()))
        self.messages += got
        return got

    def wait_for(self, text: str, seconds: float) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for at, message in self.collect(0.2):
                if text in message.splitlines():
                    return at
        raise AssertionError(f"no {text} within {seconds} s; got {self.messages}")

    def close(self):
        self.sock.close()


@pytest.fixture
def kiosk_config(tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(
        f'[gate]\nid = "east-1"\nsite = "site-1"\n\n[hardware]\nkind = "fake"\n\n'
        f'[journal]\npath = "journal.db"\n\n[screen]\nport = {free_port()}\n', encoding="utf-8")
    return config


def pings(messages) -> list[float]:
    return [at for at, m in messages if "WATCHDOG=1" in m.splitlines()]


def test_the_kiosk_pings_while_the_loop_steps_and_stops_when_it_hangs(tmp_path, kiosk_config):
    listener = NotifySocket(tmp_path / "notify.sock")
    hang = tmp_path / "hang"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(listener.path),
           "WATCHDOG_USEC": "600000"}  # WatchdogSec=0.6: a ping every 0.3 s
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-c", HANGING_CAMERA_KIOSK, str(hang), str(kiosk_config)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listener.wait_for("READY=1", 60)
        healthy = pings(listener.collect(3.0))
        assert len(healthy) >= 7, healthy  # ~10 in 3 s
        gaps = [b - a for a, b in zip(healthy, healthy[1:])]
        assert max(gaps) < 0.6, gaps  # never a gap systemd would call a hang

        hang.touch()
        # The step in progress may still finish, and a ping for it may be due
        # (at most interval + interval = 0.6 s later); after that the loop is stuck.
        listener.collect(0.8)
        stalled = listener.collect(2.0)
        assert pings(stalled) == [], stalled

        # systemd's WatchdogSignal=SIGTERM: the kiosk still stops, relay closed, although the loop hangs.
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert any("STOPPING=1" in m for _, m in listener.collect(0.5) + listener.messages)
        assert "Traceback" not in err
        # Driven closed (False) and released: the gate never stays open after a stop.
        assert out.strip().splitlines()[-1] == "relay [False] True"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_breaks():
    assert notify("READY=1", environ={}) is False
    dog = Watchdog(environ={})
    dog.ready()
    dog.beat()
    dog.stop()
    assert dog.interval is None


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_only_for_this_process():
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


def test_an_abstract_notify_socket_is_reached(tmp_path):
    name = f"checkpoint-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        sock.settimeout(2)
        assert sock.recv(100) == b"READY=1"


def test_gate_close_after_a_stop_drives_the_relay_closed(kiosk_config):
    """What ExecStopPost runs after every stop, however the kiosk ended."""
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "gate-close", "--config", str(kiosk_config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "relay on GPIO17 closed" in result.stdout


def test_gate_close_with_a_bad_config_exits_78(tmp_path):
    bad = tmp_path / "gate.toml"
    bad.write_text('[gate]\nid = "east-1"\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "gate-close", "--config", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
