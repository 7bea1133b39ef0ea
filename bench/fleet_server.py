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
"""

from __future__ import annotations

import argparse
import os
import sys
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
    http, loop = ("h11", "asyncio") if args.baseline else ("auto", "auto")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", http=http, loop=loop,
                backlog=4096)
    return 0


if __name__ == "__main__":
    sys.exit(main())
