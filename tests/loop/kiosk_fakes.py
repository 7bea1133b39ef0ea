"""Helpers shared by the loop tests (a module with a unique name: `conftest` is not importable)."""

from __future__ import annotations

import time

SIM_CONFIG = """
[gate]
id = "sim-1"
site = "site-1"
direction = "both"
name = "测试门"

[temperature]
threshold_c = 37.3
offset_c = 0.5
sample_hz = 20
min_samples = 4
reading_timeout_s = 1.5

[passes]
issuer_keys = ["keys/issuer.pub"]

[hardware]
kind = "fake"

[camera]
width = 640
height = 480
fps = 30

[outputs]
open_s = 0.2

[journal]
path = "journal.db"
"""


_gate = None  # the SteppedGate of the running stepped kiosk, if any (set by the `kiosk` fixture)


def stepping(gate) -> None:
    """From now on `wait_for` and `pause` step `gate` on its simulated clock (None: real time)."""
    global _gate
    _gate = gate


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Until `predicate` is truthy; returns its value or fails the test. With a
    stepped kiosk `timeout` is simulated seconds and the kiosk is stepped meanwhile."""
    if _gate is not None:
        if _gate.run_for(timeout, until=predicate):
            return predicate()
        raise AssertionError(f"not within {timeout} simulated s: {getattr(predicate, '__name__', predicate)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")


def pause(seconds: float) -> None:
    """Let `seconds` pass: simulated and stepped with a stepped kiosk, else real."""
    if _gate is not None:
        _gate.run_for(seconds)
    else:
        time.sleep(seconds)
