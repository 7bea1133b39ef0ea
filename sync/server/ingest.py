"""Upload ingest: one batch of one stream, exactly once by watermark.

In one transaction:
1. lock the stream's row (created and bound to the gate on first upload);
2. a batch starting past `acked_through + 1` is a gap: `Gap` (HTTP 409);
3. events at or below `acked_through` are duplicates (a lost reply, re-sent),
   if their content is what is stored under their seq; a changed one means
   the kiosk's journal was rolled back to an older copy: `Diverged` (409
   `stream_diverged`), and the kiosk moves its new events to a new stream;
4. the rest are validated; an invalid one goes to `quarantine` and is still
   acknowledged, so one bad row never blocks the stream;
5. bulk insert, advance `acked_through`, commit - and only then does the
   caller reply. A reply lost after the commit costs a re-send, never a
   duplicate.

Event times: a kiosk without a synced clock (no RTC, no NTP yet) records its
boot id and monotonic time with each event. Its `clock_anchor` events pair a
monotonic time with the server's time, so the server can place every event of
that boot: `anchor_server_ns - (anchor_mono_ns - event_mono_ns)`. Events of a
boot with no anchor yet keep the kiosk's wall time with `time_source =
'unknown'` and are corrected when an anchor arrives. `received_at` is kept
either way.

No kiosk time is taken on its word, synced or not: a time later than the
server's receipt plus `TIME_TOLERANCE`, or before `EARLIEST_EVENT`, is
refused - placed by an anchor of its own stream if there is one, else at the
receipt time (`time_source = 'receipt'`) - and the reply marks the event
`time_refused` so the guard screen says so. An anchor whose server time lies
in the future is not used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, String, bindparam, func, literal, select

from gateway.clock import to_ns
from sync.protocol import EventRecord
from sync.server import hotpath, notify
from sync.server.auth import Gate
from sync.server.cases import CASE_KINDS, LEGACY_ACK, decision_raises_alert, fold_case_events, fold_legacy_acks
from sync.server.db import Database
from sync.server.schema import alerts, clock_anchors, events, gates, quarantine, streams

TIME_TOLERANCE_NS = 5 * 60 * 10**9  # kiosk clocks may run this far ahead of the server
EARLIEST_EVENT_NS = to_ns(datetime(2020, 1, 1, tzinfo=timezone.utc))  # before the product existed: a dead RTC
EVENT_COLUMNS = tuple(c.name for c in events.columns)
_MANY = TypeAdapter(list[EventRecord])
_RECORD_JSON = EventRecord.__pydantic_serializer__
# Built once (issue 14): constructing these per request cost more CPU than
# running them. FOR UPDATE serialises two uploads of one stream on PostgreSQL
# (a retry racing a stalled original); SQLite's write lock already does.
# The baseline (hotpath.BASELINE) builds them per request as before.


def _lock_stream():
    return (select(streams.c.gate_id, streams.c.acked_through)
            .where(streams.c.stream_id == bindparam("sid")).with_for_update())


def _advance_stream():
    return (streams.update().where(streams.c.stream_id == bindparam("sid"))
            .values(acked_through=bindparam("last"), last_upload_at=bindparam("now")))


_LOCK_STREAM, _ADVANCE_STREAM = _lock_stream(), _advance_stream()
# Up to this many rows go in as one INSERT (one round trip); more use COPY.
SMALL_BATCH_ROWS = 50


def _payload(raw: dict) -> str:
    # pydantic-core's encoder is several times faster than json.dumps here.
    return to_json(raw, fallback=str).decode("utf-8")


class Gap(Exception):
    """The batch starts after acked_through + 1: the kiosk must rewind."""

    def __init__(self, acked_through: int, first_seq: int):
        super().__init__(f"batch starts at seq {first_seq} but the server has only {acked_through}")
        self.acked_through = acked_through


class Diverged(Exception):
    """An event at or below acked_through is not the one stored under its seq."""

    def __init__(self, acked_through: int, diverged_at: int):
        super().__init__(f"seq {diverged_at} differs from the event the server stored under it "
                         f"(journal restored from an older copy?)")
        self.acked_through = acked_through
        self.diverged_at = diverged_at


class StreamForbidden(Exception):
    """The stream belongs to another gate."""


@dataclass
class IngestResult:
    acked_through: int
    results: list[dict] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    alerts: int = 0


def _short_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts).replace("\x00", "\\0")  # a NUL field name must not reach a text column


def _anchor_time_ns(record: EventRecord) -> int | None:
    value = record.detail.get("server_time")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return to_ns(when.astimezone(timezone.utc))


@dataclass
class _Checked:
    record: EventRecord | None
    payload: str
    error: str | None = None


def check_events(items: list[EventRecord | dict]) -> list[_Checked]:
    """Validate a batch's events (outside any transaction, so no lock is held)."""
    if items and not all(isinstance(x, EventRecord) for x in items):
        try:  # all valid: one call instead of one per event
            items = _MANY.validate_python(items)
        except ValidationError:
            pass
    checked = []
    for item in items:
        if isinstance(item, EventRecord):
            # The serializer itself: model_dump_json() is the same call behind
            # a Python wrapper that costs as much as the encoding (bench.sync).
            record, payload = item, _RECORD_JSON.to_json(item).decode("utf-8")
        else:
            payload = _payload(item)
            try:
                record = EventRecord.model_validate(item)
            except ValidationError as exc:
                checked.append(_Checked(None, payload, _short_error(exc)[:1000]))
                continue
        if record.kind == "clock_anchor" and _anchor_time_ns(record) is None:
            checked.append(_Checked(None, payload, "clock_anchor needs detail.server_time as an ISO time with a zone"))
            continue
        checked.append(_Checked(record, payload))
    return checked


