"""Street-office notices: the outbox is written with the event, delivery is
retried, and a server killed between the commit and the send still gets each
notice to each receiver exactly once (by idempotency key). Real receivers on
loopback: an SMTP sink, a webhook receiver checking the HMAC, the local
Mosquitto."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from gateway.clock import to_ns
from gateway.config import ConfigError
from sync.server import auth, open_database
from sync.server.ingest import ingest
from sync.server.notify import ContactLog, Notifier, enqueue_offline, instance_id, retry_delay_s
from sync.server.notify_config import parse_notify_config
from sync.server.schema import events, migrate, outbox, streams
from tests.sync.street_harness import (
    MQTT_HOST,
    MQTT_PORT,
    MqttSubscriber,
    RegistryProcess,
    SmtpSink,
    WebhookReceiver,
    reachable,
    wait_until,
)

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)
SECRET = b"street-office-webhook-secret-0123456789"


def ev(seq: int, kind: str = "decision", *, fever: bool = False) -> dict:
    wall = T0 + timedelta(seconds=seq)
    return {"seq": seq, "kind": kind, "time": wall.isoformat(), "gate": "east-1", "decision": "deny" if fever else "admit",
            "flagged": fever, "person_id": "p-7", "body_c": 38.4 if fever else 36.5, "reasons": [],
            "boot_id": "boot-a", "mono_ns": seq * 10**9, "wall_time": to_ns(wall), "clock_synced": True}


def outbox_rows(db) -> list:
    with db.read() as conn:
        return conn.execute(select(outbox).order_by(outbox.c.id)).all()


@pytest.fixture
def db(db_url):
    database = open_database(db_url)
    migrate(database)
    yield database
    database.dispose()


# --- the outbox --------------------------------------------------------------------------------


def test_a_fever_and_an_unstaffed_event_each_make_one_notice_even_when_resent(db):
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    batch = [ev(1), ev(2, fever=True), ev(3, "unstaffed")]
    ingest(db, gate, "s-1", 1, batch)
    ingest(db, gate, "s-1", 1, batch)  # a lost reply: re-sent, duplicates
    # The events and watermark lost (an older backup of those tables): the
    # same events come again and pass the watermark this time.
    with db.write() as conn:
        conn.execute(events.delete())
        conn.execute(streams.update().values(acked_through=0))
    ingest(db, gate, "s-1", 1, batch)
    rows = outbox_rows(db)
    assert [(r.kind, r.ref, r.site_id) for r in rows] == [
        ("gate_unstaffed", "unstaffed:s-1:3", "site-1"), ("fever_case", "fever:s-1:2", "site-1")]
    fever = json.loads(rows[1].body)
    # Nothing about the person: no id, no temperature.
    assert fever == {"kind": "fever_case", "site": "site-1", "gate": "east-1", "at": "2026-02-01T08:00:02+00:00"}


def test_an_upload_that_rolls_back_leaves_no_notice(db):
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    # The database refuses the last step of the upload (the watermark), after
    # the alert and the notices were written: all of it must roll back.
    with db.write() as conn:
        if db.is_postgres:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; "
                              "END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE UPDATE ON streams FOR EACH ROW EXECUTE FUNCTION refuse()"))
        else:
            conn.execute(text("CREATE TRIGGER refuse BEFORE UPDATE ON streams BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
    with pytest.raises(DBAPIError, match="disk full"):
        ingest(db, gate, "s-1", 1, [ev(1, fever=True), ev(2, "unstaffed")])
    assert outbox_rows(db) == []
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_gate_offline_is_one_notice_per_outage(db):
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    auth.add_gate(db, "site-1", "never-installed")  # no contact yet: not offline, just not there
    contacts = ContactLog()
    contacts.saw(gate.id)
    assert contacts.flush(db) == 1
    later = datetime.now(timezone.utc) + timedelta(minutes=31)
    assert enqueue_offline(db, 30, to_ns(later)) == 1
    assert enqueue_offline(db, 30, to_ns(later + timedelta(minutes=5))) == 0  # the same outage
    contacts.saw(gate.id)  # back, then silent again: a new outage
    contacts.flush(db)
    back = datetime.now(timezone.utc)
    assert enqueue_offline(db, 30, to_ns(back + timedelta(minutes=29))) == 0  # not silent long enough yet
    assert enqueue_offline(db, 30, to_ns(back + timedelta(minutes=31))) == 1
    bodies = [json.loads(r.body) for r in outbox_rows(db)]
    assert [b["gate"] for b in bodies] == ["east-1", "east-1"]
    refs = [r.ref for r in outbox_rows(db)]
    assert refs[0] != refs[1]  # each outage is named by its own last contact
    assert set(bodies[0]) == {"kind", "site", "gate", "last_contact", "offline_after_min"}


def test_retry_delays_grow_with_jitter_up_to_the_cap():
    rng = random.Random(5)
    for attempt, nominal in [(1, 10), (2, 20), (3, 40), (9, 1800), (30, 1800)]:
        delays = [retry_delay_s(attempt, 10, 1800, rng) for _ in range(200)]
        assert nominal * 0.5 <= min(delays) and max(delays) <= nominal * 1.5
        assert max(delays) - min(delays) > nominal * 0.5  # jittered, not in lockstep


def test_delivery_is_retried_until_the_receiver_takes_it(db, tmp_path):
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    receiver = WebhookReceiver(SECRET).start()
    (tmp_path / "hook.secret").write_text("wrong-secret\n")
    config = parse_notify_config(
        f'retry_base_s = 0.1\n[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n'
        f'secret_file = "hook.secret"\n', tmp_path / "notify.toml")
    try:
        ingest(db, gate, "s-1", 1, [ev(1, fever=True)])
        notifier = Notifier(db, config, rng=random.Random(1))
        assert notifier.deliver_due() == 0  # refused: bad signature
        assert receiver.refused == 1 and receiver.notices == []
        row = outbox_rows(db)[0]
        assert row.attempts == 1 and row.due_ns is not None and "401" in row.last_error
        receiver.secret = b"wrong-secret"  # the office fixes its side
        wait_until(lambda: notifier.deliver_due() == 1, 5, "the retry")
        row = outbox_rows(db)[0]
        assert row.due_ns is None and row.delivered_at is not None and row.last_error is None
        assert list(receiver.keys().values()) == [1]
        assert receiver.notices[0]["key"] == f"{instance_id(db)}:fever:s-1:1"
        assert notifier.deliver_due() == 0 and len(receiver.notices) == 1
    finally:
        receiver.stop()


def test_a_hung_channel_costs_one_timeout_a_round_and_the_others_still_deliver(db, tmp_path):
    gate, _ = auth.add_gate(db, "site-1", "east-1")
    hung = socket.socket()  # accepts connections and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(hung.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    receiver = WebhookReceiver(SECRET).start()
    (tmp_path / "hook.secret").write_text(SECRET.decode())
    config = parse_notify_config(f"""
