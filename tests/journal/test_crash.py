"""Power-cut stand-in: SIGKILL a writer mid-stream, several times."""

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.journal import Journal

WRITER = Path(__file__).with_name("crash_writer.py")


def run_and_kill(db: Path, rng: random.Random) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.05, 0.4))
    proc.kill()  # SIGKILL: no handlers, no flush, like pulling the plug on the process
    proc.wait()
    out = proc.stdout.read()
    return [int(line) for line in out.splitlines() if line.strip().isdigit()]


def test_every_reported_commit_survives_sigkill(tmp_path):
    db = tmp_path / "journal.db"
    rng = random.Random(20200209)
    reported: list[int] = []
    for _ in range(6):
        reported += run_and_kill(db, rng)
    assert len(reported) > 50, "the writer barely ran; the test proves nothing"

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    journal = Journal.open(db)
    seqs = [e["seq"] for e in journal.events()]
    assert set(reported) <= set(seqs)
    assert seqs == list(range(1, len(seqs) + 1))  # contiguous, no partial rows
    assert {e["stream_id"] for e in journal.events()} == {journal.stream_id}