def ingest(db: Database, gate: Gate, stream_id: str, first_seq: int, items: list[EventRecord | dict],
           now: datetime | None = None) -> IngestResult:
    """Store one batch; raises Gap or StreamForbidden (nothing is written then).

    `items` are EventRecords (the endpoint's fast path, parsed straight from
    JSON) or raw dicts, which are validated one by one.
    """
    now = now or datetime.now(timezone.utc)
    checked = check_events(items)
    # The usual small upload (issue 14): one statement, no transaction block.
    appended = _append_plain_batch(db, gate, stream_id, first_seq, checked, now)
    if appended is not None:
        return appended
    with db.write() as conn:
        # Lock the stream row first; create it only on a stream's first
        # upload (the old path ran the INSERT on every request).
        row = None if hotpath.BASELINE else conn.execute(_LOCK_STREAM, {"sid": stream_id}).first()
        if row is None:
            conn.execute(
                db.insert(streams)
                .values(stream_id=stream_id, gate_id=gate.id, site_id=gate.site_id, acked_through=0, created_at=now)
                .on_conflict_do_nothing(index_elements=["stream_id"])
            )
            row = conn.execute(_lock_stream() if hotpath.BASELINE else _LOCK_STREAM, {"sid": stream_id}).one()
        if row.gate_id != gate.id:
            _take_over_or_refuse(conn, stream_id, row.gate_id, gate)
        acked = row.acked_through
        if first_seq > acked + 1:
            raise Gap(acked, first_seq)

        skip = min(acked - first_seq + 1, len(checked))
        if skip > 0:
            changed = _first_changed(conn, stream_id, first_seq, checked[:skip])
            if changed is not None:
                raise Diverged(acked, changed)
        result = IngestResult(acked_through=acked)
        for i in range(skip):
            result.results.append({"seq": first_seq + i, "status": "duplicate"})
        result.duplicates = skip
        if skip == len(checked):
            return result

        good: list[tuple[int, str, EventRecord]] = []
        bad_rows = []
        for offset, item in enumerate(checked[skip:]):
            seq = first_seq + skip + offset
            if item.record is None:
                bad_rows.append({"stream_id": stream_id, "seq": seq, "gate_id": gate.id, "received_at": now,
                                 "error": item.error, "payload": item.payload})
                result.results.append({"seq": seq, "status": "quarantined", "error": item.error[:200]})
            else:
                good.append((seq, item.payload, item.record))
                result.results.append({"seq": seq, "status": "accepted"})
        accepted_at = {r["seq"]: r for r in result.results if r["status"] == "accepted"}

        received_ns = to_ns(now)
        new_anchors = _store_anchors(conn, db.insert, stream_id, good, received_ns)
        anchors = _anchors_for(conn, stream_id, {r.boot_id for _, _, r in good
                                                 if not r.clock_synced or not _plausible(r.wall_time, received_ns)})
        rows, alert_rows, case_steps, ack_steps = [], [], [], []
        received = _bind_value(conn, events.c.received_at, now)
        refused = {}
        for seq, payload, record in good:
            time_ns, source = _event_time(record, anchors, received_ns)
            if record.clock_synced and source != "clock":
                refused[seq] = True
            body_c = None if record.body_c is None else float(record.body_c)
            # In EVENT_COLUMNS order.
            rows.append(_event_row(stream_id, seq, gate, record, payload, time_ns, source, received))
            if record.kind in CASE_KINDS:
                case_steps.append((seq, record, time_ns))
            elif record.kind == LEGACY_ACK:
                ack_steps.append((seq, record, time_ns))
            if decision_raises_alert(record):  # one alert per fever case (sync/server/cases.py)
                alert_rows.append({
                    "site_id": gate.site_id, "gate_id": gate.id, "gate_name": gate.name,
                    "stream_id": stream_id, "seq": seq, "person_id": record.person_id,
                    "pass_id": record.pass_id, "body_c": body_c,
                    "event_time_ns": time_ns, "received_at": now,
                })
        # Older events of a boot that just got its first anchor.
        for boot_id, (anchor_mono, anchor_ns) in new_anchors.items():
            conn.execute(
                events.update()
                .where(events.c.stream_id == stream_id, events.c.boot_id == boot_id,
                       events.c.time_source == "unknown",
                       events.c.clock_synced.is_(False))
                .values(event_time_ns=literal(anchor_ns - anchor_mono) + events.c.mono_ns,
                        time_source="anchor")
            )
        if new_anchors:
            # Open fever alerts of this stream take the corrected times too.
            corrected = (select(events.c.event_time_ns)
                         .where(events.c.stream_id == alerts.c.stream_id, events.c.seq == alerts.c.seq)
                         .scalar_subquery())
            # An alert whose event is gone (purged by retention, or a server
            # restored from an older backup) keeps the time it has.
            conn.execute(alerts.update()
                         .where(alerts.c.stream_id == stream_id, alerts.c.acknowledged_at.is_(None))
                         .values(event_time_ns=func.coalesce(corrected, alerts.c.event_time_ns)))
        for seq in refused:
            accepted_at[seq]["time_refused"] = True
        if rows:
            _bulk_insert_events(db, conn, rows)
            notify.enqueue_unstaffed(conn, gate, stream_id, good)
        if bad_rows:
            conn.execute(quarantine.insert(), bad_rows)
        if alert_rows:
            # After a restore from an older backup the same fever events come
            # again: one alert per (stream, seq), never a second one.
            known = set(conn.execute(
                select(alerts.c.seq).where(alerts.c.stream_id == stream_id,
                                           alerts.c.seq.in_([a["seq"] for a in alert_rows]))
            ).scalars())
            alert_rows = [a for a in alert_rows if a["seq"] not in known]
        if alert_rows:
            conn.execute(alerts.insert(), alert_rows)
            notify.enqueue_fever(conn, alert_rows)
        case_alerts = fold_case_events(conn, gate=gate, stream_id=stream_id, steps=case_steps, now=now)
        notify.enqueue_fever(conn, case_alerts)
        # After the alerts above: an acknowledgement in the same batch as its decision finds it.
        ack_alerts = fold_legacy_acks(conn, gate=gate, stream_id=stream_id, steps=ack_steps, now=now)
        notify.enqueue_fever(conn, ack_alerts)
        last = first_seq + len(checked) - 1
        conn.execute(_advance_stream() if hotpath.BASELINE else _ADVANCE_STREAM,
                     {"sid": stream_id, "last": last, "now": now})
        result.acked_through = last
        result.accepted = len(rows)
        result.quarantined = len(bad_rows)
        result.alerts = len(alert_rows) + len(case_alerts) + len(ack_alerts)
    return result


