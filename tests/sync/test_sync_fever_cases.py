"""Fever cases on the registry: one alert per case, closed from the gate (SQLite and PostgreSQL).

The kiosk side is the real journal and the real FeverFlow (gateway/fever_flow.py)
writing the same events the loop writes; the sync client uploads them to a real
server on loopback.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select, update

from gateway.clock import to_ns
from gateway.config import load_config
from gateway.decision import Decision
from gateway.fever_case import subject_of
from gateway.fever_flow import FeverFlow
from gateway.journal import Journal
from gateway.screen.state import ScreenState
from gateway.thermometry import Reading
from sync.client import SyncClient
from sync.server import auth, registry
from sync.server.cases import cases_for_day
from sync.server.ingest import ingest
from sync.server.reports import daily_report, report_csv
from sync.server.schema import alerts, events, streams
from tests.sync.sync_harness import decision, write_kiosk_config


@pytest.fixture
def gate_side(server, tmp_path):
    """A kiosk's journal and fever flow, enrolled with the server; yields (flow, client)."""
    _, token = auth.add_gate(server.db, "site-1", "east-1")
    settings = load_config(write_kiosk_config(tmp_path / "kiosk", server.url, token))
    journal = Journal.open(settings.journal.path)
    state = ScreenState(gate={"id": "east-1"}, rules=[], policy={})
    flow = FeverFlow(journal, state, "east-1", 37.3)
    client = SyncClient(journal, settings)
    yield flow, client
    client.close()
    journal.close()


def infrared(flow, person: str, body_c: float) -> str:
    """One infrared decision about `person`, committed the way the loop does; returns its case id."""
    reading = Reading(status="ok", object_c=body_c - 0.5, ambient_c=22.0, offset_c=0.5, body_c=body_c)
    verdict = Decision(decision="deny", flagged=body_c >= 37.3, reasons=["fever"] if body_c >= 37.3 else ["ok"],
                       guard_message="guard.fever", public_message="public.see_staff", direction="in",
                       person_id=person, pass_id=f"ps-{person}", reading=reading, threshold_c=37.3)
    subject = subject_of(person_id=person)
    verdict, case_id, new = flow.screen_decision(verdict, subject, hard=True)
    record = verdict.to_record()
    record["detail"]["case_id"] = case_id
    event = flow.journal.append({**record, "kind": "decision", "gate": "east-1"})
    if case_id:
        flow.record_reading(event, verdict, subject, case_id, new)
    return case_id


def site_alerts(db) -> list:
    with db.read() as conn:
        return conn.execute(select(alerts).where(alerts.c.site_id == "site-1").order_by(alerts.c.id)).all()


def test_a_case_closed_at_the_gate_closes_the_alert_on_the_server(server, gate_side):
    flow, client = gate_side
    case_id = infrared(flow, "p-7", 37.8)
    for body_c in (37.5, 36.8, 37.4, 36.9):  # re-measures: never a second alert
        assert infrared(flow, "p-7", body_c) == case_id
    client.sync_once()
    (row,) = site_alerts(server.db)
    assert (row.case_id, row.status, row.readings, row.max_c, row.person_id) == (case_id, "open", 5, 37.8, "p-7")
    assert [a["case_id"] for a in registry.open_alerts(server.db, "site-1")] == [case_id]

    flow.clinical_and_decision(case_id, "王保安", clinical_c=38.0, outcome=None, note="")
    flow.clinical_and_decision(case_id, "王保安", clinical_c=None, outcome="referred", note="已送发热门诊")
    client.sync_once()
    (row,) = site_alerts(server.db)
    assert (row.status, row.outcome, row.clinical_c, row.gate_operator, row.note) == (
        "closed", "referred", 38.0, "王保安", "已送发热门诊")
    assert row.closed_at is not None and row.acknowledged_by == "王保安"
    assert registry.open_alerts(server.db, "site-1") == []  # the staff board has nothing left to do


def test_re_sends_after_a_restore_keep_one_row_per_case(server, gate_side):
    flow, client = gate_side
    first = infrared(flow, "p-1", 37.9)
    infrared(flow, "p-1", 37.6)
    second = infrared(flow, "p-2", 37.5)
    flow.clinical_and_decision(first, "王保安", clinical_c=36.7, outcome="admitted", note="")
    client.sync_once()
    before = [tuple(r) for r in site_alerts(server.db)]
    # The server is restored from a backup taken after the first event: everything comes again.
    with server.db.write() as conn:
        conn.execute(delete(events).where(events.c.seq > 1))
        conn.execute(update(streams).values(acked_through=1))
    assert client.sync_once()["pending"] == 0
    after = [tuple(r) for r in site_alerts(server.db)]
    assert after == before
    assert [(r.case_id, r.status, r.outcome, r.readings) for r in site_alerts(server.db)] == [
        (first, "closed", "admitted", 2), (second, "open", None, 1)]


