"""The devices the checkpoint loop uses, as interfaces (typing Protocols).

The real drivers and their fake twins (drivers/) both fit these; so does
anything a test hands the loop. Only what `gateway.loop.Checkpoint` and
`gateway.guard_actions` call is listed.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from drivers.camera import Frame
from drivers.thermometer import Sample


class FrameCamera(Protocol):
    def wait_frame(self, after_seq: int = 0, timeout: float = 2.0) -> Frame | None: ...

    def latest(self) -> Frame | None: ...

    def health(self) -> tuple[bool, str]: ...


class SampleSource(Protocol):
    """`drivers.thermometer.ThermometerSampler`; `bad_samples` counts flagged words."""

    bad_samples: int

    def samples(self, since_mono_s: float | None = None) -> Sequence[Sample]: ...

    def health(self) -> tuple[bool, str]: ...


class CodeScanner(Protocol):
    def scan(self, image: Any) -> list[str] | None: ...


class GateOutputs(Protocol):
    def open_for(self, seconds: float | None = None) -> None: ...

    def close_gate(self) -> None: ...

    def signal(self, kind: str, seconds: float | None = None) -> None: ...


class Beam(Protocol):
    def opened(self, open_s: float) -> None: ...

    def close(self) -> None: ...
