"""Run a journal action in a process whose files cannot grow: a full disk.

`RLIMIT_FSIZE` makes the kernel refuse writes past the limit (SIGXFSZ is
ignored, so the write fails as on a full disk), which is what SQLite meets
when the SD card fills up. Prints one JSON line with what happened.

    python full_disk.py JOURNAL LIMIT_BYTES append|open|sync
"""

import json
import resource
import signal
import sys

from gateway.journal import Journal, JournalWriteError

path, limit, action = sys.argv[1], int(sys.argv[2]), sys.argv[3]
journal = Journal.open(path) if action == "append" else None
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
out: dict = {}
try:
    if action == "open":
        journal = Journal.open(path)
    for i in range(200):
        journal.append({"kind": "decision", "decision": "deny", "flagged": True, "body_c": 38.5,
                        "detail": {"pad": "x" * 2000}})
    out["error"] = None
except JournalWriteError as exc:
    out["error"] = f"JournalWriteError: {exc}"
except Exception as exc:  # noqa: BLE001 - the test reports what escaped
    out["error"] = f"{type(exc).__name__}: {exc}"
if journal is not None:
    out["last_seq"] = journal.last_seq()
print(json.dumps(out), flush=True)
