"""Gate relay, buzzer and lights on gpiozero's MockFactory, checking full pin histories.

gpiozero's assert_states() zips expected and actual lists, so missing or extra
states go unnoticed; these tests compare the whole list.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from drivers.errors import DriverError, RelayFault
from drivers.outputs import BEEPS, GateOutputs
from gateway.config import OutputSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


def history(factory, pin):
    return [s.state for s in factory.pin(pin).states]


def durations(factory, pin):
    """How long each state lasted (the timestamp of a PinState is time since the previous change)."""
    return [s.timestamp for s in factory.pin(pin).states][1:]


def _wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def settings(**kw):
    return OutputSettings(**{"relay_pin": 17, **kw})


def test_relay_starts_closed_and_opens_without_blocking(factory):
    with GateOutputs(settings(), pin_factory=factory) as outputs:
        assert history(factory, 17) == [False]  # initial_value=False: no opening on start
        outputs.open_for(0.3)
        assert outputs.is_open  # returned while the gate is still open: not blocking
        assert _wait_for(lambda: not outputs.is_open)
    assert history(factory, 17) == [False, True, False]
    assert 0.28 <= durations(factory, 17)[1] <= 0.45


def test_active_low_relay_is_high_when_closed(factory):
    with GateOutputs(settings(relay_active_high=False), pin_factory=factory) as outputs:
        outputs.open_for(0.1)
        assert factory.pin(17).state is False  # energised = pulled low
        assert _wait_for(lambda: not outputs.is_open)
    # input (floating) -> idle high on start -> low while open -> high again
    assert history(factory, 17) == [False, True, False, True]


def test_a_second_opening_extends_without_a_glitch(factory):
    with GateOutputs(settings(), pin_factory=factory) as outputs:
        outputs.open_for(0.3)
        time.sleep(0.15)
        outputs.open_for(0.3)
        assert _wait_for(lambda: not outputs.is_open)
    assert history(factory, 17) == [False, True, False]
    assert 0.43 <= durations(factory, 17)[1] <= 0.6


def test_a_shorter_opening_never_cuts_a_longer_one_short(factory):
    with GateOutputs(settings(), pin_factory=factory) as outputs:
        outputs.open_for(0.4)
        outputs.open_for(0.05)
        time.sleep(0.2)
        assert outputs.is_open
        assert _wait_for(lambda: not outputs.is_open)
    assert history(factory, 17) == [False, True, False]


def test_close_gate_cancels_the_pending_opening(factory):
    with GateOutputs(settings(), pin_factory=factory) as outputs:
        outputs.open_for(5.0)
        outputs.close_gate()
        time.sleep(0.1)
        assert not outputs.is_open
    assert history(factory, 17) == [False, True, False]


def test_the_relay_is_closed_when_the_block_fails(factory):
    with pytest.raises(RuntimeError):
        with GateOutputs(settings(), pin_factory=factory) as outputs:
            outputs.open_for(30.0)
            raise RuntimeError("the loop crashed")
    assert history(factory, 17) == [False, True, False]
    assert outputs.relay.closed


def test_outputs_after_close_raise_relay_fault(factory):
    outputs = GateOutputs(settings(), pin_factory=factory)
    outputs.close()
    outputs.close()  # idempotent
    with pytest.raises(RelayFault, match="closed") as info:
        outputs.open_for(1.0)
    assert isinstance(info.value, DriverError)
    assert history(factory, 17) == [False]


def test_a_pin_in_use_is_a_relay_fault_naming_the_pin(factory):
    with GateOutputs(settings(), pin_factory=factory):
        with pytest.raises(RelayFault, match="GPIO17"):
            GateOutputs(settings(), pin_factory=factory)


def test_bad_duration_is_rejected(factory):
    with GateOutputs(settings(), pin_factory=factory) as outputs:
        with pytest.raises(ValueError, match="positive duration"):
            outputs.open_for(0)
        with pytest.raises(ValueError, match="unknown signal 'party'"):
            outputs.signal("party")
    assert history(factory, 17) == [False]


def _pins():
    return settings(buzzer_pin=22, green_pin=5, red_pin=6, amber_pin=13)


@pytest.mark.parametrize("kind", ["admit", "deny", "fever", "fault"])
def test_each_signal_has_its_own_buzzer_pattern(factory, kind):
    beeps = BEEPS[kind]
    with GateOutputs(_pins(), pin_factory=factory) as outputs:
        outputs.signal(kind, seconds=0.2)
        assert _wait_for(lambda: len(history(factory, 22)) == 1 + 2 * beeps.count, beeps.duration_s + 1)
        time.sleep(0.05)
    assert history(factory, 22) == [False] + [True, False] * beeps.count
    on_times = durations(factory, 22)[1::2]
    # a loaded machine can make a beep late to end, never early
    assert all(beeps.on_s - 0.02 <= t <= beeps.on_s + 0.12 for t in on_times), on_times


def test_fever_and_refusal_sound_different():
    assert BEEPS["fever"] != BEEPS["deny"]
    assert BEEPS["fever"].on_s > 2 * BEEPS["deny"].on_s


@pytest.mark.parametrize(
    ("kind", "pin"), [("admit", 5), ("deny", 6), ("fault", 13)]
)
def test_signal_lights_one_colour_for_a_while(factory, kind, pin):
    with GateOutputs(_pins(), pin_factory=factory) as outputs:
        outputs.signal(kind, seconds=0.2)
        assert _wait_for(lambda: history(factory, pin) == [False, True, False], 1.0)
    for other in {5, 6, 13} - {pin}:
        assert history(factory, other) == [False]
    assert history(factory, 17) == [False]  # a signal never touches the relay


def test_fever_flashes_red(factory):
    with GateOutputs(_pins(), pin_factory=factory) as outputs:
        outputs.signal("fever", seconds=1.0)
        assert _wait_for(lambda: len(history(factory, 6)) == 5, 2.0)
    assert history(factory, 6) == [False, True, False, True, False]


def test_close_leaves_every_output_off(factory):
    outputs = GateOutputs(_pins(), pin_factory=factory)
    outputs.open_for(10)
    outputs.signal("fever", seconds=10)
    time.sleep(0.05)
    outputs.close()
    for pin in (17, 22, 6):
        assert history(factory, pin) == [False, True, False]
    assert history(factory, 5) == [False] and history(factory, 13) == [False]


def test_sigterm_closes_the_relay(tmp_path):
    # A child process opens the gate for 30 s and is stopped like systemd does.
    # Its atexit hook reports the relay pin's history from its MockFactory.
    script = tmp_path / "gate.py"
    script.write_text(textwrap.dedent(
        """
        import atexit, json, sys, time
        from gpiozero.pins.mock import MockFactory
        from drivers.outputs import GateOutputs, exit_on_sigterm
        from gateway.config import OutputSettings

        factory = MockFactory()
        atexit.register(lambda: print(json.dumps([s.state for s in factory.pin(17).states]), flush=True))
        with exit_on_sigterm(), GateOutputs(OutputSettings(relay_pin=17), pin_factory=factory) as out:
            out.open_for(30)
            print("open", flush=True)
            time.sleep(30)
        """
    ))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPIOZERO_PIN_FACTORY": "mock"}
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "open"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 143
    assert json.loads(out.strip().splitlines()[-1]) == [False, True, False]


def test_default_pin_factory_is_used_when_none_given():
    # conftest sets GPIOZERO_PIN_FACTORY=mock, so gpiozero's default is a MockFactory
    with GateOutputs(settings(relay_pin=27)) as outputs:
        outputs.open_for(0.05)
        pin = Device.pin_factory.pin(27)
        assert _wait_for(lambda: not outputs.is_open)
        assert [s.state for s in pin.states] == [False, True, False]
    Device.pin_factory.reset()
