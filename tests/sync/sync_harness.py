"""Test plumbing for sync: a real server on loopback, a fault-injecting proxy,
kiosk configs, and PostgreSQL schemas. Faked only at the network edge."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import uvicorn
from sqlalchemy import create_engine, select, text

from sync.server import create_app, open_database
from sync.server.schema import events

# CI's PostgreSQL trusts local connections as postgres or root, database `test`.
PG_CANDIDATES = ([os.environ["CHECKPOINT_TEST_PG"]] if os.environ.get("CHECKPOINT_TEST_PG") else
                 ["postgresql://postgres@127.0.0.1/test", "postgresql://root@127.0.0.1/test"])
PG_BASE_URL = PG_CANDIDATES[0]


# --- databases -----------------------------------------------------------------------


def postgres_problem() -> str | None:
    """None if PostgreSQL answers (PG_BASE_URL is then the URL that worked), else why not."""
    global PG_BASE_URL
    problems = []
    for url in PG_CANDIDATES:
        try:
            engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                                   connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            PG_BASE_URL = url
            return None
        except Exception as exc:  # any failure to reach it is a reason to skip (or fail in CI)
            problems.append(f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return "PostgreSQL not reachable: " + "; ".join(problems)


class PgSchema:
    """A fresh schema per test: isolated, dropped afterwards."""

    def __init__(self):
        self.name = "sync_t_" + uuid.uuid4().hex[:12]
        base = PG_BASE_URL
        self._admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        with self._admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {self.name}"))
        sep = "&" if "?" in base else "?"
        self.url = f"{base}{sep}options=-csearch_path%3D{self.name}"

    def drop(self):
        with self._admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {self.name} CASCADE"))
        self._admin.dispose()


# --- a server on loopback -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving create_app(db_url) in a thread; restartable on the same port."""

    def __init__(self, db_url: str, port: int | None = None, **app_kwargs):
        self.db_url = db_url
        self.port = port or free_port()
        self.app_kwargs = app_kwargs
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerThread":
        # A new app and engine each time, as a restarted process would have.
        self.db = open_database(self.db_url)
        app = self.app = create_app(db=self.db, **self.app_kwargs)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"registry server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
            self._thread.join(10)
            self.db.dispose()
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        for _ in range(50):
            try:
                self.start()
                return
            except RuntimeError:  # the port may linger for a moment
                time.sleep(0.05)
        raise RuntimeError("server did not come back")


# --- the fault-injecting proxy --------------------------------------------------------------

FAULTS = ("drop_after_commit", "error_500", "error_500_after_commit", "rate_429", "stall", "restart")


class FaultProxy:
    """A loopback HTTP proxy that breaks requests at random, one request per
    connection.

    Faults: drop the connection after the server has answered (so it has
    committed) without replying; answer 500 (before, or after the server
    committed); answer 429 with Retry-After; stall past the client's timeout
    after forwarding; restart the server.
    """

    def __init__(self, server: ServerThread, *, seed: int = 1, fault_rate: float = 0.3,
                 weights: dict[str, float] | None = None, stall_s: float = 1.0, delay_s: float = 0.0):
        self.server = server
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.weights = weights or {"drop_after_commit": 4, "error_500": 2, "error_500_after_commit": 2,
                                   "rate_429": 2, "stall": 1, "restart": 0.5}
        self.stall_s = stall_s
        self.delay_s = delay_s
        self.counts: Counter = Counter()
        self.enabled = True
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._restart_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> int:
        return sum(n for k, n in self.counts.items() if k != "ok")

    def start(self) -> "FaultProxy":
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop)
        self._aserver = future.result(5)
        return self

    def stop(self) -> None:
        async def close():
            self._aserver.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _choose(self) -> str:
        if not self.enabled or self.rng.random() >= self.fault_rate:
            return "ok"
        names = list(self.weights)
        return self.rng.choices(names, weights=[self.weights[n] for n in names])[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            fault = self._choose()
            self.counts[fault] += 1
            reply = await self._act(fault, request)
            if reply:
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _act(self, fault: str, request: bytes) -> bytes | None:
        """What the client gets back: a reply, or None for a dropped connection."""
        if fault == "error_500":
            return _canned(500, "Internal Server Error")
        if fault == "rate_429":
            return _canned(429, "Too Many Requests", {"Retry-After": "0"})
        if fault == "restart":
            # The connection dies with the server, as with a real restart.
            await asyncio.get_running_loop().run_in_executor(None, self._restart)
            return None
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        response = await self._forward(request)
        if response is None or fault == "drop_after_commit":
            return None
        if fault == "error_500_after_commit":
            return _canned(500, "Internal Server Error")
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
            return None
        return response

    def _restart(self) -> None:
        with self._restart_lock:
            self.server.restart()

    async def _forward(self, request: bytes) -> bytes | None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        except OSError:
            return None
        try:
            up_writer.write(request)
            await up_writer.drain()
            return await up_reader.read(-1)  # Connection: close, so EOF ends the reply
        except ConnectionError:
            return None
        finally:
            up_writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    kept = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
        if name.lower() == "connection":
            continue
        kept.append(line)
    kept.append("Connection: close")
    body = await reader.readexactly(length) if length else b""
    return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1") + body


def _canned(status: int, reason: str, headers: dict | None = None) -> bytes:
    body = b'{"error":"injected"}'
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body


# --- kiosks ------------------------------------------------------------------------------


def write_kiosk_config(directory: Path, server_url: str, token: str, *, gate: str = "east-1",
                       site: str = "site-1", journal: str = "journal.db", interval_s: float = 30.0,
                       staleness_h: float = 24.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{gate}.token").write_text(token + "\n", encoding="utf-8")
    path = directory / f"{gate}.toml"
    path.write_text(
        f'[gate]\nid = "{gate}"\nsite = "{site}"\n\n[journal]\npath = "{journal}"\n\n'
        f'[sync]\nserver = "{server_url}"\ntoken_file = "{gate}.token"\n'
        f"interval_s = {interval_s}\nstaleness_limit_h = {staleness_h}\n",
        encoding="utf-8",
    )
    return path


def decision(n: int, **extra) -> dict:
    """A plausible decision event whose detail carries `n` to check content later."""
    fever = n % 97 == 0
    return {"kind": "decision", "gate": "east-1", "direction": "in", "pass_id": f"ps-{n % 50}",
            "person_id": f"p-{n % 50}", "object_c": 36.0, "ambient_c": 22.0, "body_c": 38.1 if fever else 36.6,
            "threshold_c": 37.3, "decision": "deny" if fever else "admit", "flagged": fever,
            "reasons": ["fever"] if fever else ["ok"], "detail": {"n": n}, **extra}


def server_rows(db_url: str, stream_id: str) -> list[tuple[int, int]]:
    """(seq, detail.n) of every server event of a stream, in storage order where the engine has one."""
    import json

    db = open_database(db_url)
    try:
        with db.read() as conn:
            rows = conn.execute(select(events.c.seq, events.c.payload).where(events.c.stream_id == stream_id)).all()
    finally:
        db.dispose()
    return [(seq, json.loads(payload).get("detail", {}).get("n")) for seq, payload in rows]
