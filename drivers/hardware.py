"""The one place that picks real or fake hardware, from `[hardware] kind`.

    with build_hardware(settings) as hw:
        hw.camera.start(); hw.thermometer.read(); hw.outputs.open_for(3)

kind = "fake": FakeThermometer (the real driver over an emulated chip),
FakeCamera (rendered scenes) and GateOutputs on gpiozero's MockFactory.
kind = "pi": Blinka's I2C bus at `[thermometer] frequency_hz`, an OpenCV or
picamera2 camera from `[camera] source`, and real GPIO. A missing Pi library
is a DriverError that says what to install; nothing ever falls back to a fake.

A missing *device* is not an error here: the thermometer and the camera report
it through `health()` and recover on their own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from drivers.camera import Camera, FakeCamera, open_camera
from drivers.errors import DriverError
from drivers.outputs import GateOutputs
from drivers.thermometer import FakeThermometer, MLX90614Thermometer

log = logging.getLogger(__name__)


@dataclass
class Hardware:
    kind: str
    thermometer: MLX90614Thermometer
    camera: Camera
    outputs: GateOutputs

    @property
    def is_fake(self) -> bool:
        return self.kind == "fake"

    def close(self) -> None:
        """Relay closed first, then the camera stopped."""
        try:
            self.outputs.close()
        finally:
            self.camera.stop()

    def __enter__(self) -> "Hardware":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_hardware(settings, *, clock=None) -> Hardware:
    """`clock`: the fake devices' monotonic clock (a `gateway.sim_clock.SimClock` in a stepped run)."""
    kind = settings.hardware.kind
    if kind == "fake":
        return _build_fake(settings, clock or time.monotonic)
    if kind == "pi":
        return _build_pi(settings)
    raise DriverError(f"hardware.kind = {kind!r}: expected 'fake' or 'pi'")


def _build_fake(settings, clock=time.monotonic) -> Hardware:
    from gpiozero.pins.mock import MockFactory

    t, c = settings.thermometer, settings.camera
    outputs = GateOutputs(settings.outputs, pin_factory=MockFactory(), clock=clock)
    thermometer = FakeThermometer(address=t.address, retries=t.retries, clock=clock)
    camera = FakeCamera(c.width, c.height, c.fps, stale_after_s=c.stale_after_s, clock=clock)
    return Hardware("fake", thermometer, camera, outputs)


def open_i2c(thermometer_settings):
    """Blinka's I2C bus for the MLX90614 (bus 1 = GPIO2/3, or any /dev/i2c-N)."""
    t = thermometer_settings
    try:
        import board
        import busio
    except Exception as exc:  # Blinka raises several kinds on unsupported boards
        raise DriverError(
            "hardware.kind = 'pi' needs Adafruit-Blinka: pip install -e '.[pi]'", exc
        ) from exc
    try:
        if t.i2c_bus == 1:
            # On Linux the clock is set by the kernel: dtparam=i2c_arm_baudrate=50000
            return busio.I2C(board.SCL, board.SDA, frequency=t.frequency_hz)
        try:
            from adafruit_extended_bus import ExtendedI2C
        except ImportError as exc:
            raise DriverError(
                f"thermometer.i2c_bus = {t.i2c_bus} needs adafruit-extended-bus (pip install "
                "adafruit-extended-bus); bus 1 works without it",
                exc,
            ) from exc
        return ExtendedI2C(t.i2c_bus, frequency=t.frequency_hz)
    except DriverError:
        raise
    except Exception as exc:
        raise DriverError(
            f"cannot open I2C bus {t.i2c_bus}: enable I2C (raspi-config, or dtparam=i2c_arm=on "
            "in /boot/firmware/config.txt) and check that this is a Raspberry Pi",
            exc,
        ) from exc


def _build_pi(settings) -> Hardware:
    t, c = settings.thermometer, settings.camera
    if c.source == "picamera2":
        try:
            import picamera2  # noqa: F401 - fail now, not on the capture thread
        except ImportError as exc:
            raise DriverError(
                "camera.source = 'picamera2' needs python3-picamera2 (apt) and a venv created "
                "with --system-site-packages",
                exc,
            ) from exc
    outputs = GateOutputs(settings.outputs)  # first: the relay is driven closed at once
    try:
        thermometer = MLX90614Thermometer(open_i2c(t), address=t.address, retries=t.retries)
        camera = open_camera(c)
    except BaseException:
        outputs.close()
        raise
    if not thermometer.available:
        log.warning("starting without the thermometer: %s", thermometer.last_error)
    return Hardware("pi", thermometer, camera, outputs)
