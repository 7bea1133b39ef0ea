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


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll `predicate` until it is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")
