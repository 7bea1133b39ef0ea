"""The real Adafruit MLX90614 driver over the emulated chip, with each glitch."""

from __future__ import annotations

import errno
import time

import adafruit_mlx90614
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import BadSample, DriverError, SensorUnavailable
from drivers.fake_i2c import FakeMLX90614Bus, celsius_to_raw, smbus_pec
from drivers.thermometer import FakeThermometer, MLX90614Thermometer, ThermometerSampler


def test_fake_bus_speaks_the_chip_protocol_to_the_adafruit_driver():
    bus = FakeMLX90614Bus(object_c=36.6, ambient_c=21.3)
    sensor = adafruit_mlx90614.MLX90614(bus)
    assert sensor.object_temperature == pytest.approx(36.61, abs=0.011)
    assert sensor.ambient_temperature == pytest.approx(21.29, abs=0.011)
    # probe first, then one write-then-read per register, LSB first
    assert bus.log[0] == ("w", 0x5A, b"")
    raw = celsius_to_raw(36.6)
    assert bus.log[1] == ("wr", 0x5A, b"\x07", bytes([raw & 0xFF, raw >> 8]))


def test_three_byte_read_carries_a_valid_pec_and_bad_pec_glitch_breaks_it():
    bus = FakeMLX90614Bus(object_c=37.5)
    buf = bytearray(3)
    bus.writeto_then_readfrom(0x5A, b"\x07", buf)
    assert buf[2] == smbus_pec(bytes([0xB4, 0x07, 0xB5, buf[0], buf[1]]))
    bus.fail_next("bad_pec")
    bus.writeto_then_readfrom(0x5A, b"\x07", buf)
    assert buf[2] != smbus_pec(bytes([0xB4, 0x07, 0xB5, buf[0], buf[1]]))


def test_pec_matches_the_datasheet_example():
    # MLX90614 datasheet, "read Tobj1": SA=0x5A, cmd 0x07, data 0xD2 0x3A -> PEC 0x30
    assert smbus_pec(bytes([0xB4, 0x07, 0xB5, 0xD2, 0x3A])) == 0x30


def test_read_returns_validated_object_and_ambient():
    thermo = FakeThermometer(36.6, 21.3)
    assert thermo.available
    assert thermo.read() == (36.61, 21.29)
    thermo.set(38.0, 22.0)
    assert thermo.read() == (37.99, 21.99)


def test_real_class_accepts_any_bus_object():
    bus = FakeMLX90614Bus(object_c=35.42)
    thermo = MLX90614Thermometer(bus, address=0x5A, retries=3)
    assert thermo.read()[0] == 35.41


@pytest.mark.parametrize("kind", ["error_flag", "ffff"])
def test_flagged_words_are_bad_samples_not_hot_people(kind):
    thermo = FakeThermometer(36.6, 21.3)
    thermo.fail_next(kind)
    with pytest.raises(BadSample, match="error flag" if kind == "error_flag" else "0xFFFF"):
        thermo.read()
    assert thermo.available  # the sensor answered; only that word was bad
    assert thermo.read() == (36.61, 21.29)


def test_the_unchecked_driver_would_have_reported_the_glitch_as_a_temperature():
    bus = FakeMLX90614Bus(object_c=36.6)
    bus.fail_next("ffff")
    assert adafruit_mlx90614.MLX90614(bus).object_temperature == pytest.approx(1037.55)


def test_error_flag_on_the_ambient_word_is_caught_too():
    thermo = FakeThermometer(36.6, 21.3)
    thermo.bus.fail_next("error_flag", register=0x06)
    with pytest.raises(BadSample, match="ambient"):
        thermo.read()


def test_out_of_range_values_are_bad_samples():
    thermo = FakeThermometer(36.6, 21.3)
    thermo.set(36.6, ambient_c=200.0)
    with pytest.raises(BadSample, match="ambient 2"):
        thermo.read()


def test_a_nack_is_retried_and_the_read_succeeds():
    thermo = FakeThermometer(36.6, 21.3, retries=3)
    thermo.fail_next("nack", 3)
    assert thermo.read() == (36.61, 21.29)
    assert thermo.available


