"""A full disk is not corruption (issue 11): one clear error, nothing moved, nothing lost."""

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.journal import Journal

SCRIPT = Path(__file__).with_name("full_disk.py")


def run_full(path: Path, limit: int, action: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), str(path), str(limit), action],
                          capture_output=True, text=True, cwd=Path.cwd(), timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def seed(path: Path, n: int) -> str:
    journal = Journal.open(path)
    for _ in range(n):
        journal.append({"kind": "decision", "decision": "deny", "flagged": True, "body_c": 38.4})
    stream = journal.stream_id
    journal.close()
    return stream


def test_append_on_a_full_disk_is_a_journal_write_error_and_keeps_every_commit(tmp_path):
    path = tmp_path / "journal.db"
    stream = seed(path, 3)
    out = run_full(path, os.path.getsize(path) + 16384, "append")
    assert out["error"].startswith("JournalWriteError: "), out  # not "cannot rollback"
    assert "disk" in out["error"]
    journal = Journal.open(path)  # space again: the same stream, every commit there
    assert journal.stream_id == stream
    assert [e["seq"] for e in journal.events()] == list(range(1, out["last_seq"] + 1))
    assert journal.append({"kind": "decision"})["seq"] == out["last_seq"] + 1


def test_opening_on_a_full_disk_leaves_the_journal_where_it_is(tmp_path):
    path = tmp_path / "journal.db"
    stream = seed(path, 40)
    out = run_full(path, 0, "open")
    assert out["error"].startswith("JournalWriteError: "), out
    assert not list(tmp_path.glob("*corrupt*"))  # nothing moved aside
    journal = Journal.open(path)
    assert journal.stream_id == stream
    assert journal.pending_count() == 40
    assert [e["kind"] for e in journal.events()] == ["decision"] * 40