[[channels]]
name = "hung"
type = "webhook"
url = "http://127.0.0.1:{hung.getsockname()[1]}/hook"
secret_file = "hook.secret"
timeout_s = 0.5
[[channels]]
name = "hook"
type = "webhook"
url = "{receiver.url}"
secret_file = "hook.secret"
""", tmp_path / "notify.toml")
    try:
        ingest(db, gate, "s-1", 1, [ev(1, fever=True), ev(2, fever=True), ev(3, fever=True)])
        Notifier(db, config).deliver_due()
        assert len(accepted) == 1  # tried once this round, not once per notice
        assert len(receiver.keys()) == 3
        assert all(json.loads(r.pending) == ["hung"] and r.due_ns for r in outbox_rows(db))
    finally:
        hung.close()
        for conn in accepted:
            conn.close()
        receiver.stop()


@pytest.mark.parametrize("toml, problem", [
    ('[[channels]]\nname = "a"\ntype = "email"\nhost = "h"\nsender = "a@b"\nrecipients = ["c@d"]\nport = 99999\n',
     "notify.toml: channels.0.email.port = 99999: Input should be less than or equal to 65535"),
    ('[[channels]]\nname = "a"\ntype = "webhook"\nurl = "http://x"\nsecret = "inline"\n',
     "secret: put it in a file and name it with secret_file"),
    ('[[channels]]\nname = "a"\ntype = "webhook"\nurl = "http://x"\nsecret_file = "missing.secret"\n',
     "notify.toml: channels.0.secret_file: "),
    ('offline_after_mins = 5\n', "notify.toml: offline_after_mins: unknown key"),
    ('[[channels]]\nname = "a"\ntype = "pager"\n', "channels.0"),
])
def test_a_bad_notify_config_names_the_file_key_and_value(tmp_path, toml, problem):
    with pytest.raises(ConfigError) as caught:
        parse_notify_config(toml, tmp_path / "notify.toml")
    assert problem in "\n".join(caught.value.problems)


# --- killed between the commit and the send ----------------------------------------------------


@pytest.fixture
def receivers(tmp_path):
    if not reachable(MQTT_HOST, MQTT_PORT):
        pytest.skip(f"Mosquitto not reachable on {MQTT_HOST}:{MQTT_PORT}")
    smtp, hook = SmtpSink().start(), WebhookReceiver(SECRET).start()
    mqtt = MqttSubscriber(f"test-{uuid.uuid4().hex[:10]}").start()
    (tmp_path / "hook.secret").write_text(SECRET.decode() + "\n")
    try:
        yield {"smtp": smtp, "webhook": hook, "mqtt": mqtt}
    finally:
        smtp.stop()
        hook.stop()
        mqtt.stop()


def notify_toml(tmp_path, r, notices: str = '["fever_case", "gate_unstaffed", "gate_offline"]') -> str:
    path = tmp_path / "notify.toml"
    path.write_text(f"""
