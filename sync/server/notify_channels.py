"""Sending one notice over one channel: e-mail (SMTP), a signed webhook, MQTT.

Each `send_*` either returns (the receiver has it) or raises `DeliveryError`;
the worker in sync.server.notify retries. Every notice carries its
idempotency key (`notice["key"]`) so a receiver can drop a repeat:
- e-mail: the `X-Checkpoint-Key` header (and a Message-ID derived from it);
- webhook: the `Idempotency-Key` header and the body's `key`;
- MQTT: the payload's `key`.

Webhook signature: `X-Checkpoint-Timestamp: <unix seconds>` and
`X-Checkpoint-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`.
The timestamp is inside the signed text, so a receiver that refuses old
timestamps (`verify_signature`, 5 minutes) also refuses replays.
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import json
import smtplib
import ssl
import threading
import time
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt

from sync.server.notify_config import EmailChannel, MqttChannel, WebhookChannel

SIGNATURE_HEADER = "X-Checkpoint-Signature"
TIMESTAMP_HEADER = "X-Checkpoint-Timestamp"
KEY_HEADER = "X-Checkpoint-Key"
SIGNATURE_TOLERANCE_S = 300
# E-mail is read by people in the office: their local time as well as UTC.
OFFICE_TZ = ZoneInfo("Asia/Shanghai")


class DeliveryError(Exception):
    """The receiver did not take the notice; try again later."""


def body_bytes(notice: dict) -> bytes:
    return json.dumps(notice, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


# --- webhook ---------------------------------------------------------------------------


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes, timestamp: str | None, signature: str | None, body: bytes,
                     now: float | None = None, tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver checks: a fresh timestamp and a matching signature."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def send_webhook(channel: WebhookChannel, notice: dict) -> None:
    body = body_bytes(notice)
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": notice["key"],
               TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(channel.secret, timestamp, body),
               "User-Agent": "gate-checkpoint-registry"}
    try:
        resp = httpx.post(channel.url, content=body, headers=headers, timeout=channel.timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if not resp.is_success:
        raise DeliveryError(f"HTTP {resp.status_code} {resp.text[:200]}")


# --- e-mail ------------------------------------------------------------------------------


def _office_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{when.astimezone(OFFICE_TZ):%Y-%m-%d %H:%M:%S} (北京时间 / Beijing time; UTC {iso})"


_SUBJECTS = {
    "fever_case": ("发热病例", "Fever case"),
    "gate_unstaffed": ("卡口无人值守", "Gate unstaffed"),
    "gate_offline": ("卡口离线", "Gate offline"),
}


def email_text(notice: dict) -> tuple[str, str]:
    """(subject, body): Chinese first, then English."""
    zh, en = _SUBJECTS.get(notice["kind"], (notice["kind"], notice["kind"]))
    subject = f"【{zh}】{notice['site']} / {notice['gate']} — {en}"
    lines = [f"{zh} / {en}", "", f"社区 Site: {notice['site']}", f"卡口 Gate: {notice['gate']}"]
    if notice["kind"] == "gate_offline":
        lines.append(f"最后联系 Last contact: {_office_time(notice.get('last_contact'))}")
        lines.append(f"离线超过 Silent for more than: {notice.get('offline_after_min')} 分钟 / minutes")
    else:
        lines.append(f"时间 Time: {_office_time(notice.get('at'))}")
    if notice["kind"] == "fever_case":
        lines.append("详情请登录社区登记系统查看（未随邮件发送个人信息）。")
        lines.append("Details are in the community registry (no personal data is sent by e-mail).")
    lines += ["", f"编号 Key: {notice['key']}"]
    return subject, "\n".join(lines) + "\n"


def send_email(channel: EmailChannel, notice: dict) -> None:
    subject, text = email_text(notice)
    # Long lines allowed (RFC 5322's limit is 998), so the key header is
    # never folded and a receiver reads it back as it was sent.
    msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    msg["Subject"] = subject
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.recipients)
    msg["Date"] = formatdate(localtime=False)
    # The same notice re-sent carries the same Message-ID: mail clients and
    # archives fold the copies together.
    msg["Message-ID"] = f"<{hashlib.sha256(notice['key'].encode()).hexdigest()[:32]}@gate-checkpoint.invalid>"
    msg[KEY_HEADER] = notice["key"]
    msg.set_content(text)
    try:
        if channel.security == "tls":
            smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_s,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with smtp:
            if channel.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if channel.username:
                smtp.login(channel.username, channel.password or "")
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


# --- MQTT --------------------------------------------------------------------------------


def mqtt_topic(channel: MqttChannel, notice: dict) -> str:
    return f"{channel.topic_prefix}/{notice['site']}/{notice['kind']}"


def send_mqtt(channel: MqttChannel, notice: dict) -> None:
    """Publish with QoS 1 and wait for the broker's PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"checkpoint-{uuid.uuid4().hex[:12]}",
                         protocol=mqtt.MQTTv311)
    client.connect_timeout = channel.timeout_s
    if channel.username:
        client.username_pw_set(channel.username, channel.password)
    if channel.tls:
        client.tls_set()
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_client, _userdata, _flags, reason_code, _properties):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(channel.host, channel.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"cannot connect to {channel.host}:{channel.port}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(channel.timeout_s):
            raise DeliveryError(f"no CONNACK from {channel.host}:{channel.port} within {channel.timeout_s} s")
        if refused:
            raise DeliveryError(f"broker refused the connection: {refused[0]}")
        info = client.publish(mqtt_topic(channel, notice), body_bytes(notice), qos=1)
        try:
            info.wait_for_publish(channel.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"publish failed: {exc}") from exc
        if not info.is_published():
            raise DeliveryError(f"no PUBACK within {channel.timeout_s} s")
    finally:
        client.disconnect()
        client.loop_stop()


def send(channel, notice: dict) -> None:
    """Deliver `notice` over `channel`; raises DeliveryError."""
    if isinstance(channel, EmailChannel):
        send_email(channel, notice)
    elif isinstance(channel, WebhookChannel):
        send_webhook(channel, notice)
    else:
        send_mqtt(channel, notice)
