"""Shared set-up for the kiosk benches: a kiosk on fake hardware in a temp dir."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gateway.config import load_config

CONFIG = """
[gate]
id = "bench-1"
site = "site-1"
direction = "in"

[temperature]
threshold_c = 37.3
offset_c = 0.5

[passes]
issuer_keys = ["keys/issuer.pub"]

[hardware]
kind = "fake"

[camera]
width = {width}
height = {height}
fps = {fps}

[outputs]
open_s = {open_s}

[journal]
path = "journal.db"
"""


def bench_settings(*, width=640, height=480, fps=30.0, open_s=0.2, directory: str | None = None):
    """Settings for a fake-hardware kiosk whose files live in a temporary directory."""
    root = Path(directory or tempfile.mkdtemp(prefix="checkpoint-bench-"))
    path = root / "gate.toml"
    path.write_text(CONFIG.format(width=width, height=height, fps=fps, open_s=open_s), encoding="utf-8")
    return load_config(path)


def signer(settings):
    """person -> a genuinely signed resident pass (demo issuer key, created on first use)."""
    from gateway.scenario import DemoIssuer, PassTemplate

    issuer = DemoIssuer.for_settings(settings)
    return lambda person: issuer.sign(PassTemplate(person=person))
