"""`checkpoint registry migrate`: upgrade the registry's schema, show its revision, or print the SQL.

Registered into `checkpoint registry` by registry_cmd with one call. The
server migrates by itself at start-up; this is for an upgrade by hand
before the new release's replicas start, or for a DBA who wants to read the
SQL first (README "Schema changes while replicas run").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register_registry_actions(actions, make_parser) -> None:
    """Add `migrate` to the `registry` subcommands (make_parser adds --db)."""
    p = make_parser(actions, "migrate", "upgrade the registry database to this release's schema "
                    "(or --status: show its revision; --sql: print the SQL instead)",
                    "checkpoint registry migrate --db postgresql://checkpoint@db.local/registry --status",
                    run_migrate)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true",
                      help="print the database's revision and this release's head as JSON; change nothing")
    what.add_argument("--sql", action="store_true",
                      help="print the SQL from the database's revision to head (for psql); change nothing")


def run_migrate(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from sqlalchemy.exc import SQLAlchemyError

    from sync.server.db import normalise_url

    url = normalise_url(args.db)
    try:
        if args.status or args.sql:
            status = _status(url)
            if args.status:
                print(json.dumps({"current": status.current, "head": status.head,
                                  "legacy_schema_version": status.legacy_version,
                                  "up_to_date": status.up_to_date}))
            else:
                sys.stdout.write(_sql(url, status))
            return 0
        return _upgrade(url)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    except SQLAlchemyError as exc:
        raise CliError(f"{args.db}: {str(exc).splitlines()[0]}") from None


def _missing_sqlite_file(url: str) -> bool:
    """A SQLite URL whose file does not exist: treated as an empty database, and not created."""
    if not url.startswith("sqlite:///"):
        return False
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return path not in ("", ":memory:") and not Path(path).is_file()


def _status(url: str):
    from sync.server.db import open_database
    from sync.server.schema_upgrade import Status, head, status

    if _missing_sqlite_file(url):
        return Status(current=None, head=head(), legacy_version=None)
    db = open_database(url, pool_size=1)
    try:
        return status(db)
    finally:
        db.dispose()


def _sql(url: str, status) -> str:
    from sqlalchemy.engine import make_url

    from sync.server.schema_upgrade import upgrade_sql

    dialect = make_url(url).get_backend_name()
    start = status.current
    header = f"-- registry schema: {start or 'no revision'} -> {status.head} ({dialect})\n"
    if start is None and status.legacy_version:
        header += (f"-- made before Alembic (legacy schema_version {status.legacy_version}); "
                   + ("the baseline only stamps it\n" if status.legacy_version == 6 else
                      "its remaining legacy steps run in the baseline\n"))
    if start == status.head:
        return header + "-- up to date: nothing to run\n"
    return header + upgrade_sql(dialect, start)


def _upgrade(url: str) -> int:
    from sync.server.db import open_database
    from sync.server.schema import migrate
    from sync.server.schema_upgrade import status

    db = open_database(url, pool_size=2)
    try:
        before = status(db).current
        after = migrate(db)
    finally:
        db.dispose()
    print(json.dumps({"from": before, "to": after}))
    return 0