def _event_row(stream_id: str, seq: int, gate: Gate, record: EventRecord, payload: str, time_ns: int,
               source: str, received) -> tuple:
    """One events row, in EVENT_COLUMNS order."""
    body_c = None if record.body_c is None else float(record.body_c)
    return (stream_id, seq, gate.site_id, gate.id, record.kind, time_ns, source, record.wall_time,
            record.boot_id, record.mono_ns, record.clock_synced, record.decision, record.flagged,
            record.person_id, record.pass_id, body_c, received, payload)


def _is_plain(item: _Checked, received_ns: int) -> bool:
    """An event that needs nothing but its row: valid, on a synced clock with
    a plausible time (no anchor to look up, nothing refused), and no clock
    anchor, fever case, alert or notice."""
    record = item.record
    return (record is not None and record.clock_synced and _plausible(record.wall_time, received_ns)
            and record.kind != "clock_anchor"
            and record.kind not in CASE_KINDS and record.kind != LEGACY_ACK
            and record.kind not in notify.UNSTAFFED_KINDS
            and not decision_raises_alert(record))


_append_sql: dict[int, str] = {}


def _append_statement(count: int) -> str:
    """Advance the stream's watermark only if it stands right before this
    batch and the stream is this gate's, and insert the rows only if it did:
    one atomic statement. Casts give the VALUES list the events columns' types."""
    if count not in _append_sql:
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.dialect()
        casts = ", ".join(f"CAST(%s AS {c.type.compile(dialect=dialect)})" for c in events.columns)
        values = ", ".join([f"({casts})"] * count)
        columns = ", ".join(EVENT_COLUMNS)
        _append_sql[count] = (
            "WITH advanced AS (UPDATE streams SET acked_through = %s, last_upload_at = %s"
            " WHERE stream_id = %s AND gate_id = %s AND acked_through = %s RETURNING 1)"
            f" INSERT INTO events ({columns}) SELECT * FROM (VALUES {values}) AS batch"
            " WHERE EXISTS (SELECT 1 FROM advanced)")
    return _append_sql[count]