def test_nacks_beyond_the_retries_raise_sensor_unavailable_with_the_oserror():
    thermo = FakeThermometer(36.6, 21.3, retries=2)
    thermo.fail_next("nack", 3)
    with pytest.raises(SensorUnavailable) as info:
        thermo.read()
    assert isinstance(info.value, DriverError)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EREMOTEIO
    assert "failed 3 times" in str(info.value)
    assert not thermo.available and thermo.last_error is info.value
    assert thermo.read() == (36.61, 21.29)  # the bus recovers, so does the driver
    assert thermo.available and thermo.last_error is None


def test_retries_back_off():
    bus = FakeMLX90614Bus()
    slept = []
    thermo = MLX90614Thermometer(bus, retries=3, backoff_s=0.01, sleep=slept.append)
    bus.fail_next("nack", 4)
    with pytest.raises(SensorUnavailable):
        thermo.read()
    assert slept == [0.01, 0.02, 0.04]


def test_absent_at_start_is_a_state_and_later_reads_reconnect(caplog):
    bus = FakeMLX90614Bus(36.6, 21.3)
    bus.set_absent(True)
    thermo = MLX90614Thermometer(bus)  # must not raise
    assert not thermo.available
    assert "no MLX90614 answers at I2C address 0x5a" in str(thermo.last_error)
    assert isinstance(thermo.last_error.__cause__, ValueError)  # the driver's probe error
    assert thermo.health() == (False, str(thermo.last_error))
    with pytest.raises(SensorUnavailable):
        thermo.read()
    bus.set_absent(False)
    assert thermo.read() == (36.61, 21.29)
    assert thermo.health() == (True, "ok")
    warnings = [r.getMessage() for r in caplog.records if r.name == "drivers.thermometer"]
    assert sum("unavailable" in m for m in warnings) == 1  # logged once, not per read
    assert sum("recovered" in m for m in warnings) == 1


def test_unplugged_while_running_then_replugged():
    thermo = FakeThermometer(36.6, 21.3)
    thermo.read()
    thermo.set_absent(True)
    with pytest.raises(SensorUnavailable):
        thermo.read()
    thermo.set_absent(False)
    assert thermo.read() == (36.61, 21.29)


def test_absent_glitch_for_a_few_transactions():
    thermo = FakeThermometer(36.6, 21.3, retries=1)
    thermo.fail_next("absent", 2)
    with pytest.raises(SensorUnavailable):
        thermo.read()
    assert thermo.read() == (36.61, 21.29)


def test_device_that_fails_the_probe_but_answers_reads_is_used():
    class ProbeDeaf(FakeMLX90614Bus):
        """Like the Pi 5 report: the zero-length probe fails, reads work."""

        def writeto(self, address, buffer, **kw):
            raise OSError(errno.EREMOTEIO, "probe NACK")

        def readfrom_into(self, address, buffer, **kw):
            raise OSError(errno.EREMOTEIO, "probe NACK")

    thermo = MLX90614Thermometer(ProbeDeaf(36.6, 21.3))
    assert thermo.available and thermo.last_error is None
    assert thermo.read() == (36.61, 21.29)


def test_unknown_glitch_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown glitch 'smoke'"):
        FakeThermometer().fail_next("smoke")


def test_drift_moves_the_object_value():
    thermo = FakeThermometer(36.0, 21.0)
    thermo.set_drift(2.0)  # °C per second, exaggerated for a short test
    time.sleep(0.2)
    drifted = thermo.read()[0]
    assert 36.3 <= drifted <= 37.5


def test_settling_approaches_the_new_target():
    thermo = FakeThermometer(22.0, 21.0, settle_s=0.3)
    thermo.set(36.6)
    first = thermo.read()[0]
    time.sleep(0.35)
    settled = thermo.read()[0]
    assert first < 30.0
    assert settled == pytest.approx(36.6, abs=0.2)


