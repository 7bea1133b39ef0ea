"""The kiosk's side of sync: upload the journal, download the registry.

`SyncWorker` runs in a background thread and never blocks the gate loop: the
loop only calls `trigger()` (after a fever or a refusal) and `status()` (for
the guard screen). One sync pass (`sync_once`, also used by `checkpoint sync
now`) does:

1. upload: unacked events in batches of at most 500, one batch in flight, from
   the journal's first unacked seq. The server commits before it replies, so
   a reply lost on the way only costs a re-send (the server skips seq <=
   acked_through). A 409 means the server has less than we thought (restored
   from a backup): rewind to its watermark and re-send.
2. registry: read the change feed from the stored cursor; apply each page and
   its cursor in one journal transaction. 304 means nothing new; 410 means the
   cursor is too old, so read the paged snapshot (first page replaces the
   copy).
3. clock: the server's time on each response raises the journal's trusted-time
   watermark and is logged as a clock anchor now and then (at most once a
   minute while the kiosk clock is unsynced, hourly once it is synced), so the
   server can correct the times of events recorded before NTP.

Failures back off with full jitter (2 s base, 5 min cap) and honour
Retry-After. An outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

from gateway.config import Settings, read_token
from gateway.journal import Journal, JournalWriteError
from gateway.staleness import journal_staleness
from sync.protocol import (
    API_PREFIX,
    EVENT_FIELDS,
    MAX_BATCH_EVENTS,
    MAX_REGISTRY_PAGE,
    SERVER_TIME_HEADER,
    SNAPSHOT_IN_PROGRESS,
    DivergedReply,
    EventResult,
    GapReply,
    RegistryPage,
    SnapshotPage,
    UploadReply,
    etag_for,
    event_for_wire,
)

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
ANCHOR_EVERY_UNSYNCED_S = 60.0
ANCHOR_EVERY_SYNCED_S = 3600.0
# The kiosk clock this far from the server's: anchor again (subject to the minute).
ANCHOR_SKEW_S = 5.0
MAX_BATCHES_PER_PASS = 2000
ANCHOR_META = "sync_last_anchor"
# Journal columns stored as JSON text and as 0/1 (see gateway.journal._decode).
_JSON_FIELDS = ("reasons", "detail")
_FLAG_FIELDS = ("flagged", "clock_synced")


class SyncError(Exception):
    """A sync pass failed. `retry_after` is the server's Retry-After, if any."""

    retry_after: float | None = None


class ServerUnavailable(SyncError):
    """Network error, timeout, or a 5xx: retry later."""


class RateLimited(SyncError):
    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class AuthRefused(SyncError):
    """401/403: the token is wrong or revoked, or the gate asked for another site."""


class ProtocolError(SyncError):
    """The server refused the request itself: a bug or a version mismatch."""


@functools.cache
def _adapter(model) -> TypeAdapter:
    return TypeAdapter(model)  # built once per reply type: building one costs milliseconds


def _retry_after(resp: httpx.Response) -> float:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return BACKOFF_BASE_S


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else None