offline_after_min = 0.05
retry_base_s = 0.5
[[channels]]
name = "mail"
type = "email"
host = "127.0.0.1"
port = {r["smtp"].port}
sender = "gate@site-1.example"
recipients = ["duty@street.example"]
sites = ["site-1"]
notices = {notices}
[[channels]]
name = "hook"
type = "webhook"
url = "{r["webhook"].url}"
secret_file = "hook.secret"
notices = {notices}
[[channels]]
name = "dashboard"
type = "mqtt"
host = "127.0.0.1"
topic_prefix = "{r["mqtt"].prefix}"
notices = {notices}
""", encoding="utf-8")
    return str(path)


def post(url: str, token: str, first_seq: int, events: list[dict]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/streams/s-east/events", json={"first_seq": first_seq, "events": events},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_server_killed_between_commit_and_send_delivers_each_notice_once(db_url, db, tmp_path, receivers):
    east, east_token = auth.add_gate(db, "site-1", "east-1")
    west, west_token = auth.add_gate(db, "site-1", "west-2")
    config = notify_toml(tmp_path, receivers)
    first = RegistryProcess(db_url, tmp_path / "first.log", "--notify", config,
                            env={"CHECKPOINT_TEST_NOTIFY_PAUSE": "before_send"}).start()
    try:
        assert post(first.url, east_token, 1, [ev(1), ev(2, fever=True), ev(3, "unstaffed")]).status_code == 200
        assert httpx.get(f"{first.url}/api/v1/sites/site-1/registry", timeout=10,
                         headers={"Authorization": f"Bearer {west_token}"}).status_code == 200
        # Both gates then fall silent: after 3 s each is offline (one notice each).
        wait_until(lambda: len(outbox_rows(db)) == 4, 30, "four committed notices")
        first.wait_for_log("notify: test pause at before_send")
    finally:
        first.kill()
    assert all(r.delivered_at is None for r in outbox_rows(db))
    assert all(r.notices == [] for r in receivers.values())

    second = RegistryProcess(db_url, tmp_path / "second.log", "--notify", config, port=first.port).start()
    try:
        wait_until(lambda: all(len(r.keys()) == 4 for r in receivers.values()), 30, "every receiver to get 4")
        # Long enough for the new process to judge the (still) silent gates:
        # the same outages, so no second offline notice.
        wait_until(lambda: all(r.delivered_at for r in outbox_rows(db)), 10, "the outbox to drain")
        time.sleep(4)
    finally:
        second.stop()

    instance = instance_id(db)
    offline = {r.ref for r in outbox_rows(db) if r.kind == "gate_offline"}
    assert {ref.split(":")[1] for ref in offline} == {str(east.id), str(west.id)}
    expected = {f"{instance}:fever:s-east:2", f"{instance}:unstaffed:s-east:3"} | {f"{instance}:{r}" for r in offline}
    for name, receiver in receivers.items():
        assert receiver.keys() == {key: 1 for key in expected}, name
    assert len(outbox_rows(db)) == 4
    by_kind = {n["kind"]: n for n in receivers["webhook"].notices}
    assert by_kind["fever_case"] == {"key": f"{instance}:fever:s-east:2", "kind": "fever_case", "site": "site-1",
                                     "gate": "east-1", "at": "2026-02-01T08:00:02+00:00"}
    assert sorted(receivers["mqtt"].topics) == sorted(
        f"{receivers['mqtt'].prefix}/site-1/{n['kind']}" for n in receivers["mqtt"].notices)
    mail = [m for m in receivers["smtp"].notices if m["key"].endswith("fever:s-east:2")][0]
    assert mail["subject"].startswith("【发热病例】site-1 / east-1") and mail["to"] == ["duty@street.example"]
    assert "p-7" not in mail["text"] and "38.4" not in mail["text"]


@pytest.mark.slow
def test_a_server_killed_between_send_and_record_repeats_with_the_same_key(db_url, db, tmp_path, receivers):
    _, token = auth.add_gate(db, "site-1", "east-1")
    config = notify_toml(tmp_path, receivers, notices='["fever_case"]')
    first = RegistryProcess(db_url, tmp_path / "first.log", "--notify", config,
                            env={"CHECKPOINT_TEST_NOTIFY_PAUSE": "after_send"}).start()
    try:
        assert post(first.url, token, 1, [ev(1, fever=True)]).status_code == 200
        first.wait_for_log("notify: test pause at after_send")
    finally:
        first.kill()
    key = f"{instance_id(db)}:fever:s-east:1"
    assert all(r.keys() == {key: 1} for r in receivers.values())  # sent, but never recorded as sent
    assert outbox_rows(db)[0].delivered_at is None

    second = RegistryProcess(db_url, tmp_path / "second.log", "--notify", config, port=first.port).start()
    try:
        wait_until(lambda: outbox_rows(db)[0].delivered_at is not None, 30, "the retry")
    finally:
        second.stop()
    # At most one repeat, with the same key: a receiver that drops keys it has
    # seen ends with the notice exactly once.
    for name, receiver in receivers.items():
        assert receiver.keys() == {key: 2}, name
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1


def test_webhook_signature_covers_the_body_and_a_fresh_timestamp():
    from sync.server.notify_channels import sign, verify_signature

    body = b'{"key":"k","kind":"fever_case"}'
    now = 1_800_000_000
    good = sign(SECRET, now, body)
    assert verify_signature(SECRET, str(now), good, body, now=now + 10)
    assert not verify_signature(SECRET, str(now), good, body.replace(b"fever", b"fevex"), now=now)
    assert not verify_signature(SECRET, str(now + 1), good, body, now=now)  # timestamp swapped
    assert not verify_signature(b"other", str(now), good, body, now=now)
    assert not verify_signature(SECRET, str(now), good, body, now=now + 301)  # a replay, too late
    assert not verify_signature(SECRET, None, good, body, now=now)


def test_serve_with_a_bad_notify_config_exits_78_naming_the_key(tmp_path, capsys):
    from gateway.cli import main

    bad = tmp_path / "notify.toml"
    bad.write_text('[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "ftp://x"\nsecret_file = "s"\n')
    code = main(["registry", "serve", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--notify", str(bad)])
    assert code == 78
    assert "notify.toml: channels.0.webhook.url = 'ftp://x'" in capsys.readouterr().err


def test_the_readme_example_config_is_valid(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Notifications to the street office", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "smtp.password").write_text("pw\n")
    (tmp_path / "webhook.secret").write_text("s3cret\n")
    config = parse_notify_config(example, tmp_path / "notify.toml")
    assert [c.type for c in config.channels] == ["email", "webhook", "mqtt"]
    assert config.channels[0].password == "pw" and config.channels[1].secret == b"s3cret"
    assert config.channels[0].wants("site-2", "gate_offline") and not config.channels[0].wants("site-3", "fever_case")
