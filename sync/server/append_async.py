"""The usual small upload straight from the event loop (issue 14).

A gate this process already knows (auth.cached_gate) sending plain events
right after its stream's watermark needs one statement (ingest.plain_append).
Sent from a worker thread, that cost two thread switches and the GIL
hand-offs between them - more CPU than the statement itself. Here it goes
out on a small pool of psycopg AsyncConnections (autocommit) owned by the
running event loop.

Anything else - no statement applies, it did nothing (new stream, duplicate,
gap), or the driver failed (the statement may or may not have committed) -
returns None and the caller takes the full path, which decides under the
stream's lock by the watermark: exactly once either way.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import psycopg

from sync.server import hotpath
from sync.server.auth import Gate
from sync.server.db import Database
from sync.server.ingest import IngestResult, appended_result, check_events, plain_append

log = logging.getLogger(__name__)
POOL_SIZE = 8


class AsyncAppender:
    def __init__(self, db: Database):
        self.db = db
        self.enabled = db.is_postgres and not hotpath.BASELINE
        self._conninfo = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None

    async def append(self, gate: Gate, stream_id: str, first_seq: int, items: list) -> IngestResult | None:
        if not self.enabled:
            return None
        checked = check_events(items)
        statement = plain_append(self.db, gate, stream_id, first_seq, checked, datetime.now(timezone.utc))
        if statement is None:
            return None
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to one loop (tests start several)
            self._loop, self._idle, self._slots = loop, [], asyncio.Semaphore(POOL_SIZE)
        async with self._slots:
            conn = None
            try:
                conn = self._idle.pop() if self._idle else await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5)
                async with conn.cursor() as cursor:
                    await cursor.execute(*statement)
                    inserted = cursor.rowcount
            except psycopg.Error as exc:
                log.warning("one-statement upload failed, taking the full path: %s", exc)
                if conn is not None:
                    await conn.close()
                return None
            self._idle.append(conn)
        return appended_result(first_seq, inserted) if inserted == len(checked) else None
