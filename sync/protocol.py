"""The wire format of sync, shared by the kiosk client and the registry server.

HTTP + JSON under `/api/v1`. Each gate authenticates with its own bearer
token. Every response carries the server's time, in the `X-Server-Time`
header and (for JSON bodies) in `server_time`, so the kiosk can anchor its
clock.

Upload (kiosk -> server), exactly once by watermark:

    POST /api/v1/streams/{stream_id}/events   UploadBatch -> UploadReply
         409 GapReply when first_seq > acked_through + 1
         409 DivergedReply when an event at or below acked_through differs
             from the one stored under its seq (the kiosk's journal was
             restored from an older copy): the kiosk moves the events from
             `diverged_at` on to a new stream, so nothing is dropped as a
             "duplicate"

Registry feed (server -> kiosk):

    GET /api/v1/sites/{site}/registry?since=CURSOR&limit=N  -> RegistryPage
        304 when If-None-Match equals the feed's ETag (nothing new),
        410 when CURSOR is older than the retained horizon: read the snapshot
    GET /api/v1/sites/{site}/registry/snapshot?after=KEY&limit=N -> SnapshotPage

Events travel as loose dicts on purpose: the server validates each one with
`EventRecord` and quarantines (but still acknowledges) an invalid one, so a
single bad row never blocks a stream.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt,
                      StringConstraints)

API_PREFIX = "/api/v1"
MAX_BATCH_EVENTS = 500
# A batch of 500 decision events is ~250 KiB of JSON; leave room, refuse more.
MAX_BODY_BYTES = 1024 * 1024
MAX_REGISTRY_PAGE = 1000
SERVER_TIME_HEADER = "X-Server-Time"
# Fields a kiosk sends per event (the journal's columns minus local upload state).
EVENT_FIELDS = (
    "seq",
    "kind",
    "time",
    "gate",
    "direction",
    "pass_id",
    "person_id",
    "object_c",
    "ambient_c",
    "offset_c",
    "body_c",
    "threshold_c",
    "decision",
    "flagged",
    "reasons",
    "boot_id",
    "mono_ns",
    "wall_time",
    "clock_synced",
    "operator",
    "detail",
)
# A snapshot that has started but not finished: the kiosk restarts it.
SNAPSHOT_IN_PROGRESS = "snapshot"



# What a database column can hold, checked at the boundary so that one bad
# event is quarantined instead of wedging its stream with a 500 on every
# re-send: PostgreSQL refuses NUL in text and integers beyond 64 bits, and a
# NaN or Infinity reading breaks every report that reads it.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def no_nul_anywhere(value: Any) -> Any:
    """NUL in any key or string of a nested JSON value.

    One Python call per value, however deep: it runs once per uploaded event.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("NUL characters are not allowed")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if "\x00" in str(key):
                    raise ValueError("NUL characters are not allowed")
                pending.append(inner)
        elif isinstance(item, list):
            pending.extend(item)
    return value


# Checked by pydantic-core itself (a Rust regex, bounds, allow_inf_nan),
# not by a Python function per field: a batch of 500 events has some 7,000
# such fields, and calling Python for each was a third of the server's
# validation cost (bench.sync). `detail` is free-form, so it is walked in Python.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
Number = (Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
          | Annotated[StrictInt, Field(ge=-(10**6), le=10**6)])
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UploadBatch(Wire):
    """One stream's events from `first_seq` on, contiguous, at most 500."""

    first_seq: int = Field(ge=1, le=2**62, description="seq of events[0]; the rest follow contiguously")
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class EventRecord(BaseModel):
    """What the server accepts as a valid event; anything else is quarantined.

    Unknown fields are refused (quarantined) rather than dropped silently, so
    a newer kiosk never loses data against an older server.
    """

    model_config = ConfigDict(extra="forbid")

    seq: StrictInt = Field(ge=1, le=INT64_MAX)
    kind: Text = Field(min_length=1, max_length=64)
    time: datetime
    gate: Text | None = Field(None, max_length=64)
    direction: Text | None = Field(None, max_length=8)
    pass_id: Text | None = Field(None, max_length=128)
    person_id: Text | None = Field(None, max_length=128)
    object_c: Number | None = None
    ambient_c: Number | None = None
    offset_c: Number | None = None
    body_c: Number | None = None
    threshold_c: Number | None = None
    decision: Text | None = Field(None, max_length=16)
    flagged: StrictBool = False
    reasons: list[Text] = Field(default_factory=list, max_length=32)
    boot_id: Text = Field(min_length=1, max_length=64)
    mono_ns: StrictInt = Field(ge=0, le=INT64_MAX)
    wall_time: Int64
    clock_synced: StrictBool
    operator: Text | None = Field(None, max_length=64)
    detail: Annotated[dict[str, Any], AfterValidator(no_nul_anywhere)] = Field(default_factory=dict)