def test_a_step_without_its_opening_event_still_makes_the_row(server):
    gate, _ = auth.add_gate(server.db, "site-1", "east-2")
    now = datetime(2026, 2, 1, 9, tzinfo=timezone.utc)
    closed = {**decision(1), "seq": 1, "kind": "fever_case.closed", "decision": None, "reasons": [], "flagged": True,
              "operator": "李保安", "person_id": "p-9", "body_c": 37.7, "time": now.isoformat(), "boot_id": "b",
              "mono_ns": 1, "wall_time": to_ns(now), "clock_synced": True,
              "detail": {"case_id": "c-9", "outcome": "refused", "note": "拒绝复测", "readings": 3, "max_c": 37.7}}
    ingest(server.db, gate, "s-x", 1, [closed], now=now)
    (row,) = site_alerts(server.db)
    assert (row.case_id, row.status, row.outcome, row.readings, row.max_c, row.acknowledged_by) == (
        "c-9", "closed", "refused", 3, 37.7, "李保安")


def test_the_daily_report_counts_cases_not_readings(server, gate_side):
    flow, client = gate_side
    one = infrared(flow, "p-1", 37.6)
    for _ in range(11):  # one person, twelve flagged readings
        infrared(flow, "p-1", 37.7)
    infrared(flow, "p-2", 37.4)
    infrared(flow, "p-3", 36.5)  # normal: no case
    flow.clinical_and_decision(one, "王保安", clinical_c=38.1, outcome="referred", note="发热门诊")
    client.sync_once()
    report = daily_report(server.db, "site-1", datetime.now(timezone.utc).date(), tz="UTC")
    assert report["totals"]["fever"] == 2 and not report["zero_report"]
    assert report["gates"] == [{"gate": "east-1", "admit": 0, "deny": 14, "fever": 2}]
    first = report["fevers"][0]
    assert (first["person_id"], first["readings"], first["body_c"], first["decision"], first["clinical_c"]) == (
        "p-1", 12, 37.7, "referred", 38.1)
    assert report["fevers"][1]["decision"] == "open"
    assert "referred" in report_csv(report)


def test_cases_for_day_lists_a_sites_cases_for_other_pages(server):
    gate, _ = auth.add_gate(server.db, "site-1", "east-3")
    other, _ = auth.add_gate(server.db, "site-2", "west-1")
    day = datetime(2026, 2, 1, 1, tzinfo=timezone.utc)  # 09:00 in Beijing
    legacy = {**decision(97), "seq": 1, "time": day.isoformat(), "boot_id": "b", "mono_ns": 1, "wall_time": to_ns(day),
              "clock_synced": True}  # a flagged decision from a kiosk without cases: still one alert
    ingest(server.db, gate, "s-1", 1, [legacy], now=day)
    ingest(server.db, other, "s-2", 1, [legacy], now=day)
    from zoneinfo import ZoneInfo

    (case,) = cases_for_day(server.db, "site-1", date(2026, 2, 1), ZoneInfo("Asia/Shanghai"))
    assert case["gate"] == "east-3" and case["status"] == "open" and case["readings"] == 1
    assert case["time"] == "2026-02-01T09:00:00+08:00"
    assert cases_for_day(server.db, "site-1", date(2026, 2, 1) + timedelta(days=1), ZoneInfo("Asia/Shanghai")) == []


def test_the_migration_adds_the_case_columns_to_an_older_alerts_table(db_url):
    from sqlalchemy import inspect, text

    from sync.server import open_database
    from sync.server.schema import _FEVER_CASE_COLUMNS, MIGRATIONS, _v_fever_alert_cases, migrate
    from sync.server.schema_upgrade import head
    from tests.sync.legacy_schema import make_legacy_database

    db = open_database(db_url)
    try:
        # An older registry: the legacy steps up to, not including, the case columns.
        upto = MIGRATIONS.index(_v_fever_alert_cases)
        make_legacy_database(db, upto)
        with db.write() as conn:
            for name in _FEVER_CASE_COLUMNS:  # _v1 makes today's alerts table; that release's had none of them
                conn.execute(text(f"ALTER TABLE alerts DROP COLUMN {name}"))
        assert migrate(db) == head()
        with db.read() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("alerts")}
            indexes = {i["name"] for i in inspect(conn).get_indexes("alerts")}
        assert set(_FEVER_CASE_COLUMNS) <= columns
        assert "ix_alerts_case" in indexes
    finally:
        db.dispose()


