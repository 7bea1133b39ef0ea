"""What the checkpoint remembers about a person: being measured (`_Pending`),
or decided recently (`_Context`, for a re-measure or a manual open)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.decision import RegistryEntry
from gateway.passes import PassVerdict
from gateway.thermometry import Reading


@dataclass
class _Pending:
    """A person being measured: their pass (if any) and when it was first seen."""

    text: str | None
    verdict: PassVerdict | None
    started: float
    direction: str
    entry: RegistryEntry | None
    health_code: str | None
    sample_from: float
    remeasure_of: int | None = None
    first_reading: Reading | None = None
    operator: str | None = None


@dataclass
class _Context:
    """What a committed decision was about: for re-measure and override."""

    text: str | None
    verdict: PassVerdict | None
    entry: RegistryEntry | None
    health_code: str | None
    reading: Reading | None
    direction: str
    flagged: bool
    subject: str | None = None  # the fever case's subject (gateway.fever_case.subject_of)
    case_id: str | None = None
    kind: str | None = None  # the pass kind: a manual open's reason must fit it
    decided_at: float | None = None  # monotonic: a manual open attaches only to a recent decision
