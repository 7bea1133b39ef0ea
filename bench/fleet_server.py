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
--baseline-code  only CHECKPOINT_UPLOAD_BASELINE=1, on httptools/uvloop.

Bench-only additions: GET /bench/gc reports the process's garbage
collections since the last call (count, total and longest pause), and
CHECKPOINT_BENCH_SLOWDOWN_MS (bench/common.py) sleeps before each upload in
the normal mode only - the path the bench measures, never its anchors.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--baseline-code", action="store_true",
                        help="only CHECKPOINT_UPLOAD_BASELINE=1, on httptools/uvloop: what the code changes alone save")
    args = parser.parse_args()
    if args.baseline or args.baseline_code:
        os.environ["CHECKPOINT_UPLOAD_BASELINE"] = "1"  # read by sync.server.hotpath at import

    import uvicorn

    from sync.server import create_app, open_database

    # Per-gate limits as in production; the global budget well above what one
    # process can serve, so the bench measures CPU, not the limiter.
    app = create_app(db=open_database(args.db), global_rate=100_000, global_burst=100_000)
    app.add_api_route("/bench/gc", gc_pauses(), methods=["GET"], include_in_schema=False)
    served = app
    if not (args.baseline or args.baseline_code):
        served = slowed_uploads(app)
    http, loop = ("h11", "asyncio") if args.baseline else ("auto", "auto")
    uvicorn.run(served, host="127.0.0.1", port=args.port, log_level="warning", http=http, loop=loop,
                backlog=4096)
    return 0


def gc_pauses():
    """Time each garbage collection; the route returns and resets the tally."""
    tally = {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
    began = [0.0]

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        pause = (time.perf_counter() - began[0]) * 1000
        tally["count"] += 1
        tally["total_ms"] += pause
        tally["max_ms"] = max(tally["max_ms"], pause)

    gc.callbacks.append(on_gc)

    def report() -> dict:
        out = dict(tally)
        tally.update(count=0, total_ms=0.0, max_ms=0.0)
        return out

    return report


def slowed_uploads(app):
    """The app with bench.common.slowdown() before each POST (returns app itself when the hook is off)."""
    from bench.common import _SLOWDOWN, slowdown

    if not _SLOWDOWN:
        return app

    async def slowed(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            slowdown()  # blocks the event loop, as CPU spent in the request would
        await app(scope, receive, send)

    return slowed


if __name__ == "__main__":
    sys.exit(main())
