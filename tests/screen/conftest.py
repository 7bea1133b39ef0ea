"""A kiosk on fake hardware for guard-screen tests, and helpers to reach its screen."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gateway.config import load_config

SCREEN_CONFIG = """
[gate]
id = "east-1"
site = "site-1"
direction = "in"
name = "东门"

[temperature]
threshold_c = 37.3
offset_c = 0.5
sample_hz = 20
min_samples = 4
reading_timeout_s = 2.0

[passes]
issuer_keys = ["keys/issuer.pub"]

[hardware]
kind = "fake"

[camera]
width = 640
height = 480

[outputs]
open_s = 0.3

[policy]
visitor_mode = "deny"

[journal]
path = "journal.db"

[screen]
pin = "246810"
"""


@pytest.fixture
def screen_settings(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(SCREEN_CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def issue(screen_settings):
    from gateway.scenario import DemoIssuer, PassTemplate

    issuer = DemoIssuer.for_settings(screen_settings)
    return lambda person, **kw: issuer.sign(PassTemplate(person=person, **kw))


@pytest.fixture
def kiosk_app(screen_settings, issue):
    """The whole kiosk (not started): build_app on fake hardware."""
    from gateway.loop import build_app

    app = build_app(screen_settings)
    app.relay_pin = app.hardware.outputs.relay.pin
    app.hardware.thermometer.set(21.0, 22.0)
    yield app
    app.stop()


@pytest.fixture
def local(kiosk_app):
    from fastapi.testclient import TestClient

    with TestClient(kiosk_app.screen, client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture
def lan(kiosk_app):
    from fastapi.testclient import TestClient

    with TestClient(kiosk_app.screen, client=("192.168.1.20", 50000), follow_redirects=False) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(kiosk_app):
    """The kiosk started and its screen served on a free localhost port: yields (app, base_url)."""
    import uvicorn

    kiosk_app.checkpoint.view_gone_s = kiosk_app.checkpoint.presence_gone_s = 0.25
    kiosk_app.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(kiosk_app.screen, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield kiosk_app, f"http://127.0.0.1:{port}"
    kiosk_app.screen.state.deps.stopping.set()
    server.should_exit = True
    thread.join(timeout=5)
