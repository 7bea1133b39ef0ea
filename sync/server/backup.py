"""Backing up and restoring the registry database.

    checkpoint registry backup  --db URL --out DIR [--keep N]   (nightly, by checkpoint-registry-backup.timer)
    checkpoint registry restore --db URL FILE                   (with the server stopped)

- SQLite: SQLite's online backup API copies a consistent snapshot while the
  server keeps writing (WAL), then the copy is integrity-checked. Restoring
  replaces the database file (and drops its stale -wal/-shm files).
- PostgreSQL: `pg_dump --format=custom` (one consistent snapshot), restored
  with `pg_restore --clean --if-exists --single-transaction`. A registry kept
  in its own schema (`options=-csearch_path=NAME` in the URL) is dumped and
  restored as that schema only, never the rest of the database.

Why a restored server loses nothing: its per-stream watermark comes from the
same snapshot as its events, so after a restore it answers each kiosk with a
lower `acked_through`, and the kiosk re-sends everything after it from its
journal (acked rows are kept `[journal] retention_days`, 14 by default). Events
the backup has are skipped by the watermark, so nothing is stored twice. Back
up more often than the kiosks' retention, or events between the backup and the
loss are gone for good.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.engine import make_url

SQLITE_SUFFIX = ".sqlite3"
PG_SUFFIX = ".pgdump"


class BackupError(RuntimeError):
    """A backup or restore that did not complete; the message says what to do."""


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError(f"{url}: an in-memory database cannot be backed up")
    return Path(parsed.database)


def pg_schema(url: str) -> str | None:
    """The schema named by `options=-csearch_path=NAME` in a PostgreSQL URL, if any."""
    options = parse_qs(urlsplit(url).query).get("options", [])
    for option in options:
        match = re.search(r"-c\s*search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)", unquote(option))
        if match:
            return match.group(1)
    return None


def _libpq_url(url: str) -> str:
    """pg_dump wants postgresql://, not SQLAlchemy's postgresql+psycopg://."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def backup(url: str, out_dir: str | Path, *, keep: int | None = None) -> Path:
    """Write one backup file into `out_dir` and return its path; prune to the newest `keep`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = _sqlite_path(url)
    if source is not None:
        target = _backup_sqlite(source, out)
        suffix = SQLITE_SUFFIX
    else:
        target = _backup_pg(url, out)
        suffix = PG_SUFFIX
    if keep is not None:
        prune(out, keep, suffix)
    return target


def _backup_sqlite(source: Path, out: Path) -> Path:
    if not source.exists():
        raise BackupError(f"{source}: no such database file")
    target = out / f"registry-{_stamp()}{SQLITE_SUFFIX}"
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # a consistent snapshot, even while the server writes
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    if ok != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"the copy of {source} failed its integrity check: {ok}")
    _fsync_file(partial)
    os.replace(partial, target)
    return target


def _backup_pg(url: str, out: Path) -> Path:
    target = out / f"registry-{_stamp()}{PG_SUFFIX}"
    partial = target.with_name(target.name + ".partial")
    command = ["pg_dump", "--format=custom", "--no-owner", f"--file={partial}", f"--dbname={_libpq_url(url)}"]
    schema = pg_schema(url)
    if schema:
        command.insert(1, f"--schema={schema}")
    _run(command, "pg_dump")
    _fsync_file(partial)
    os.replace(partial, target)
    return target


def restore(url: str, backup_file: str | Path) -> None:
    """Replace the database with a backup. Stop the server first."""
    backup_file = Path(backup_file)
    if not backup_file.is_file():
        raise BackupError(f"{backup_file}: no such backup file")
    target = _sqlite_path(url)
    if target is not None:
        if backup_file.suffix != SQLITE_SUFFIX:
            raise BackupError(f"{backup_file}: not an SQLite backup ({SQLITE_SUFFIX}); the database is SQLite")
        _restore_sqlite(backup_file, target)
    else:
        if backup_file.suffix != PG_SUFFIX:
            raise BackupError(f"{backup_file}: not a PostgreSQL backup ({PG_SUFFIX}); the database is PostgreSQL")
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
              f"--dbname={_libpq_url(url)}", str(backup_file)], "pg_restore")


def _restore_sqlite(backup_file: Path, target: Path) -> None:
    check = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        ok = check.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        check.close()
    if ok != "ok":
        raise BackupError(f"{backup_file} failed its integrity check ({ok}); choose an older backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restoring")
    shutil.copyfile(backup_file, partial)
    _fsync_file(partial)
    # The old database's write-ahead log belongs to the old file: replaying it
    # onto the restored one would corrupt it.
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(partial, target)


def prune(out: Path, keep: int, suffix: str) -> list[Path]:
    """Delete all but the newest `keep` backups with `suffix` (names sort by time)."""
    if keep < 1:
        raise BackupError(f"keep = {keep}: keep at least one backup")
    files = sorted(out.glob(f"registry-*{suffix}"))
    gone = files[:-keep]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def _run(command: list[str], name: str) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{name} is not installed (apt-get install postgresql-client)")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{name} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
