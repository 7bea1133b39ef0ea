"""The fake devices on an injected clock, stepped without threads (issue 11):
the camera's watchdog, the relay's opening and the sampler's timestamps all
follow the simulated clock, not the wall clock."""

from __future__ import annotations

import time

from gpiozero.pins.mock import MockFactory

from drivers.camera import FakeCamera
from drivers.outputs import GateOutputs
from drivers.qr import Scanner
from drivers.thermometer import FakeThermometer, ThermometerSampler
from gateway.config import OutputSettings
from gateway.sim_clock import SimClock


def run_camera(camera: FakeCamera, clock: SimClock, seconds: float) -> None:
    for _ in range(round(seconds * camera.fake.fps)):
        clock.advance(1.0 / camera.fake.fps)
        camera.tick()


def test_a_stepped_camera_delivers_frames_and_its_watchdog_runs_on_simulated_time():
    clock = SimClock()
    camera = FakeCamera(160, 120, fps=10, stale_after_s=2.0, reopen_backoff_s=(0.5, 4.0), clock=clock)
    started = time.monotonic()
    run_camera(camera, clock, 1.0)
    frame = camera.latest()
    assert frame is not None and frame.seq == 10 and frame.mono_s == clock.now()
    camera.unplug()
    run_camera(camera, clock, 1.5)
    assert camera.health()[0]  # not stale yet: 1.5 of the 2 simulated seconds
    run_camera(camera, clock, 1.0)
    assert not camera.health()[0] and camera.latest() is None
    camera.replug()
    run_camera(camera, clock, 1.0)  # reopened after the backoff
    assert camera.health() == (True, "ok") and camera.latest().seq > frame.seq
    assert time.monotonic() - started < 2.0  # 4.5 simulated seconds, no sleeping


def test_a_frozen_stepped_camera_is_stale_too():
    clock = SimClock()
    camera = FakeCamera(160, 120, fps=10, stale_after_s=1.0, clock=clock)
    run_camera(camera, clock, 0.5)
    camera.freeze()  # the same frame again and again, as OpenCV after an unplug
    run_camera(camera, clock, 1.5)
    assert not camera.health()[0]


def test_a_stepped_scene_has_distinct_frames_that_the_scanner_skips_as_unchanged():
    clock = SimClock()
    camera = FakeCamera(640, 480, fps=10, clock=clock)
    scanner = Scanner("zxing")
    camera.show("CP1:hello")
    texts = []
    for _ in range(8):
        clock.advance(0.1)
        camera.tick()
        texts.append(scanner.scan(camera.latest().image))
    assert texts[0] == ["CP1:hello"] and texts[1:] == [None] * 7  # decoded once, then unchanged
    assert scanner.decoded == 1


def test_a_stepped_relay_closes_when_the_simulated_opening_ends():
    clock = SimClock()
    outputs = GateOutputs(OutputSettings(open_s=3.0), pin_factory=MockFactory(), clock=clock)
    outputs.stepped = True
    outputs.open_for()
    assert outputs.is_open
    clock.advance(2.9)
    outputs.tick()
    assert outputs.is_open
    clock.advance(0.2)
    outputs.tick()
    assert not outputs.is_open
    outputs.close()


def test_the_sampler_stamps_samples_with_the_injected_clock():
    clock = SimClock()
    sampler = ThermometerSampler(FakeThermometer(36.5, 22.0, clock=clock), hz=20, clock=clock)
    for _ in range(3):
        clock.advance(0.05)
        sampler.sample_once()
    assert [round(s.mono_s - 1000.0, 2) for s in sampler.samples()] == [0.05, 0.1, 0.15]