def plain_append(db: Database, gate: Gate, stream_id: str, first_seq: int, checked: list[_Checked],
                 now: datetime) -> tuple[str, list] | None:
    """The usual upload - a known stream of this gate, the batch right after
    its watermark, nothing but plain events - as one statement on PostgreSQL
    (SQL and parameters): one round trip instead of five (BEGIN, lock,
    insert, advance, COMMIT). Run it outside a transaction block; it inserted
    the batch if its row count is the batch's length, else it did nothing.

    A single statement is atomic on its own, and its UPDATE takes the stream
    row's lock, so a racing re-send of the same batch waits and then finds
    the watermark moved (PostgreSQL re-checks the WHERE on the new row): it
    inserts nothing. None when it does not apply: anything to quarantine,
    anchor, alert or notify. A new stream, a duplicate, a gap or another
    gate's stream make it do nothing, and ingest() takes the full path.
    """
    if hotpath.BASELINE or not db.is_postgres or len(checked) > SMALL_BATCH_ROWS:
        return None
    received_ns = to_ns(now)
    if not all(_is_plain(item, received_ns) for item in checked):
        return None
    params: list = [first_seq + len(checked) - 1, now, stream_id, gate.id, first_seq - 1]
    for offset, item in enumerate(checked):
        params.extend(_event_row(stream_id, first_seq + offset, gate, item.record, item.payload,
                                 item.record.wall_time, "clock", now))
    return _append_statement(len(checked)), params


