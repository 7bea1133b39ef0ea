import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from gateway.clock import FakeClock
from gateway.journal import (
    DECISION_FIELDS,
    MIGRATIONS,
    Journal,
    JournalWriteError,
    decision_record,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def journal(tmp_path, clock):
    j = Journal.open(tmp_path / "journal.db", clock=clock, retention_days=14)
    yield j
    j.close()


def decision(**extra):
    return {
        "kind": "decision",
        "gate": "east-1",
        "direction": "in",
        "pass_id": "p1",
        "person_id": "r-101",
        "object_c": 36.1,
        "ambient_c": 21.0,
        "offset_c": 0.5,
        "body_c": 36.6,
        "threshold_c": 37.3,
        "decision": "admit",
        "flagged": False,
        "reasons": ["ok"],
        **extra,
    }


def test_schema_has_contract_columns_and_version(journal):
    conn = sqlite3.connect(journal.path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    contract = set(DECISION_FIELDS) | {
        "stream_id", "boot_id", "mono_ns", "wall_time", "clock_synced", "operator", "acked", "offset_c",
    }
    assert contract <= columns
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "meta", "visitors", "shifts", "disinfections", "staff_temperatures", "registry"} <= tables


def test_synchronous_full_on_every_connection(journal):
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reopen_keeps_stream_and_does_not_remigrate(tmp_path, clock):
    j = Journal.open(tmp_path / "j.db", clock=clock)
    stream = j.stream_id
    j.append(decision())
    j.close()
    j = Journal.open(tmp_path / "j.db", clock=clock)
    assert j.stream_id == stream
    assert j.append(decision())["seq"] == 2


def test_append_stores_clock_facts_and_decision_record(journal, clock):
    clock.synced = False
    event = journal.append(decision(operator="guard-7"))
    assert event["seq"] == 1
    assert event["stream_id"] == journal.stream_id
    assert event["boot_id"] == "fake-boot"
    assert event["mono_ns"] == clock.mono_ns
    assert event["wall_time"] == int(T0.timestamp()) * 10**9
    assert event["clock_synced"] is False
    assert event["acked"] is False
    (stored,) = journal.events()
    assert stored == event
    record = decision_record(stored)
    assert list(record) == list(DECISION_FIELDS)
    assert record["reasons"] == ["ok"] and record["flagged"] is False


def test_unknown_field_is_refused(journal):
    with pytest.raises(ValueError, match="unknown event fields"):
        journal.append({"kind": "decision", "temperature": 40})


def test_seq_is_contiguous_under_concurrent_writers(journal):
    def writer():
        for _ in range(50):
            journal.append(decision())

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e["seq"] for e in journal.events()] == list(range(1, 201))


def test_pending_and_acks(journal):
    for _ in range(5):
        journal.append(decision())
    assert [e["seq"] for e in journal.pending(limit=3)] == [1, 2, 3]
    assert journal.mark_acked(3) == 3
    assert [e["seq"] for e in journal.pending()] == [4, 5]
    # The server was restored from a backup and only knows up to 2: resend.
    assert journal.mark_unacked_after(2) == 1
    assert [e["seq"] for e in journal.pending()] == [3, 4, 5]


def test_corrupt_file_is_moved_aside_and_a_new_stream_starts(tmp_path, clock):
    path = tmp_path / "journal.db"
    garbage = b"this is not a database" * 300
    path.write_bytes(garbage)
    j = Journal.open(path, clock=clock)
    (moved,) = list(tmp_path.glob("journal.db.corrupt-*"))
    assert moved.read_bytes() == garbage  # kept, never overwritten
    (incident,) = j.events()
    assert incident["kind"] == "journal_corrupt"
    assert incident["detail"]["moved_to"] == str(moved)
    assert j.append(decision())["seq"] == 2


