"""A fake I2C bus with an emulated MLX90614 on it.

It speaks the same API as Blinka's `busio.I2C` (try_lock/unlock/writeto/
readfrom_into/writeto_then_readfrom/scan), so the *real* Adafruit driver runs
on top of it in tests and in `checkpoint simulate`. What is emulated:

- RAM words Ta (0x06), Tobj1 (0x07), Tobj2 (0x08) as raw = (°C + 273.15) / 0.02,
  sent little-endian (LSB first) like the chip; EEPROM words (0x20 | addr),
  emissivity 0x24 = 0xFFFF (1.0) as shipped.
- The SMBus PEC byte (CRC-8, polynomial 0x07) when a caller reads 3 bytes.
  The Adafruit driver reads only 2 and never sees it.
- Glitches, queued one per data transaction with `fail_next(kind, count)`:
  "error_flag" (bit 15 set), "ffff", "nack" (OSError errno 121 on this
  transaction), "absent" (the address does not answer), "bad_pec".
  `set_absent(True)` unplugs the chip until `set_absent(False)`.
- Drift (°C per second added to the object value) and settling (the object
  value approaches a newly set target exponentially, like a thermopile).
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections import deque
from typing import Callable

MLX90614_ADDRESS = 0x5A
REG_RAW_IR1 = 0x04
REG_TA = 0x06
REG_TOBJ1 = 0x07
REG_TOBJ2 = 0x08
EEPROM_EMISSIVITY = 0x24
GLITCH_KINDS = ("error_flag", "ffff", "nack", "absent", "bad_pec")


def celsius_to_raw(celsius: float) -> int:
    """The chip's RAM word for a temperature: 0.02 K per LSB, 15 bits."""
    return max(0, min(0x7FFF, round((celsius + 273.15) / 0.02)))


def raw_to_celsius(raw: int) -> float:
    return raw * 0.02 - 273.15