def appended_result(first_seq: int, count: int) -> IngestResult:
    return IngestResult(acked_through=first_seq + count - 1, accepted=count,
                        results=[{"seq": first_seq + i, "status": "accepted"} for i in range(count)])


def _append_plain_batch(db: Database, gate: Gate, stream_id: str, first_seq: int, checked: list[_Checked],
                        now: datetime) -> IngestResult | None:
    """plain_append() on a pooled connection; None when it did not apply or did nothing."""
    statement = plain_append(db, gate, stream_id, first_seq, checked, now)
    if statement is None:
        return None
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.autocommit = True  # client-side only: no BEGIN/COMMIT round trips
        try:
            with raw.cursor() as cursor:
                cursor.execute(*statement)
                inserted = cursor.rowcount
        finally:
            raw.autocommit = False
    return appended_result(first_seq, inserted) if inserted == len(checked) else None


def content_hash(record: EventRecord | None, payload: str) -> str:
    """One event's content, independent of how it was encoded: a valid event
    by its canonical JSON, an invalid one by its sorted JSON."""
    if record is not None:
        canonical = record.model_dump_json()
    else:
        try:
            canonical = json.dumps(json.loads(payload), sort_keys=True, ensure_ascii=False)
        except ValueError:
            canonical = payload
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _stored_hash(payload: str) -> str:
    try:
        return content_hash(EventRecord.model_validate_json(payload), payload)
    except ValidationError:
        return content_hash(None, payload)


def _first_changed(conn, stream_id: str, first_seq: int, items: list[_Checked]) -> int | None:
    """The first re-sent seq whose content differs from what is stored, if any.

    Only the re-send path pays for this (a lost reply, or a rolled-back
    journal); an event no longer stored (retention) cannot be compared.
    """
    last = first_seq + len(items) - 1
    stored = dict(conn.execute(
        select(events.c.seq, events.c.payload)
        .where(events.c.stream_id == stream_id, events.c.seq >= first_seq, events.c.seq <= last)
    ).all())
    for seq, payload in conn.execute(
        select(quarantine.c.seq, quarantine.c.payload)
        .where(quarantine.c.stream_id == stream_id, quarantine.c.seq >= first_seq, quarantine.c.seq <= last)
    ):
        stored.setdefault(seq, payload)
    for offset, item in enumerate(items):
        seq = first_seq + offset
        if seq in stored and _stored_hash(stored[seq]) != content_hash(item.record, item.payload):
            return seq
    return None


def _take_over_or_refuse(conn, stream_id: str, owner_id: int, gate: Gate) -> None:
    """A gate re-enrolled under the same site and name (its old token revoked)
    carries on with its journal; any other gate is refused."""
    owner = conn.execute(
        select(gates.c.site_id, gates.c.name, gates.c.revoked_at).where(gates.c.id == owner_id)
    ).first()
    if owner is None or owner.revoked_at is None or (owner.site_id, owner.name) != (gate.site_id, gate.name):
        raise StreamForbidden(f"stream {stream_id} belongs to another gate")
    conn.execute(streams.update().where(streams.c.stream_id == stream_id).values(gate_id=gate.id))


def _bind_value(conn, column, value):
    """A value as the driver wants it (SQLite stores datetimes as text)."""
    process = column.type.bind_processor(conn.dialect)
    return process(value) if process else value


def _bulk_insert_events(db: Database, conn, rows: list[tuple]) -> None:
    """Insert event rows fast: one INSERT (small batches) or COPY on PostgreSQL, a plain executemany on SQLite.

    All skip SQLAlchemy's per-row parameter processing, which costs more
    than the insert itself at 500 rows a batch.
    """
    columns = ", ".join(EVENT_COLUMNS)
    if db.is_postgres and len(rows) <= SMALL_BATCH_ROWS and not hotpath.BASELINE:
        # COPY takes three round trips (start, data, end); a kiosk's usual
        # batch of one or two events goes in as one INSERT, which psycopg
        # prepares on the server after a few uses (one text per batch size).
        marks = ", ".join(["(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"] * len(rows))
        with conn.connection.driver_connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO events ({columns}) VALUES {marks}", [v for row in rows for v in row])
        return
    if db.is_postgres:
        cursor = conn.connection.driver_connection.cursor()
        # Binary COPY when every column's type is known: PostgreSQL skips
        # parsing numbers and times from text (about 30 % less per row).
        binary = _COPY_TYPES is not None
        with cursor.copy(f"COPY events ({columns}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")) as copy:
            if binary:
                copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(EVENT_COLUMNS))
    conn.exec_driver_sql(f"INSERT INTO events ({columns}) VALUES ({marks})", rows)