def _on(event: dict, seq: int, when: datetime) -> dict:
    return {**event, "seq": seq, "time": when.isoformat(), "boot_id": "b", "mono_ns": seq, "wall_time": to_ns(when),
            "clock_synced": True}


def _ack(target: int, note: str = "已引导至发热门诊") -> dict:
    return {"kind": "fever_ack", "gate": "east-1", "operator": "老李", "decision": None, "flagged": False,
            "reasons": [], "body_c": None, "detail": {"seq": target, "note": note}}


def test_an_older_kiosks_fever_ack_becomes_a_case_the_staff_see(server):
    """A kiosk of the release before cases acknowledges a fever with `fever_ack`: its alert becomes a case
    closed at the gate, and an acknowledged fever the server had no alert for opens one (failed before:
    the acknowledgement changed nothing on the registry)."""
    from zoneinfo import ZoneInfo

    from sync.server.schema import outbox

    gate, _ = auth.add_gate(server.db, "site-1", "east-1")
    day = datetime(2026, 2, 1, 1, tzinfo=timezone.utc)
    flagged = decision(97)  # p-47, 38.1
    override = {**decision(194), "kind": "override", "operator": "老李"}  # flagged, but an override raises no alert
    batches = [
        [_on(flagged, 1, day)],
        [_on(_ack(1), 2, day + timedelta(minutes=1)),
         {**_on(decision(291), 3, day), "mono_ns": "not a number"},  # quarantined: the server never saw the fever
         _on(_ack(3, "已测体温计"), 4, day + timedelta(minutes=2)),
         _on(override, 5, day + timedelta(minutes=3)), _on(_ack(5, "送医"), 6, day + timedelta(minutes=4)),
         _on(decision(388), 7, day + timedelta(minutes=5)), _on(_ack(7, "同批确认"), 8, day + timedelta(minutes=6))],
    ]
    first_seq = 1
    for batch in batches:
        ingest(server.db, gate, "s-old", first_seq, batch, now=day + timedelta(minutes=10))
        first_seq += len(batch)
    rows = site_alerts(server.db)
    assert [(r.seq, r.person_id, r.body_c, r.case_id, r.status, r.gate_operator, r.note) for r in rows] == [
        (1, "p-47", 38.1, "ack-s-old-1", "closed", "老李", "已引导至发热门诊"),
        (7, "p-38", 38.1, "ack-s-old-7", "closed", "老李", "同批确认"),
        (3, None, None, "ack-s-old-3", "closed", "老李", "已测体温计"),
        (5, "p-44", 38.1, "ack-s-old-5", "closed", "老李", "送医"),
    ]
    # The gate closed them; the staff still acknowledge them, as they did for these kiosks.
    assert all(r.acknowledged_at is None for r in rows)
    assert len(registry.open_alerts(server.db, "site-1")) == 4
    cases = cases_for_day(server.db, "site-1", date(2026, 2, 1), ZoneInfo("Asia/Shanghai"))
    assert [(c["case_id"], c["status"], c["gate_operator"]) for c in cases][0] == ("ack-s-old-1", "closed", "老李")
    assert len(cases) == 4
    with server.db.read() as conn:
        notices = set(conn.execute(select(outbox.c.ref)).scalars())
    assert notices == {"fever:s-old:1", "fever:s-old:7", "fever:s-old:3", "fever:s-old:5"}

    # A restored kiosk re-sends everything: nothing changes.
    before = [tuple(r) for r in site_alerts(server.db)]
    everything = [event for batch in batches for event in batch]
    assert ingest(server.db, gate, "s-old", 1, everything, now=day + timedelta(hours=1)).duplicates == 8
    assert [tuple(r) for r in site_alerts(server.db)] == before


