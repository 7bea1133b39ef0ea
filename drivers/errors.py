"""One error family for every driver.

The kiosk loop catches `DriverError` (never a bare `Exception`) and turns it
into a state the guard sees. The underlying OS or library error is attached as
`__cause__` (raise ... from exc) and also kept in `.cause` for logging.
"""

from __future__ import annotations


class DriverError(Exception):
    """A hardware driver failed; `.cause` is the underlying error, if any."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        text = super().__str__()
        if self.cause is not None:
            return f"{text} ({type(self.cause).__name__}: {self.cause})"
        return text


class SensorUnavailable(DriverError):
    """The thermometer cannot be reached (absent, unplugged, bus errors after retries)."""


class BadSample(DriverError):
    """The thermometer answered, but the word is an error flag or physically impossible."""


class CameraUnavailable(DriverError):
    """The camera cannot be opened, returns no frames, or only stale frames."""


class RelayFault(DriverError):
    """The gate relay, buzzer or lights cannot be driven (GPIO unavailable)."""