def _wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def test_sampler_takes_timestamped_samples_and_survives_faults():
    thermo = FakeThermometer(36.6, 21.3)
    with ThermometerSampler(thermo, hz=50.0) as sampler:
        assert _wait_for(lambda: len(sampler.samples()) >= 5)
        thermo.fail_next("error_flag", 2)
        assert _wait_for(lambda: sampler.bad_samples == 2)
        thermo.set_absent(True)
        assert _wait_for(lambda: sampler.health()[0] is False)
        unplugged_at = time.monotonic()
        thermo.set_absent(False)
        assert _wait_for(lambda: sampler.samples(since_mono_s=unplugged_at))
    samples = sampler.samples()
    assert len(samples) >= 6
    assert all(s.object_c == 36.61 and s.ambient_c == 21.29 for s in samples)
    times = [s.mono_s for s in samples]
    assert times == sorted(times)
    assert sampler.bad_samples == 2
    assert sampler.health() == (True, "ok")
    assert sampler.samples(since_mono_s=times[-1]) == [samples[-1]]


def test_a_bus_lock_that_never_frees_is_an_error_not_a_hang():
    bus = FakeMLX90614Bus(36.6, 21.3)
    thermo = MLX90614Thermometer(bus, retries=1, backoff_s=0.0, lock_timeout_s=0.05)
    assert bus.try_lock()  # someone else holds the bus
    with pytest.raises(SensorUnavailable) as info:
        thermo.read()
    assert info.value.__cause__.errno == errno.ETIMEDOUT
    bus.unlock()
    assert thermo.read() == (36.61, 21.29)


GLITCH = st.sampled_from(["error_flag", "ffff", "nack", "absent", "bad_pec"])


@settings(max_examples=80, deadline=None)
@given(
    object_c=st.floats(-60, 370, allow_nan=False),
    ambient_c=st.floats(-39, 124, allow_nan=False),
    glitches=st.lists(st.tuples(GLITCH, st.integers(1, 6), st.sampled_from([None, 0x06, 0x07])), max_size=6),
)
def test_any_glitch_sequence_gives_true_values_or_a_driver_error(object_c, ambient_c, glitches):
    bus = FakeMLX90614Bus(object_c, ambient_c)
    thermo = MLX90614Thermometer(bus, retries=2, backoff_s=0.0)
    for kind, count, register in glitches:
        bus.fail_next(kind, count, register=register)
    for _ in range(12):
        try:
            obj, amb = thermo.read()
        except DriverError:
            continue
        # never a glitch dressed up as a temperature: within one LSB of the truth
        assert abs(obj - object_c) <= 0.021 and abs(amb - ambient_c) <= 0.021
    bus.clear_glitches()  # whatever is left over, the sensor then recovers
    assert thermo.read() == (pytest.approx(object_c, abs=0.021), pytest.approx(ambient_c, abs=0.021))


def test_a_corrupted_transfer_is_caught_by_the_pec_and_retried():
    thermo = FakeThermometer(36.6, 21.3, retries=3)
    thermo.fail_next("bad_pec", 2)
    assert thermo.read() == (36.61, 21.29)
    log = [entry for entry in thermo.bus.log if entry[0] == "wr"]
    assert all(len(entry[3]) == 3 for entry in log)  # LSB, MSB and the PEC byte


def test_persistent_pec_errors_make_the_sensor_unavailable():
    thermo = FakeThermometer(36.6, 21.3, retries=1)
    thermo.fail_next("bad_pec", 2)
    with pytest.raises(SensorUnavailable) as info:
        thermo.read()
    assert info.value.__cause__.errno == errno.EBADMSG
    assert "PEC mismatch reading register 0x07" in str(info.value)


def test_without_pec_the_stock_two_byte_read_is_used():
    bus = FakeMLX90614Bus(36.6, 21.3)
    thermo = MLX90614Thermometer(bus, pec=False)
    bus.fail_next("bad_pec")
    assert thermo.read() == (36.61, 21.29)  # a corrupted PEC goes unnoticed
    assert all(len(entry[3]) == 2 for entry in bus.log if entry[0] == "wr")