def test_the_migration_makes_cases_of_acks_an_older_server_stored(server):
    from sync.server.schema import _v_tidy_legacy_fever_acks

    gate, _ = auth.add_gate(server.db, "site-1", "east-1")
    day = datetime(2026, 2, 1, 1, tzinfo=timezone.utc)
    ingest(server.db, gate, "s-old", 1, [_on(decision(97), 1, day), _on(_ack(1), 2, day + timedelta(minutes=1))],
           now=day)
    folded = [tuple(r) for r in site_alerts(server.db)]
    with server.db.write() as conn:  # as an older server stored them: a plain alert, the ack only an event
        conn.execute(update(alerts).values(case_id=None, status=None, gate_operator=None, note=None, closed_at=None))
        _v_tidy_legacy_fever_acks(server.db, conn)
    assert [tuple(r) for r in site_alerts(server.db)] == folded


def test_the_board_and_both_daily_reports_list_the_same_cases(server):
    """One listing (sync.server.case_list) behind the board, `reports.daily_report` and
    `daily.site_daily` (failed before: the report counted an older kiosk's re-measures as cases)."""
    from zoneinfo import ZoneInfo

    from sync.server import boards, daily

    gate, _ = auth.add_gate(server.db, "site-1", "east-1")
    day = datetime(2026, 2, 1, 1, tzinfo=timezone.utc)  # 09:00 in Beijing
    local_day = date(2026, 2, 1)

    def closed(seq: int, case_id: str, person: str, minutes: int) -> dict:
        return _on({**decision(1), "kind": "fever_case.closed", "decision": None, "reasons": [], "flagged": True,
                    "operator": "李保安", "person_id": person, "body_c": 37.7,
                    "detail": {"case_id": case_id, "outcome": "referred", "note": "发热门诊", "readings": 2,
                               "max_c": 37.9}}, seq, day + timedelta(minutes=minutes))

    ingest(server.db, gate, "s-1", 1, [
        _on(decision(97), 1, day),                                   # older kiosk: p-47 flagged ...
        _on(decision(97), 2, day + timedelta(minutes=1)),            # ... and re-measured: one case
        _on(_ack(1), 3, day + timedelta(minutes=2)),
        _on(decision(194), 4, day + timedelta(minutes=3)),           # older kiosk: p-44, one reading
        closed(5, "c-1", "p-9", 4), closed(6, "c-2", "p-9", 5),     # kiosk with cases: p-9 twice
    ], now=day)
    ingest(server.db, gate, "s-1", 7, [_on(decision(291), 7, day + timedelta(days=1))], now=day + timedelta(days=1))

    zone = ZoneInfo("Asia/Shanghai")
    board = boards.fever_cases(server.db, "site-1", day=local_day)
    report = daily_report(server.db, "site-1", local_day)
    street = daily.site_daily(server.db, "site-1", local_day)
    listed = cases_for_day(server.db, "site-1", local_day, zone)

    def view(alert_ids, person, status, count):
        return alert_ids, person, status, count

    with server.db.read() as conn:
        id_of = dict(conn.execute(select(alerts.c.seq, alerts.c.id)).all())
    expected = [([id_of[s] for s in seqs], p, st, n) for seqs, p, st, n in
                [([1, 2], "p-47", "open", 2), ([4], "p-44", "open", 1), ([5], "p-9", "closed", 2),
                 ([6], "p-9", "closed", 2)]]
    assert [view(c["alert_ids"], c["person_id"], c["status"], c["reading_count"]) for c in reversed(board)] == expected
    assert [view(c["alerts"], c["person_id"], c["status"], None) for c in street["fever_cases"]] == [
        (ids, p, st, None) for ids, p, st, _ in expected]
    assert [(c["alert_id"], c["person_id"], c["status"], c["readings"]) for c in listed] == [
        (ids[0], p, st, n) for ids, p, st, n in expected]
    assert report["fevers"] == [{**c, "decision": c["outcome"] or c["status"]} for c in listed]
    assert report["totals"]["fever"] == len(board) == len(street["fever_cases"]) == 4
    assert street["fever_people"] == 3  # p-47, p-44 and p-9, each once
    # The older kiosk's acknowledgement closed its first reading; the re-measure keeps the case open.
    assert board[-1]["gate_ack"]["operator"] == "老李" and board[-1]["readings"] == [38.1]

    # Acknowledging the case on the board acknowledges both of its readings.
    boards.acknowledge_case(server.db, "site-1", id_of[1], by="worker")
    assert [a["seq"] for a in registry.open_alerts(server.db, "site-1")] == [4, 7]
    assert boards.fever_cases(server.db, "site-1", day=local_day)[-1]["status"] == "closed"