class ValidUploadBatch(Wire):
    """The server's fast path: a batch whose events are all valid parses
    straight from JSON into EventRecords; otherwise it falls back to
    UploadBatch and checks (and quarantines) event by event."""

    first_seq: int = Field(ge=1, le=2**62)
    events: list[EventRecord] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class EventResult(Wire):
    seq: int
    status: Literal["accepted", "duplicate", "quarantined"]
    error: str | None = None
    time_refused: bool | None = Field(None, description="The kiosk's time for this event was implausible: "
                                                   "the server placed it by an anchor or its receipt")


class UploadReply(Wire):
    acked_through: int = Field(description="Every seq up to this one is committed on the server")
    results: list[EventResult]
    server_time: datetime


class GapReply(Wire):
    error: Literal["gap"] = "gap"
    detail: str
    acked_through: int
    server_time: datetime


class DivergedReply(Wire):
    error: Literal["stream_diverged"] = "stream_diverged"
    detail: str
    acked_through: int
    diverged_at: int = Field(description="The first seq whose content differs from the stored event")
    server_time: datetime


class ErrorReply(Wire):
    error: str
    detail: str | Any = None
    server_time: datetime


class RegistryChange(Wire):
    change_seq: int
    entity: str
    entity_id: str
    op: Literal["upsert", "delete"]
    payload: dict[str, Any] | None = None


class RegistryPage(Wire):
    changes: list[RegistryChange]
    next_cursor: str = Field(description="Pass as `since` next time; store with the page")
    up_to_date: bool
    server_time: datetime


class SnapshotPage(Wire):
    """The site's current registry, paged by key. `cursor` is the feed head
    when the snapshot started: resume deltas from it after the last page."""

    changes: list[RegistryChange]
    cursor: str
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last")
    server_time: datetime


class TimeReply(Wire):
    server_time: datetime


# --- registry payloads: what each entity's `payload` holds, on both ends ------------
# Loose on purpose where the kiosk is lenient (dates are parsed, unknown
# statuses ignored) and open to new fields, so a newer server never breaks an
# older kiosk; the server checks every payload it writes against these, the
# kiosk refuses a person whose record does not fit (`BadRegistryRecord`).


class RegistryPayload(BaseModel):
    model_config = ConfigDict(extra="allow")


class PersonPayload(RegistryPayload):
    name: str = Field("", max_length=200)
    unit: str = Field("", max_length=200)
    site: str | None = None
    status: str = "active"
    observation_until: str | None = Field(None, description="ISO date (through that day, China time) or time")
    risk: str | None = None
    returnee: bool = False


class RevocationPayload(RegistryPayload):
    reason: str = ""
    revoked_at: str | None = None


class KeyPayload(RegistryPayload):
    public_pem: str = Field(min_length=1)


class VisitorCasePayload(RegistryPayload):
    name: str = ""
    phone: str = ""
    visiting: str = ""
    valid_until: str | None = Field(None, description="ISO date or time")
    filed_by: str | None = None


class PolicyPayload(RegistryPayload):
    version: StrictInt = Field(ge=1)


REGISTRY_PAYLOADS: dict[str, type[RegistryPayload]] = {
    "person": PersonPayload, "revocation": RevocationPayload, "key": KeyPayload,
    "visitor_case": VisitorCasePayload, "policy": PolicyPayload,
}


def registry_payload(entity: str, payload: Any) -> RegistryPayload | None:
    """`payload` checked as its entity's model (None for an entity this side does not know).

    Raises pydantic.ValidationError when it does not fit.
    """
    model = REGISTRY_PAYLOADS.get(entity)
    return None if model is None else model.model_validate(payload)


def etag_for(head: int) -> str:
    """The feed's ETag: its head change_seq. The kiosk derives it from its cursor."""
    return f'"h{head}"'


def event_for_wire(event: dict[str, Any]) -> dict[str, Any]:
    """A journal event as the kiosk sends it (no local upload state)."""
    return {key: event.get(key) for key in EVENT_FIELDS}
