"""One registry server process for bench/fleet.py.

    python -m bench.fleet_server --db URL --port N [--baseline]

The same app as `checkpoint registry serve` (create_app on an opened
database, served by uvicorn) with two bench switches:

--baseline   the anchor: the request path before issue 14 - uvicorn's
             pure-Python h11 parser and the asyncio loop (what `registry
             serve` got from the declared dependencies before httptools and
             uvloop were added) and CHECKPOINT_UPLOAD_BASELINE=1 (no gate-token
             cache, the old ingest statements, a ping on every checkout:
             sync/server/hotpath.py).
CHECKPOINT_FLEET_SLOWDOWN_MS (environment)
             a deliberately slowed build: every request burns this many ms of
             CPU before the app sees it, so the bench must report a miss.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLOWDOWN_ENV = "CHECKPOINT_FLEET_SLOWDOWN_MS"


class Slowdown:
    """ASGI wrapper burning CPU per request (the bench's self-test of a miss)."""

    def __init__(self, app, ms: float):
        self.app, self.seconds = app, ms / 1000

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            end = time.thread_time() + self.seconds
            while time.thread_time() < end:  # CPU, not sleep: the bench measures CPU
                pass
        return await self.app(scope, receive, send)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    if args.baseline:
        os.environ["CHECKPOINT_UPLOAD_BASELINE"] = "1"  # read by sync.server.hotpath at import

    import uvicorn

    from sync.server import create_app, open_database

    # Per-gate limits as in production; the global budget well above what one
    # process can serve, so the bench measures CPU, not the limiter.
    app = create_app(db=open_database(args.db), global_rate=100_000, global_burst=100_000)
    slowdown = float(os.environ.get(SLOWDOWN_ENV) or 0)
    if slowdown > 0:
        app = Slowdown(app, slowdown)
    http, loop = ("h11", "asyncio") if args.baseline else ("auto", "auto")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", http=http, loop=loop,
                backlog=4096)
    return 0


if __name__ == "__main__":
    sys.exit(main())
