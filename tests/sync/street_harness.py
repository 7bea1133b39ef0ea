"""Test plumbing for the street-office features: the registry server as a real
process (so it can be SIGKILLed), and real local receivers for notices: an
SMTP sink (aiosmtpd), a webhook receiver that checks the HMAC, and an MQTT
subscriber on the local Mosquitto. Each receiver keeps the idempotency key of
every notice it got, repeats included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from sync.server.notify_channels import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.sync.sync_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
REDIS_URL = os.environ.get("CHECKPOINT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# --- the server as a process ---------------------------------------------------------------

SERVE = "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"


class RegistryProcess:
    """`checkpoint registry serve` in a subprocess; stderr goes to a file."""

    def __init__(self, db_url: str, log_path: Path, *args: str, env: dict | None = None, port: int | None = None):
        self.db_url = db_url
        self.port = port or free_port()
        self.log_path = log_path
        self.args = args
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "RegistryProcess":
        return self.launch().wait_ready()

    def launch(self) -> "RegistryProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, "registry", "serve", "--db", self.db_url, "--port", str(self.port),
             *self.args], cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log)
        return self

    def wait_ready(self) -> "RegistryProcess":
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/time", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"registry did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the server's log:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# --- receivers ------------------------------------------------------------------------------


class Receiver:
    def __init__(self):
        self.notices: list[dict] = []
        self._lock = threading.Lock()

    def got(self, notice: dict) -> None:
        with self._lock:
            self.notices.append(notice)

    def keys(self) -> Counter:
        with self._lock:
            return Counter(n["key"] for n in self.notices)


class SmtpSink(Receiver):
    """aiosmtpd on loopback; a notice's key is its X-Checkpoint-Key header."""

    def __init__(self):
        super().__init__()
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = message_from_bytes(envelope.content, policy=email_policy)
                sink.got({"key": msg[KEY_HEADER], "subject": msg["Subject"], "to": envelope.rcpt_tos,
                          "text": msg.get_content()})
                return "250 OK"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> "SmtpSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


class WebhookReceiver(Receiver):
    """A loopback HTTP server that accepts only correctly signed, fresh bodies."""

    def __init__(self, secret: bytes):
        super().__init__()
        self.secret = secret
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not verify_signature(receiver.secret, self.headers.get(TIMESTAMP_HEADER),
                                        self.headers.get(SIGNATURE_HEADER), body):
                    receiver.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                notice = json.loads(body)
                assert notice["key"] == self.headers["Idempotency-Key"]
                receiver.got(notice)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MqttSubscriber(Receiver):
    """A paho subscriber (QoS 1) to <prefix>/# on the local Mosquitto."""

    def __init__(self, prefix: str):
        super().__init__()
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        self.topics: list[str] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}")

        def on_connect(client, _u, _f, _rc, _p):
            client.subscribe(f"{prefix}/#", qos=1)

        def on_subscribe(*_args):
            self._subscribed.set()

        def on_message(_client, _u, message):
            self.topics.append(message.topic)
            self.got(json.loads(message.payload))

        self._client.on_connect = on_connect
        self._client.on_subscribe = on_subscribe
        self._client.on_message = on_message

    def start(self) -> "MqttSubscriber":
        self._client.connect(MQTT_HOST, MQTT_PORT)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from Mosquitto"
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_until(check, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
