"""The switch for the cheaper small-upload path (issue 14).

Each saving on the upload path (the gate-token cache in auth, the stream
lock and small-batch insert in ingest, the idle-only connection ping in db)
checks `BASELINE` and, when it is set, runs the code as it was before, so
bench/fleet.py can measure today's path and the new one in the same run:

    CHECKPOINT_UPLOAD_BASELINE=1   the old path (the bench's anchor)

Read once at import: a server process is either one or the other.
"""

from __future__ import annotations

import os

BASELINE = os.environ.get("CHECKPOINT_UPLOAD_BASELINE", "") == "1"
