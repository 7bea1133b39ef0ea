"""Engine set-up for the registry database: SQLite (default) or PostgreSQL.

SQLite runs in WAL mode. Write transactions start with BEGIN IMMEDIATE, so two
processes (the server and a `registry gate add`) never deadlock on a lock
upgrade, and within one server process writers queue on a Python lock instead
of spinning in SQLite's busy handler. PostgreSQL uses row locks (see ingest).
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

DEFAULT_DB_URL = "sqlite:///var/registry.db"


class FifoLock:
    """A lock that serves waiters in arrival order.

    threading.Lock lets a thread that just released re-acquire at once, so
    under load some uploads wait seconds while others go round and round.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._held = False

    def __enter__(self):
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # the releasing thread handed the lock to us
        return self

    def __exit__(self, *exc):
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False
        return False


class Database:
    """An engine plus the write discipline of its dialect."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_postgres = engine.dialect.name == "postgresql"
        self._write_lock = FifoLock() if self.is_sqlite else contextlib.nullcontext()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: commit on success, roll back on error."""
        with self._write_lock:
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def insert(self, table):
        """An INSERT that supports on_conflict_do_nothing on both dialects."""
        return (sqlite.insert if self.is_sqlite else postgresql.insert)(table)

    def dispose(self) -> None:
        self.engine.dispose()


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3; a relative SQLite path is relative to the cwd."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_database(url: str = DEFAULT_DB_URL, *, pool_size: int = 20) -> Database:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=pool_size)
        _sqlite_discipline(engine)
    elif parsed.get_backend_name() == "postgresql":
        from sync.server import hotpath

        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=hotpath.BASELINE)
        if not hotpath.BASELINE:
            _ping_when_idle(engine)
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://...")
    return Database(engine)


def _sqlite_discipline(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against process crashes; a power cut
        # may lose the last commits, which the kiosks simply re-send (they
        # keep acked rows for 14 days) - FULL would halve ingest.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


# A connection back in the pool less than this long ago is used without a ping.
IDLE_PING_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for connections that sat idle (issue 14).

    pool_pre_ping costs a round trip on every checkout - under load that is
    one per request. A connection returned moments ago is almost surely
    alive; one idle past IDLE_PING_S (a PostgreSQL restart, a NAT timeout)
    is pinged, and a dead one is replaced before the request sees it. A
    connection that dies in between fails that one request as a 503 (the
    kiosk re-sends) and SQLAlchemy drops the pool's other connections.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        since = record.info.get("checked_in")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # the driver's own error type: the connection is gone
            raise exc.DisconnectionError() from error
        if not alive:
            raise exc.DisconnectionError()


def json_object(text: str | None) -> dict:
    """A JSON object stored in a text column (an event's payload, a registry entry);
    {} when it is empty, not JSON, or not an object, so a bad row never breaks a page."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