class SyncClient:
    """One kiosk's HTTP conversation with the registry. Not thread-safe by
    itself; `SyncWorker` serialises passes."""

    def __init__(self, journal: Journal, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 timeout_s: float | None = None, compress: bool = True):
        if settings.sync is None:
            raise ValueError("this config has no [sync] section: nothing to sync with")
        # Short by default ([sync] request_timeout_s): a stalled server costs a
        # retry, not a wait, and the watermark makes the re-send harmless.
        timeout_s = settings.sync.request_timeout_s if timeout_s is None else timeout_s
        self.journal = journal
        self.site = settings.gate.site
        self.compress = compress
        self._http = httpx.Client(
            base_url=settings.sync.server.rstrip("/"),
            headers={"Authorization": f"Bearer {read_token(settings.sync)}",
                     "User-Agent": f"gate-checkpoint/{settings.gate.id}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
        )
        self.last_server_time: datetime | None = None
        self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-prefetch")

    def close(self) -> None:
        self._http.close()
        self._prefetch.shutdown(wait=True)

    # --- HTTP ------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            resp = self._http.request(method, API_PREFIX + path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnavailable(f"{method} {path}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        status = resp.status_code
        if status in (429, 503):
            raise RateLimited(f"{method} {path}: {status}, retry after {_retry_after(resp)} s", _retry_after(resp))
        if status >= 500:
            raise ServerUnavailable(f"{method} {path}: server error {status}")
        if status in (401, 403):
            raise AuthRefused(f"{method} {path}: {status} {resp.text[:200]}")
        if status >= 400 and status not in (409, 410):
            raise ProtocolError(f"{method} {path}: {status} {resp.text[:300]}")
        self._note_server_time(resp)
        return resp

    @staticmethod
    def _parse(model, resp: httpx.Response):
        """The reply as its `sync.protocol` model: the one shape both ends use."""
        try:
            return _adapter(model).validate_json(resp.content)
        except ValidationError as exc:
            raise ServerUnavailable(f"unexpected reply ({resp.status_code}): {str(exc)[:300]}") from exc

    def _note_server_time(self, resp: httpx.Response) -> None:
        server_time = _parse_time(resp.headers.get(SERVER_TIME_HEADER))
        if server_time is None:
            return
        self.last_server_time = server_time
        reading = self.journal.clock.read()
        skewed = abs((reading.wall - server_time).total_seconds()) > ANCHOR_SKEW_S
        every = ANCHOR_EVERY_SYNCED_S if reading.synced and not skewed else ANCHOR_EVERY_UNSYNCED_S
        # Remembered in the journal (boot id + monotonic time) so that repeated
        # `sync now` runs do not log an anchor each.
        last = (self.journal.get_meta(ANCHOR_META) or ":").split(":")
        if last[0] == reading.boot_id and last[1].isdigit() and \
                0 <= reading.mono_ns - int(last[1]) < every * 1e9:
            return
        self.journal.record_server_time(server_time)
        self.journal.set_meta(ANCHOR_META, f"{reading.boot_id}:{reading.mono_ns}")

    # --- upload ----------------------------------------------------------------

    def _encode(self, rows: list[tuple]) -> tuple[int, int, bytes] | None:
        """The contiguous prefix of `rows` (Journal.stored_rows of EVENT_FIELDS)
        as (first_seq, last_seq, request body)."""
        if not rows:
            return None
        first = rows[0][0]  # EVENT_FIELDS[0] is seq
        count = 1
        while count < len(rows) and rows[count][0] == first + count:
            count += 1
        # The hot loop of a backlog drain: build each wire dict straight from
        # the stored row. The JSON columns hold the same few texts ('["ok"]',
        # '{}') over and over, so each distinct text is parsed once per batch.
        parsed: dict[str, Any] = {}
        events = []
        for row in rows[:count]:
            event = dict(zip(EVENT_FIELDS, row))
            for key in _JSON_FIELDS:
                text = event[key]
                if text is not None:
                    value = parsed.get(text)
                    if value is None:
                        value = parsed[text] = json.loads(text)
                    event[key] = value
            for key in _FLAG_FIELDS:
                if event[key] is not None:
                    event[key] = bool(event[key])
            events.append(event)
        offset = self.journal.stream_offset  # non-zero after a rotation: the wire seq starts at 1 again
        if offset:
            for event in events:
                event["seq"] -= offset
        body = to_json({"first_seq": first - offset, "events": events}, fallback=str)
        if self.compress:
            body = gzip.compress(body, compresslevel=1)
        return first, first + count - 1, body

    def _unacked(self) -> list[tuple]:
        return self.journal.stored_rows(EVENT_FIELDS, limit=MAX_BATCH_EVENTS)

    def _batch_after(self, seq: int) -> tuple[int, int, bytes] | None:
        return self._encode(self.journal.stored_rows(EVENT_FIELDS, after_seq=seq, limit=MAX_BATCH_EVENTS))

    def upload_pending(self) -> tuple[int, int | None]:
        """Upload until nothing is pending. Returns (events acked now, acked_through).

        One batch is in flight at a time; while it is, the next one is read
        and encoded on a helper thread (used only if the reply acks the whole
        batch), which hides the kiosk's share of the work behind the network.
        """
        uploaded, acked_through = 0, None
        headers = {"Content-Type": "application/json"}
        if self.compress:
            headers["Content-Encoding"] = "gzip"
        batch = self._encode(self._unacked())
        for _ in range(MAX_BATCHES_PER_PASS):
            if batch is None:
                break
            first, last, body = batch
            upcoming = self._prefetch.submit(self._batch_after, last)
            try:
                resp = self._request("POST", f"/streams/{self.journal.stream_id}/events",
                                     content=body, headers=headers)
                reply = self._upload_reply(resp)
            finally:
                speculative = upcoming.result()
            if isinstance(reply, DivergedReply):
                self._diverged(reply, first, last)
                batch = self._encode(self._unacked())
                continue
            acked = reply.acked_through + self.journal.stream_offset  # back to local seqs
            acked_through = acked
            if isinstance(reply, GapReply) or acked < first - 1:
                self._rewind(acked)
                batch = self._encode(self._unacked())
                continue
            if acked > self.journal.last_seq():
                log.error("the server has seq %d of stream %s but this journal ends at %d",
                          acked, self.journal.stream_id, self.journal.last_seq())
            uploaded += self.journal.mark_acked(acked)
            self._note_time_refused(reply.results)
            quarantined = [r for r in reply.results if r.status == "quarantined"]
            if quarantined:
                log.warning("server quarantined %d event(s), e.g. seq %s: %s",
                            len(quarantined), quarantined[0].seq, quarantined[0].error)
            batch = speculative if acked == last else self._encode(self._unacked())
        return uploaded, acked_through

    def _upload_reply(self, resp: httpx.Response) -> UploadReply | GapReply | DivergedReply:
        if resp.status_code == 409:
            return self._parse(GapReply | DivergedReply, resp)
        return self._parse(UploadReply, resp)

    def _note_time_refused(self, results: list[EventResult]) -> None:
        """The server refused this kiosk's time for some events: the guard screen says so."""
        refused = sum(1 for r in results if r.time_refused)
        if refused:
            self.journal.note_time_refused(f"the server refused the kiosk's time for {refused} event(s)")
        elif results and self.journal.get_meta("server_refused_time"):
            self.journal.set_meta("server_refused_time", "")

    def _diverged(self, reply: DivergedReply, first: int, last: int) -> None:
        """The server holds other events under seqs we sent (this journal was
        restored from an older copy): send ours from there on a new stream."""
        at = reply.diverged_at
        local = at + self.journal.stream_offset
        if not first <= local <= last:
            raise ProtocolError(f"stream_diverged reply without a usable diverged_at ({at!r})")
        self.journal.rotate_stream(local, diverged_at=at)

    def _rewind(self, acked: int) -> None:
        """The server has less than we marked as acked: send again from acked + 1."""
        reopened = self.journal.mark_unacked_after(acked)
        if reopened:
            log.warning("server watermark is %d; re-sending %d event(s) of stream %s",
                        acked, reopened, self.journal.stream_id)
        pending = self.journal.pending(1)
        if pending and pending[0]["seq"] > acked + 1:
            raise ProtocolError(
                f"the server needs stream {self.journal.stream_id} from seq {acked + 1}, "
                f"but this journal only keeps seq {pending[0]['seq']} on"
            )

    def upload_aside(self) -> int:
        """Send what journals moved aside as corrupt still hold, on their own streams.

        Each file is done once: then `aside_uploaded:<name>` in the journal's
        meta and a `journal_aside_uploaded` event say what was sent.
        """
        from sync.aside import aside_files

        total = 0
        for path in aside_files(self.journal.path):
            key = f"aside_uploaded:{path.name}"
            if self.journal.get_meta(key) is None:
                total += self._upload_aside(path, key)
        return total

    def _upload_aside(self, path, key: str) -> int:
        from sync.aside import read_aside

        headers = {"Content-Type": "application/json"}
        sent, unreadable, after, error = 0, 0, None, None
        for _ in range(MAX_BATCHES_PER_PASS):
            salvage = read_aside(path, after_seq=after, limit=MAX_BATCH_EVENTS)
            if salvage.error or salvage.stream_id is None:
                error = salvage.error or "no stream id"
                break
            if not salvage.rows:
                break
            offset = salvage.stream_offset
            wire = [event_for_wire(e) for e in salvage.rows]
            for event in wire:
                event["seq"] -= offset
            body = to_json({"first_seq": wire[0]["seq"], "events": wire}, fallback=str)
            resp = self._request("POST", f"/streams/{salvage.stream_id}/events", content=body, headers=headers)
            reply = self._upload_reply(resp)
            if isinstance(reply, DivergedReply):
                error = "the server holds other events under this file's seqs"
                break
            acked = reply.acked_through
            if isinstance(reply, UploadReply):
                sent += len(wire)
                unreadable += sum(1 for e in salvage.rows if e["kind"] == "journal_unreadable")
            after = acked + offset
        summary = {"file": path.name, "stream": salvage.stream_id, "sent": sent, "unreadable": unreadable,
                   "error": error}
        log.warning("journal moved aside %s: sent %d event(s) of stream %s (%d unreadable)%s", path.name, sent,
                    salvage.stream_id, unreadable, f"; {error}" if error else "")
        with self.journal._write():
            self.journal.set_meta(key, json.dumps(summary))
            self.journal.append({"kind": "journal_aside_uploaded", "detail": summary})
        return sent

    # --- registry ----------------------------------------------------------------

    def pull_registry(self) -> str | None:
        """Bring the registry copy up to date; returns the stored cursor."""
        cursor = self.journal.registry_cursor()
        if cursor == SNAPSHOT_IN_PROGRESS:
            return self._snapshot()
        since = int(cursor) if cursor and cursor.isdigit() else 0
        path = f"/sites/{self.site}/registry"
        for _ in range(10_000):
            headers = {"If-None-Match": etag_for(since)} if cursor is not None else {}
            resp = self._request("GET", path, params={"since": since, "limit": MAX_REGISTRY_PAGE}, headers=headers)
            if resp.status_code == 304:
                self.journal.touch_registry()
                return cursor
            if resp.status_code == 410:
                log.info("registry cursor %s has expired on the server; reading a snapshot", cursor)
                return self._snapshot()
            page = self._parse(RegistryPage, resp)
            cursor = page.next_cursor
            self.journal.apply_registry_page([c.model_dump() for c in page.changes], cursor)
            since = int(cursor)
            if page.up_to_date:
                break
        return cursor

    def _snapshot(self) -> str | None:
        path = f"/sites/{self.site}/registry/snapshot"
        after, start_cursor = None, None
        while True:
            params = {"limit": MAX_REGISTRY_PAGE}
            if after:
                params["after"] = after
            page = self._parse(SnapshotPage, self._request("GET", path, params=params))
            first = start_cursor is None
            if first:
                # The feed head when the snapshot began: a change made while
                # later pages are read may sit on a page already read, so the
                # deltas must resume from here, not from a later page's head.
                start_cursor = page.cursor
            last = page.next_after is None
            # Until the last page the copy is incomplete: the marker makes the
            # next pass start the snapshot over instead of trusting it.
            self.journal.apply_registry_page(
                [c.model_dump() for c in page.changes], start_cursor if last else SNAPSHOT_IN_PROGRESS, replace=first
            )
            if last:
                break
            after = page.next_after
        return self.pull_registry()

    # --- one pass ------------------------------------------------------------------

    def sync_once(self) -> dict[str, Any]:
        uploaded, acked = self.upload_pending()
        aside = self.upload_aside()
        cursor = self.pull_registry()
        # The pass may have logged a clock anchor: send it too.
        more, later = self.upload_pending()
        return {
            "uploaded": uploaded + more,
            "aside_uploaded": aside,
            "acked_through": later if later is not None else acked,
            "pending": self.journal.pending_count(),
            "registry_cursor": cursor,
        }


class SyncWorker:
    """Background sync for the running kiosk.

        worker = SyncWorker(journal, settings)
        worker.start()
        worker.trigger()          # a fever or a refusal: upload now
        worker.status()           # for the guard screen
        worker.stop()
    """

    def __init__(self, journal: Journal, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 rng: random.Random | None = None, timeout_s: float | None = None,
                 startup_jitter_s: float | None = None):
        self.journal = journal
        self.settings = settings
        self.client = SyncClient(journal, settings, transport=transport, timeout_s=timeout_s)
        self.interval_s = settings.sync.interval_s
        self.staleness_limit_s = settings.sync.staleness_limit_h * 3600
        self._rng = rng or random.Random()
        self._startup_jitter_s = min(self.interval_s, 10.0) if startup_jitter_s is None else startup_jitter_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self.failures = 0
        self.last_ok: datetime | None = None
        self.last_error: str | None = None
        self.outage_since: datetime | None = None
        self.last_summary: dict | None = None

    # --- control -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sync-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self.client.close()

    def trigger(self) -> None:
        """Upload as soon as possible (not during a backoff: that would undo it)."""
        self._wake.set()

    # --- one pass --------------------------------------------------------------------

    def sync_once(self) -> dict[str, Any]:
        """One full pass, serialised with the background thread. Raises SyncError."""
        with self._pass_lock:
            try:
                summary = self.client.sync_once()
            except SyncError as exc:
                self._failed(exc)
                raise
            except JournalWriteError as exc:
                self._failed(exc)
                raise SyncError(str(exc)) from exc
            self._succeeded(summary)
            return summary

    def _failed(self, exc: Exception) -> None:
        with self._state_lock:
            self.failures += 1
            self.last_error = str(exc)
            if self.failures == 1:
                self.outage_since = datetime.now(timezone.utc)
                level = logging.ERROR if isinstance(exc, (AuthRefused, ProtocolError)) else logging.WARNING
                log.log(level, "sync failing: %s (retrying with backoff)", exc)

    def _succeeded(self, summary: dict) -> None:
        with self._state_lock:
            if self.failures:
                seconds = (datetime.now(timezone.utc) - self.outage_since).total_seconds()
                log.info("sync recovered after %d failed attempt(s) over %.0f s", self.failures, seconds)
            self.failures = 0
            self.outage_since = None
            self.last_error = None
            self.last_ok = datetime.now(timezone.utc)
            self.last_summary = summary

    def backoff_delay(self, exc: SyncError) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(failures-1))), at least Retry-After."""
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, self.failures - 1))
        delay = self._rng.uniform(0, ceiling)
        if exc.retry_after:
            delay = max(delay, min(exc.retry_after, BACKOFF_CAP_S))
        return delay

    def _run(self) -> None:
        delay = self._rng.uniform(0, self._startup_jitter_s)
        backing_off = False
        while True:
            if backing_off:
                if self._stop.wait(delay):
                    return
            else:
                self._wake.wait(delay)
                if self._stop.is_set():
                    return
            self._wake.clear()
            try:
                self.sync_once()
            except SyncError as exc:
                backing_off = True
                delay = self.backoff_delay(exc)
                continue
            backing_off = False
            delay = self.interval_s * self._rng.uniform(0.8, 1.2)

    # --- the guard screen's view ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        synced_at = self.journal.registry_synced_at()
        cursor = self.journal.registry_cursor()
        age = None
        if synced_at is not None:
            age = max(0.0, (self.journal.trusted_now() - synced_at).total_seconds())
        reason = journal_staleness(self.journal, self.settings.sync.staleness_limit_h)  # the rule decide uses
        degraded = reason is not None
        with self._state_lock:
            return {
                "last_ok": self.last_ok.isoformat() if self.last_ok else None,
                "last_error": self.last_error,
                "failures": self.failures,
                "outage_since": self.outage_since.isoformat() if self.outage_since else None,
                "pending": self.journal.pending_count(),
                "registry_cursor": cursor,
                "registry_age_s": age,
                "degraded": degraded,
                "degraded_reason": reason,
            }