def _copy_types() -> list[str] | None:
    """The PostgreSQL type of each events column for a binary COPY, or None
    (plain text COPY) if a column has a type not mapped here."""
    names = []
    for column in events.columns:
        kind = column.type
        if isinstance(kind, Boolean):
            names.append("bool")
        elif isinstance(kind, BigInteger):
            names.append("int8")
        elif isinstance(kind, Integer):
            names.append("int4")
        elif isinstance(kind, Float):
            names.append("float8")
        elif isinstance(kind, DateTime):
            names.append("timestamptz" if kind.timezone else "timestamp")
        elif isinstance(kind, String):  # Text too
            names.append("text")
        else:
            return None
    return names


_COPY_TYPES = _copy_types()


def _store_anchors(conn, db_insert, stream_id: str, good, received_ns: int) -> dict[str, tuple[int, int]]:
    """Insert this batch's clock anchors; returns boot_id -> first (mono_ns, server_ns)."""
    rows, first = [], {}
    for seq, _payload_text, record in good:
        if record.kind != "clock_anchor":
            continue
        server_ns = _anchor_time_ns(record)
        if not _plausible(server_ns, received_ns):  # the server cannot have said a time it has not reached
            continue
        rows.append({"stream_id": stream_id, "seq": seq, "boot_id": record.boot_id,
                     "mono_ns": record.mono_ns, "server_time_ns": server_ns})
        first.setdefault(record.boot_id, (record.mono_ns, server_ns))
    if rows:
        # Idempotent: a server restored from a backup may already hold them.
        conn.execute(db_insert(clock_anchors).on_conflict_do_nothing(), rows)
    return first


def _anchors_for(conn, stream_id: str, boot_ids: set[str]) -> dict[str, list[tuple[int, int]]]:
    """The uploading stream's own anchors only: a boot id is the kiosk's word,
    and another gate (of another site) could send an anchor carrying it."""
    if not boot_ids:
        return {}
    found: dict[str, list[tuple[int, int]]] = {}
    query = select(clock_anchors.c.boot_id, clock_anchors.c.mono_ns, clock_anchors.c.server_time_ns).where(
        clock_anchors.c.stream_id == stream_id, clock_anchors.c.boot_id.in_(sorted(boot_ids))
    )
    for boot_id, mono, server_ns in conn.execute(query):
        found.setdefault(boot_id, []).append((mono, server_ns))
    return found


def _plausible(time_ns: int, received_ns: int) -> bool:
    return EARLIEST_EVENT_NS <= time_ns <= received_ns + TIME_TOLERANCE_NS


def _event_time(record: EventRecord, anchors: dict[str, list[tuple[int, int]]],
                received_ns: int) -> tuple[int, str]:
    if record.clock_synced and _plausible(record.wall_time, received_ns):
        return record.wall_time, "clock"
    candidates = anchors.get(record.boot_id)
    if candidates:
        # The nearest anchor in monotonic time has the least drift between them.
        mono, server_ns = min(candidates, key=lambda a: abs(a[0] - record.mono_ns))
        placed = server_ns - (mono - record.mono_ns)
        if _plausible(placed, received_ns):
            return placed, "anchor"
    if record.clock_synced:  # it said synced, and it was not: the receipt is the best we know
        return received_ns, "receipt"
    # Corrected when an anchor of its boot arrives; meanwhile never a time past the receipt.
    return (record.wall_time if _plausible(record.wall_time, received_ns) else received_ns), "unknown"
