"""The uploader's fast encoding sends exactly what the journal's events say.

SyncClient builds each batch straight from the stored rows (Journal.stored_rows)
instead of decoding every event and encoding it again; the request body must
be byte for byte the one the plain path gives: event_for_wire() of each of
Journal.events(), encoded with pydantic-core.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import pytest
from pydantic_core import to_json

from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal import Journal
from sync.client import SyncClient
from sync.protocol import EVENT_FIELDS, MAX_BATCH_EVENTS, event_for_wire
from tests.sync.sync_harness import decision, write_kiosk_config


@pytest.fixture
def client_and_journal(tmp_path):
    settings = load_config(write_kiosk_config(tmp_path, "http://127.0.0.1:9", "token"))
    journal = Journal.open(settings.journal.path, clock=FakeClock(datetime(2026, 2, 1, 7, 0, tzinfo=timezone.utc), synced=False))
    client = SyncClient(journal, settings)
    yield client, journal
    client.close()
    journal.close()


def plain_body(events: list[dict]) -> bytes:
    return to_json({"first_seq": events[0]["seq"], "events": [event_for_wire(e) for e in events]}, fallback=str)


def test_the_fast_encoding_matches_the_plain_one_byte_for_byte(client_and_journal):
    client, journal = client_and_journal
    for n in range(1, 40):
        journal.append(decision(n))
    # Awkward values: floats that need 17 digits, None, non-ASCII text, more
    # reasons, a fever, an empty detail, a clock anchor with nested detail.
    journal.append(decision(97, object_c=36.123456789012345, ambient_c=0.1 + 0.2, body_c=None,
                            operator="门卫 7", reasons=["fever", "registry_stale"], detail={}))
    journal.append({"kind": "no_credential", "object_c": -0.0, "flagged": False, "reasons": [], "detail": None})
    journal.record_server_time(datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc))
    first, last, body = client._encode(client._unacked())
    assert (first, last) == (1, journal.last_seq())
    assert gzip.decompress(body) == plain_body(journal.pending(MAX_BATCH_EVENTS))

    # The prefetch path (events after a seq, acked or not) gives the same.
    journal.mark_acked(10)
    _, _, after = client._batch_after(5)
    assert gzip.decompress(after) == plain_body(journal.events(after_seq=5))


def test_a_batch_stops_at_a_hole_in_the_seqs(client_and_journal):
    client, journal = client_and_journal
    rows = [(seq, *([None] * (len(EVENT_FIELDS) - 1))) for seq in (3, 4, 5, 7, 8)]
    first, last, _ = client._encode(rows)
    assert (first, last) == (3, 5)


def test_stored_rows_refuses_unknown_columns(client_and_journal):
    _, journal = client_and_journal
    with pytest.raises(ValueError, match="unknown event columns"):
        journal.stored_rows(["seq", "1; DROP TABLE events"])


def test_every_server_event_column_has_a_binary_copy_type():
    # PostgreSQL ingest COPYs in binary when it knows each column's type; a
    # new column of an unmapped type would silently fall back to text COPY.
    from sync.server.ingest import _COPY_TYPES, EVENT_COLUMNS

    assert _COPY_TYPES is not None
    assert len(_COPY_TYPES) == len(EVENT_COLUMNS)
