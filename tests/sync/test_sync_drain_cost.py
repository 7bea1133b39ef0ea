"""What a backlog drain costs, pinned as behaviour (the speed itself is
measured by bench/sync.py): the server validates a batch inside pydantic-core,
without a Python call per field; the kiosk keeps two batches in flight and
stays exactly-once when the second overtakes the first."""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from datetime import datetime, timezone

import httpx

from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import PIPELINE_DEPTH, SyncClient
from sync.protocol import SERVER_TIME_HEADER, ValidUploadBatch
from tests.sync.sync_harness import decision, write_kiosk_config
from tests.sync.test_sync_server import ev


def python_calls(fn) -> int:
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_validating_a_batch_calls_python_at_most_once_per_event():
    events = [ev(seq) for seq in range(1, 501)]
    body = json.dumps({"first_seq": 1, "events": events}).encode()
    batch = ValidUploadBatch.model_validate_json(body)  # valid: the fast path applies
    assert len(batch.events) == 500
    # Was 14 a event (a Python check of each text and number field); the
    # free-form `detail` is still walked in Python for NUL.
    assert python_calls(lambda: ValidUploadBatch.model_validate_json(body)) <= 500 + 10


# --- the kiosk: batches in flight --------------------------------------------------------


class WatermarkServer:
    """The upload endpoint's contract at the network edge (an httpx transport):
    a batch right after the watermark is stored, one at or below it is a
    duplicate, one past it is a 409 gap. `hold_first` keeps the first batch
    sent ahead back until a later one has been answered, so the later batch
    overtakes it."""

    def __init__(self, delay_s: float = 0.02, hold_first: bool = False):
        self.delay_s = delay_s
        self.acked = 0
        self.stored: list[int] = []
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = self.requests = 0
        self.gaps = 0
        self.hold_first = hold_first
        self.overtaken = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        batch = json.loads(gzip.decompress(request.content))
        with self.lock:
            self.requests += 1
            number = self.requests
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            if self.hold_first and number == 2:
                self.overtaken.wait(5)
            with self.lock:
                first, events = batch["first_seq"], batch["events"]
                if first > self.acked + 1:
                    self.gaps += 1
                    if self.hold_first:
                        self.overtaken.set()
                    return self._reply(409, {"error": "gap", "detail": "gap", "acked_through": self.acked})
                results = []
                for e in events:
                    if e["seq"] <= self.acked:
                        results.append({"seq": e["seq"], "status": "duplicate"})
                    else:
                        self.stored.append(e["seq"])
                        results.append({"seq": e["seq"], "status": "accepted"})
                self.acked = max(self.acked, first + len(events) - 1)
                return self._reply(200, {"acked_through": self.acked, "results": results})
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def _reply(status: int, body: dict) -> httpx.Response:
        now = datetime.now(timezone.utc).isoformat()
        return httpx.Response(status, json={**body, "server_time": now}, headers={SERVER_TIME_HEADER: now})


def drain(tmp_path, server: WatermarkServer, events: int) -> Journal:
    settings = load_config(write_kiosk_config(tmp_path, "http://registry.test", "token"))
    journal = Journal.open(settings.journal.path, clock=FakeClock(datetime.now(timezone.utc), synced=True))
    with journal._write():
        for n in range(events):
            journal.append(decision(n))
    client = SyncClient(journal, settings, transport=httpx.MockTransport(server))
    try:
        while journal.pending_count():
            client.upload_pending()
    finally:
        client.close()
    return journal


def test_a_drain_keeps_two_batches_in_flight_and_stores_each_event_once(tmp_path):
    server = WatermarkServer()
    journal = drain(tmp_path, server, 3000)
    assert server.stored == list(range(1, journal.last_seq() + 1))  # every event once, in seq order
    assert server.most_in_flight == PIPELINE_DEPTH == 2  # was 1: the kiosk waited for each reply
    assert server.gaps == 0
    journal.close()


def test_a_batch_that_overtakes_the_one_before_it_is_sent_again_not_rewound(tmp_path, caplog):
    server = WatermarkServer(hold_first=True)
    journal = drain(tmp_path, server, 3000)
    # The batch that arrived first was refused, and so was the one sent
    # behind it before the kiosk saw that; both went again.
    assert server.gaps == 2
    assert server.requests - server.gaps <= -(-journal.last_seq() // 500) + 1  # a clock anchor may add one
    assert server.stored == list(range(1, journal.last_seq() + 1))
    # Not taken for a server that lost data: nothing acked was re-opened.
    assert "re-sending" not in caplog.text
    journal.close()
