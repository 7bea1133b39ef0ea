"""A kiosk on fake hardware, as `checkpoint simulate` builds it, for loop tests."""

from __future__ import annotations

import threading

import pytest

from gateway.config import load_config
from kiosk_fakes import SIM_CONFIG




@pytest.fixture
def sim_settings(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(SIM_CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def play(sim_settings):
    """play(scenario) -> (decisions, app): run a scenario through the real loop on fakes,
    stepped on a simulated clock (as fast as the CPU allows)."""
    from gateway.loop import build_app
    from gateway.scenario import ScenarioPlayer, pass_texts
    from gateway.sim_clock import SimClock
    from gateway.stepped import SteppedGate

    apps = []

    def run(scenario, *, settings=None, before_start=None):
        settings = settings or sim_settings
        texts = pass_texts(scenario, settings)
        clock = SimClock()
        app = build_app(settings, mono=clock, stepped=True)
        apps.append(app)
        decisions = []
        app.checkpoint.listeners.append(lambda event, decision: decisions.append(event))
        player = ScenarioPlayer(app, scenario, texts=texts, gate=SteppedGate(app, clock))
        player.seed_registry()
        if before_start:
            before_start(app)
        app.start()
        try:
            player.run(threading.Event())
            app.hardware.camera.show(None)
        finally:
            app.stop()
        return decisions, app

    yield run
    for app in apps:
        app.stop()


@pytest.fixture
def kiosk(sim_settings, issue):
    """A started kiosk on fake hardware, stepped on a simulated clock: the test
    drives its fake camera and thermometer, and `kiosk_fakes.wait_for`/`pause`
    step it (no device threads, no sleeps; `kiosk.gate`, `kiosk.clock`)."""
    import kiosk_fakes

    from gateway.loop import build_app
    from gateway.sim_clock import SimClock
    from gateway.stepped import SteppedGate

    clock = SimClock()
    app = build_app(sim_settings, mono=clock, stepped=True)
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.relay_pin = app.hardware.outputs.relay.pin
    app.hardware.thermometer.set(21.0, 22.0)  # nobody there
    app.clock, app.gate = clock, SteppedGate(app, clock)
    app.start()
    app.gate.step()  # housekeeping's first tick: the health panel is filled in, as at a kiosk's start
    kiosk_fakes.stepping(app.gate)
    yield app
    kiosk_fakes.stepping(None)
    app.stop()


@pytest.fixture
def threaded_kiosk(sim_settings, issue):
    """A started kiosk as it runs on a gate: device threads, the loop thread, real time."""
    from gateway.loop import build_app

    app = build_app(sim_settings)
    app.checkpoint.view_gone_s = app.checkpoint.presence_gone_s = 0.25
    app.relay_pin = app.hardware.outputs.relay.pin
    app.hardware.thermometer.set(21.0, 22.0)  # nobody there
    app.start()
    yield app
    app.stop()


@pytest.fixture
def issue(sim_settings):
    """issue(person, **template) -> a genuinely signed pass text from the demo issuer."""
    from gateway.scenario import DemoIssuer, PassTemplate

    issuer = DemoIssuer.for_settings(sim_settings)
    return lambda person, **kw: issuer.sign(PassTemplate(person=person, **kw))