def test_damaged_pages_are_caught_by_quick_check(tmp_path, clock):
    path = tmp_path / "journal.db"
    j = Journal.open(path, clock=clock)
    old_stream = j.stream_id
    for i in range(300):
        j.append(decision(pass_id=f"p{i}", detail={"pad": "x" * 200}))
    j.checkpoint_wal()
    j.close()
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096 * 3):
        data[offset : offset + 64] = b"\xff" * 64  # scribble over page headers
    path.write_bytes(bytes(data))
    j = Journal.open(path, clock=clock)
    assert j.stream_id != old_stream
    assert [e["kind"] for e in j.events()] == ["journal_corrupt"]
    moved = [p for p in tmp_path.glob("journal.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(moved) == 1


def test_retention_purges_only_old_acked_rows(journal, clock):
    journal.append(decision())  # 1: old, acked -> purged
    journal.add_ledger_entry("visitors", {"name": "李四"}, operator="g", gate="east-1")  # 2: old, acked
    journal.append(decision())  # 3: old, unacked -> kept
    clock.advance(20 * 86400)
    journal.append(decision())  # 4: new, acked -> kept (young)
    journal.mark_acked(2)
    journal._conn.execute("UPDATE events SET acked = 1 WHERE seq = 4")
    assert journal.purge() == 2
    assert [e["seq"] for e in journal.events()] == [3, 4]
    assert journal.ledger("visitors") == []  # the visitor's health data went with its event
    assert journal.append(decision())["seq"] == 5


def test_retention_never_purges_the_newest_row(journal, clock):
    journal.append(decision())
    journal.mark_acked(1)
    clock.advance(30 * 86400)
    assert journal.purge() == 0
    assert journal.append(decision())["seq"] == 2  # seq continues, never reused


def test_watermark_holds_when_the_clock_goes_back(journal, clock):
    journal.append(decision())  # synced clock at T0 raises the watermark
    clock.wall = datetime(1970, 1, 1, tzinfo=timezone.utc)  # booted with no RTC
    clock.synced = False
    assert journal.trusted_now() == T0
    journal.append(decision())  # unsynced events do not move the watermark
    assert journal.watermark() == T0


def test_server_time_raises_watermark_and_logs_an_anchor(journal, clock):
    later = T0 + timedelta(days=3)
    anchor = journal.record_server_time(later)
    assert anchor["kind"] == "clock_anchor"
    assert anchor["detail"]["server_time"] == later.isoformat()
    journal.record_server_time(later - timedelta(seconds=30))  # a slow, older answer never lowers it
    assert journal.watermark() == later
    assert journal.trusted_now() == later


def test_full_disk_raises_one_clear_error_and_loses_nothing(journal):
    journal.append(decision())
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(JournalWriteError, match="disk is full"):
        for i in range(1000):
            journal.append(decision(detail={"pad": "x" * 2000}))
    written = journal.last_seq()
    journal._conn.execute("PRAGMA max_page_count = 1000000")
    assert journal.append(decision())["seq"] == written + 1
    assert [e["seq"] for e in journal.events()] == list(range(1, written + 2))


def test_read_only_filesystem_is_a_write_error(journal):
    journal._conn.execute("PRAGMA query_only = 1")
    with pytest.raises(JournalWriteError, match="read-only"):
        journal.append(decision())


def test_registry_page_and_cursor_apply_atomically(journal):
    good = {"entity": "person", "entity_id": "r-101", "op": "upsert", "payload": {"name": "王五"}, "change_seq": 1}
    journal.apply_registry_page([good], "c1")
    broken = {"entity": "person", "entity_id": "r-102", "op": "upsert", "payload": {}}  # no change_seq
    with pytest.raises(KeyError):
        journal.apply_registry_page(
            [{**good, "payload": {"name": "changed"}, "change_seq": 2}, broken], "c2"
        )
    assert journal.registry_get("person", "r-101") == {"name": "王五"}
    assert journal.registry_cursor() == "c1"


def test_registry_ignores_stale_and_redelivered_changes(journal):
    change = {"entity": "revocation", "entity_id": "p9", "op": "upsert", "payload": {"reason": "lost"}, "change_seq": 5}
    journal.apply_registry_page([change], "5")
    journal.apply_registry_page([{**change, "payload": {"reason": "old"}, "change_seq": 3}], "5")
    assert journal.registry_get("revocation", "p9") == {"reason": "lost"}
    journal.apply_registry_page([{**change, "op": "delete", "change_seq": 6}], "6")
    assert journal.registry_get("revocation", "p9") is None
    journal.apply_registry_page([{**change, "entity_id": "p1", "change_seq": 7}], "s1", replace=True)
    assert set(journal.registry_all("revocation")) == {"p1"}


def test_ledger_entry_is_also_an_event(journal):
    row = journal.add_ledger_entry(
        "staff_temperatures", {"person": "guard-7", "period": "morning", "temperature_c": 36.4},
        operator="guard-7", gate="east-1",
    )
    (event,) = journal.events()
    assert event["kind"] == "ledger.staff_temperatures"
    assert event["detail"]["temperature_c"] == 36.4
    assert row["event_seq"] == event["seq"]
    with pytest.raises(ValueError, match="unknown ledger"):
        journal.add_ledger_entry("events", {}, operator="x", gate="y")


def test_interrupted_decision_is_logged_after_a_crash(tmp_path, clock):
    j = Journal.open(tmp_path / "j.db", clock=clock)
    done = j.append(decision(), in_flight=True)
    j.actuated(done["seq"])
    left = j.append(decision(), in_flight=True)
    j.close()  # "crash" before actuated()
    j = Journal.open(tmp_path / "j.db", clock=clock)
    event = j.recover_interrupted()
    assert event["kind"] == "interrupted" and event["detail"] == {"seq": left["seq"]}
    assert j.recover_interrupted() is None


def test_counts_for_day(journal, clock):
    journal.append(decision())
    journal.append(decision(decision="deny", flagged=True, reasons=["fever"]))
    journal.append({"kind": "fever_case.opened", "flagged": True, "detail": {"case_id": "c1"}})
    journal.append(decision(decision="deny", flagged=True, reasons=["fever", "fever_case_open"]))  # re-measured
    journal.append({"kind": "fever_case.reading", "flagged": True, "detail": {"case_id": "c1"}})
    journal.append(decision(decision="deny", reasons=["expired"]))
    clock.advance(86400)
    journal.append(decision())
    day = T0.replace(hour=0)
    # Fevers are counted as cases (people), not flagged readings.
    assert journal.counts_for_day(day, day + timedelta(days=1)) == {"admit": 1, "deny": 3, "flagged": 1}


def test_the_fever_count_is_a_number_not_a_flag(journal):
    """The sum of flags was decoded as a boolean: the screen's count fell back to 1 every 30 s."""
    for n in range(3):
        journal.append(decision(decision="deny", flagged=True, reasons=["fever"], person_id=f"p-{n}"))
        journal.append({"kind": "fever_case.opened", "flagged": True, "detail": {"case_id": f"c{n}"}})
    day = T0.replace(hour=0)
    assert journal.counts_for_day(day, day + timedelta(days=1))["flagged"] == 3


def test_every_journal_column_but_local_upload_state_goes_on_the_wire(journal):
    """sync.protocol lists the wire fields on purpose (it is a contract); keep it in step."""
    from sync.protocol import EVENT_FIELDS

    columns = {row[1] for row in journal._conn.execute("PRAGMA table_info(events)")}
    assert set(EVENT_FIELDS) == columns - {"stream_id", "acked"}