def smbus_pec(data: bytes) -> int:
    """SMBus packet error code: CRC-8, polynomial x^8 + x^2 + x + 1, init 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _nack(what: str) -> OSError:
    # What Linux i2c-dev raises for an address or data NACK.
    return OSError(errno.EREMOTEIO, f"{what}: {errno.errorcode[errno.EREMOTEIO]} (Remote I/O error)")


class FakeMLX90614Bus:
    """A `busio.I2C` stand-in with one emulated MLX90614 at `address`."""

    def __init__(
        self,
        object_c: float = 25.0,
        ambient_c: float = 22.0,
        *,
        address: int = MLX90614_ADDRESS,
        settle_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.address = address
        self.settle_s = settle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._absent = False
        self._glitches: deque[tuple[str, int | None]] = deque()
        self._drift_c_per_s = 0.0
        self._ambient_c = ambient_c
        self._target_c = object_c
        self._object_c = object_c
        self._set_at = clock()
        self._updated_at = self._set_at
        self.eeprom = {EEPROM_EMISSIVITY: 0xFFFF, 0x20: 0x9993, 0x21: 0x62E3, 0x25: 0x9FB4, 0x2E: 0xBE5A}
        self.transactions = 0
        self.log: deque[tuple] = deque(maxlen=200)

    # -- scripting the chip ---------------------------------------------------
    def set(self, object_c: float, ambient_c: float | None = None) -> None:
        """Point the sensor at something of `object_c` (settles over `settle_s`)."""
        with self._state_lock:
            self._object_c = self._current_object_c()
            self._target_c = object_c
            if self.settle_s <= 0:
                self._object_c = object_c
            if ambient_c is not None:
                self._ambient_c = ambient_c
            self._set_at = self._updated_at = self._clock()

    def set_drift(self, c_per_s: float) -> None:
        """Add a slow linear drift to the object value from now on."""
        with self._state_lock:
            self._object_c = self._current_object_c()
            self._target_c += self._drift_c_per_s * (self._clock() - self._set_at)
            self._drift_c_per_s = c_per_s
            self._set_at = self._updated_at = self._clock()

    def fail_next(self, kind: str, count: int = 1, register: int | None = None) -> None:
        """Make the next `count` data transactions glitch with `kind`.

        With `register`, only reads of that register use up the glitch.
        """
        if kind not in GLITCH_KINDS:
            raise ValueError(f"unknown glitch {kind!r}; expected one of {', '.join(GLITCH_KINDS)}")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._state_lock:
            self._glitches.extend([(kind, register)] * count)

    def clear_glitches(self) -> None:
        """Drop glitches queued with fail_next that have not happened yet."""
        with self._state_lock:
            self._glitches.clear()

    def set_absent(self, absent: bool) -> None:
        """Unplug (True) or replug (False) the chip."""
        with self._state_lock:
            self._absent = absent

    @property
    def pending_glitches(self) -> int:
        return len(self._glitches)

    def _current_object_c(self) -> float:
        now = self._clock()
        target = self._target_c + self._drift_c_per_s * (now - self._set_at)
        if self.settle_s <= 0:
            return target
        # Exponential approach: within 1% of a step after settle_s.
        tau = self.settle_s / math.log(100)
        alpha = 1.0 - math.exp(-(now - self._updated_at) / tau)
        return self._object_c + (target - self._object_c) * alpha

    def _ram_word(self, register: int) -> int:
        if register in (REG_TOBJ1, REG_TOBJ2):
            with self._state_lock:
                value = self._current_object_c()
                self._object_c, self._updated_at = value, self._clock()
                if self.settle_s > 0:
                    self._target_c += self._drift_c_per_s * (self._updated_at - self._set_at)
                    self._set_at = self._updated_at
            return celsius_to_raw(value)
        if register == REG_TA:
            return celsius_to_raw(self._ambient_c)
        if register == REG_RAW_IR1:
            return 0x0123
        return 0x0000

    # -- busio.I2C API ----------------------------------------------------------
    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def deinit(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.deinit()

    def scan(self) -> list[int]:
        return [] if self._absent else [self.address]

    def _check_address(self, address: int, glitch: str | None = None) -> None:
        if address != self.address or self._absent or glitch == "absent":
            raise _nack(f"no ACK from 0x{address:02x}")

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        data = bytes(buffer[start:end])
        self.log.append(("w", address, data))
        self._check_address(address)
        if len(data) == 4 and 0x20 <= data[0] <= 0x3F:  # SMBus write word (EEPROM) with PEC
            expected = smbus_pec(bytes([address << 1]) + data[:3])
            if data[3] != expected:
                raise _nack("EEPROM write with bad PEC")
            self.eeprom[data[0]] = data[1] | data[2] << 8

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        self.log.append(("r", address))
        self._check_address(address)
        end = len(buffer) if end is None else end
        for i in range(start, end):
            buffer[i] = 0xFF  # a bare read without a command reads idle bus

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out,
        buffer_in,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        command = bytes(buffer_out[out_start:out_end])
        in_end = len(buffer_in) if in_end is None else in_end
        with self._state_lock:
            self.transactions += 1
            glitch = None
            target = command[0] if command else None
            if self._glitches and self._glitches[0][1] in (None, target):
                glitch = self._glitches.popleft()[0]
        self._check_address(address, glitch)
        if glitch == "nack" or len(command) != 1:
            raise _nack(f"NACK reading command {command.hex()} from 0x{address:02x}")
        cmd = command[0]
        if cmd <= 0x1F:
            word = self._ram_word(cmd)
        elif cmd <= 0x3F:
            word = self.eeprom.get(cmd, 0x0000)
        else:
            raise _nack(f"unsupported command 0x{cmd:02x}")
        if glitch == "error_flag":
            word |= 0x8000
        elif glitch == "ffff":
            word = 0xFFFF
        lsb, msb = word & 0xFF, word >> 8
        pec = smbus_pec(bytes([address << 1, cmd, address << 1 | 1, lsb, msb]))
        if glitch == "bad_pec":
            pec ^= 0x5A
        reply = bytes([lsb, msb, pec])
        n = in_end - in_start
        buffer_in[in_start:in_end] = (reply + b"\xff" * max(0, n - 3))[:n]
        self.log.append(("wr", address, command, bytes(buffer_in[in_start:in_end])))
