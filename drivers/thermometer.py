"""MLX90614 infrared thermometer through the real Adafruit driver.

`adafruit_mlx90614.MLX90614` reads the RAM words and converts them, but checks
nothing. This wrapper adds what a screening gate needs:

- each word is read with its SMBus PEC byte and checked (`pec=True`, the
  default); a corrupted transfer is retried like a NACK;
- a word with the error flag (bit 15) or 0xFFFF is a `BadSample`, not 1037 °C;
- values outside the chip's measuring ranges are a `BadSample`;
- `OSError` from the bus (errno 121 NACK, 5 EIO, 110 timeout) is retried with a
  short backoff, then reported as `SensorUnavailable` with the error attached;
- a bus lock that never frees is an ETIMEDOUT error, not a hang (the
  Adafruit bus device spins forever);
- a failed constructor probe is a state (`available`, `last_error`), and later
  reads try to reconnect. An outage is logged once, and the recovery once.

The driver knows nothing about fever: `gateway.thermometry` turns samples into
a Reading. `ThermometerSampler` takes timestamped samples at a steady rate.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import adafruit_mlx90614
from adafruit_bus_device.i2c_device import I2CDevice

from drivers.errors import BadSample, SensorUnavailable
from drivers.fake_i2c import MLX90614_ADDRESS, REG_TOBJ1, FakeMLX90614Bus, smbus_pec

log = logging.getLogger(__name__)

# Measuring ranges from the MLX90614 datasheet. Anything outside is a corrupted
# word; the plausibility band for people (30-43 °C) is thermometry's business.
OBJECT_RANGE_C = (-70.0, 382.19)
AMBIENT_RANGE_C = (-40.0, 125.0)


@dataclass(frozen=True)
class Sample:
    """One validated reading: monotonic time, object and ambient in °C."""

    mono_s: float
    object_c: float
    ambient_c: float


class _UnprobedMLX90614(adafruit_mlx90614.MLX90614):
    """The Adafruit driver without its constructor probe.

    On a Pi 5 the zero-length probe write can fail although register reads
    work (raspberrypi/bookworm-feedback#263), and the driver has no way to
    skip it. This mirrors its two-line __init__ with probe=False.
    """

    def __init__(self, i2c_bus, address: int = MLX90614_ADDRESS) -> None:
        self._device = I2CDevice(i2c_bus, address, probe=False)
        self.buf = bytearray(2)


class _LockTimeoutBus:
    """The bus, with a deadline on acquiring its lock.

    adafruit_bus_device's I2CDevice spins on `try_lock()` with no timeout, so
    a lock held elsewhere would hang the read and burn a core. After
    `timeout_s` of failed attempts this raises OSError(ETIMEDOUT), which the
    retry logic treats like any other bus error.
    """

    def __init__(self, bus, timeout_s: float):
        self._bus = bus
        self._timeout_s = timeout_s
        self._waiting_since: float | None = None

    def try_lock(self) -> bool:
        if self._bus.try_lock():
            self._waiting_since = None
            return True
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since > self._timeout_s:
            self._waiting_since = None
            raise OSError(errno.ETIMEDOUT, f"I2C bus lock not free after {self._timeout_s:g} s")
        time.sleep(0.001)  # the driver's own loop sleeps 0: do not spin a core while waiting
        return False

    def __getattr__(self, name):
        return getattr(self._bus, name)


class _PecCheckedMLX90614(adafruit_mlx90614.MLX90614):
    """The Adafruit driver, reading each word with its SMBus PEC byte and checking it.

    The stock `_read_16` reads 2 of the 3 bytes the chip sends, so a bit
    flipped on a long cable can read as a plausible wrong temperature, which
    for a fever screen is worse than no reading. This reads LSB, MSB, PEC and
    raises OSError(EBADMSG) on a mismatch, which the caller retries. The
    conversion and the public properties stay the library's.
    """

    def __init__(self, i2c_bus, address: int = MLX90614_ADDRESS, probe: bool = True) -> None:
        if probe:
            super().__init__(i2c_bus, address)
        else:  # see _UnprobedMLX90614
            self._device = I2CDevice(i2c_bus, address, probe=False)
        self.buf = bytearray(3)

    def _read_16(self, register: int) -> int:
        address = self._device.device_address
        with self._device as i2c:
            i2c.write_then_readinto(bytes([register]), self.buf)
        lsb, msb, pec = self.buf
        if smbus_pec(bytes([address << 1, register, address << 1 | 1, lsb, msb])) != pec:
            raise OSError(errno.EBADMSG, f"PEC mismatch reading register 0x{register:02x}")
        return msb << 8 | lsb


def _raw_word(celsius: float) -> int:
    # The driver returns raw * 0.02 - 273.15; undo that to see the word's flags.
    return round((celsius + 273.15) / 0.02)


class MLX90614Thermometer:
    """An MLX90614 on `i2c` (Blinka's busio.I2C on a Pi, or a fake bus)."""

    def __init__(
        self,
        i2c,
        address: int = MLX90614_ADDRESS,
        retries: int = 3,
        *,
        backoff_s: float = 0.01,
        lock_timeout_s: float = 0.2,
        pec: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.i2c = i2c
        self.pec = pec
        self._bus = _LockTimeoutBus(i2c, lock_timeout_s)
        self.address = address
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._sensor: adafruit_mlx90614.MLX90614 | None = None
        self._lock = threading.Lock()
        self.available = False
        self.last_error: SensorUnavailable | None = None
        try:
            self._connect()
            self.available = True
        except SensorUnavailable as exc:
            self._mark_unavailable(exc)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.address:02x} available={self.available}>"

    def _connect(self) -> None:
        try:
            if self.pec:
                self._sensor = _PecCheckedMLX90614(self._bus, self.address)
            else:
                self._sensor = adafruit_mlx90614.MLX90614(self._bus, self.address)
            return
        except ValueError as exc:  # the driver's "No I2C device at address"
            probe_error: BaseException = exc
        except OSError as exc:
            probe_error = exc
        if self.pec:
            sensor = _PecCheckedMLX90614(self._bus, self.address, probe=False)
        else:
            sensor = _UnprobedMLX90614(self._bus, self.address)
        try:
            sensor.ambient_temperature
        except OSError:
            raise SensorUnavailable(
                f"no MLX90614 answers at I2C address 0x{self.address:02x}", probe_error
            ) from probe_error
        log.info("MLX90614 at 0x%02x failed the probe but answers reads; using it", self.address)
        self._sensor = sensor

    def _mark_unavailable(self, exc: SensorUnavailable) -> None:
        if self.available or self.last_error is None:
            log.warning("thermometer unavailable: %s", exc)
        self.available = False
        self.last_error = exc

    def _mark_available(self) -> None:
        if not self.available:
            if self.last_error is not None:
                log.warning("thermometer recovered at 0x%02x", self.address)
            self.available = True
            self.last_error = None

    def _read_register(self, name: str) -> float:
        last: OSError | None = None
        for attempt in range(self.retries + 1):
            try:
                return getattr(self._sensor, name)
            except OSError as exc:
                last = exc
                if attempt < self.retries:
                    self._sleep(self.backoff_s * 2**attempt)
        raise SensorUnavailable(
            f"thermometer at 0x{self.address:02x}: {name} failed {self.retries + 1} times", last
        ) from last

    @staticmethod
    def _validate(what: str, celsius: float, valid: tuple[float, float]) -> float:
        raw = _raw_word(celsius)
        if raw == 0xFFFF:
            raise BadSample(f"{what} word is 0xFFFF (bus glitch)")
        if raw & 0x8000:
            raise BadSample(f"{what} word 0x{raw:04x} has the error flag set")
        if not valid[0] <= celsius <= valid[1]:
            raise BadSample(f"{what} {celsius:.2f} °C is outside {valid[0]}..{valid[1]} °C")
        return round(celsius, 2)

    def read(self) -> tuple[float, float]:
        """One validated sample: (object_c, ambient_c).

        Raises BadSample for a flagged or impossible word (the sensor is
        there; try again), SensorUnavailable when the bus fails after retries.
        """
        with self._lock:
            try:
                if self._sensor is None:
                    self._connect()
                object_c = self._read_register("object_temperature")
                ambient_c = self._read_register("ambient_temperature")
            except SensorUnavailable as exc:
                self._mark_unavailable(exc)
                raise
            self._mark_available()
        return (
            self._validate("object", object_c, OBJECT_RANGE_C),
            self._validate("ambient", ambient_c, AMBIENT_RANGE_C),
        )

    def health(self) -> tuple[bool, str]:
        """(ok, reason) for the guard screen and selftest."""
        if self.available:
            return True, "ok"
        return False, str(self.last_error or "not read yet")


class FakeThermometer(MLX90614Thermometer):
    """The real thermometer class over an emulated chip (`FakeMLX90614Bus`).

    Script it with `set(object_c, ambient_c)`, `fail_next(kind, count)` for
    kind in error_flag / ffff / nack / absent / bad_pec, `set_absent(bool)` and
    `set_drift(c_per_s)`. `settle_s` emulates the thermopile's settling (0.65 s
    for the DCI part).
    """

    def __init__(
        self,
        object_c: float = 25.0,
        ambient_c: float = 22.0,
        *,
        address: int = MLX90614_ADDRESS,
        retries: int = 3,
        settle_s: float = 0.0,
        backoff_s: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bus = FakeMLX90614Bus(object_c, ambient_c, address=address, settle_s=settle_s, clock=clock)
        super().__init__(self.bus, address, retries, backoff_s=backoff_s)

    def set(self, object_c: float, ambient_c: float | None = None) -> None:
        self.bus.set(object_c, ambient_c)

    def fail_next(self, kind: str, count: int = 1) -> None:
        """The next `count` samples glitch: flagged words hit the object word,
        nack/absent hit every transaction (so retries use them up too)."""
        register = REG_TOBJ1 if kind in ("error_flag", "ffff", "bad_pec") else None
        self.bus.fail_next(kind, count, register=register)

    def set_absent(self, absent: bool) -> None:
        self.bus.set_absent(absent)

    def set_drift(self, c_per_s: float) -> None:
        self.bus.set_drift(c_per_s)


class ThermometerSampler:
    """Reads a thermometer at `hz` on a thread, keeping the last `keep_s` of samples.

    Bad samples are counted and skipped; while the sensor is unavailable
    `health()` says so and each tick tries again (the driver reconnects).
    """

    def __init__(
        self,
        thermometer: MLX90614Thermometer,
        hz: float = 10.0,
        keep_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.thermometer = thermometer
        self.period_s = 1.0 / hz
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=max(2, int(keep_s * hz) + 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.bad_samples = 0
        self.last_bad: BadSample | None = None

    def start(self) -> "ThermometerSampler":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="thermometer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def sample_once(self) -> Sample | None:
        """Take one sample now; None if it was bad or the sensor is unavailable."""
        try:
            object_c, ambient_c = self.thermometer.read()
        except BadSample as exc:
            with self._guard:
                self.bad_samples += 1
                self.last_bad = exc
            return None
        except SensorUnavailable:
            return None
        sample = Sample(self._clock(), object_c, ambient_c)
        with self._guard:
            self._samples.append(sample)
        return sample

    def _run(self) -> None:
        next_at = self._clock()
        while not self._stop.is_set():
            self.sample_once()
            next_at += self.period_s
            delay = next_at - self._clock()
            if delay < 0:  # fell behind (slow bus): do not burst to catch up
                next_at, delay = self._clock(), 0.0
            self._stop.wait(delay)

    def samples(self, since_mono_s: float | None = None) -> list[Sample]:
        """Samples taken at or after `since_mono_s` (all kept ones if None), oldest first."""
        with self._guard:
            kept = list(self._samples)
        if since_mono_s is None:
            return kept
        return [s for s in kept if s.mono_s >= since_mono_s]

    def health(self) -> tuple[bool, str]:
        return self.thermometer.health()
