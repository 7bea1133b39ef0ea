"""`checkpoint registry backup` and `checkpoint registry restore` (see sync.server.backup).

Registered into `checkpoint registry` by registry_cmd with one call."""

from __future__ import annotations

import argparse
import json
import sys


def register_registry_actions(actions, make_parser) -> None:
    """Add `backup` and `restore` to the `registry` subcommands (make_parser adds --db)."""
    p = make_parser(actions, "backup", "write a consistent backup of the registry database into a folder",
                    "checkpoint registry backup --db sqlite:////var/lib/checkpoint-registry/registry.db "
                    "--out /var/backups/checkpoint-registry --keep 14", run_backup)
    p.add_argument("--out", required=True, help="folder for the backup files (created if missing)")
    p.add_argument("--keep", type=int, help="then delete all but the newest KEEP backups there")
    p = make_parser(actions, "restore", "replace the registry database with a backup (stop the server first)",
                    "checkpoint registry restore --db sqlite:////var/lib/checkpoint-registry/registry.db "
                    "/var/backups/checkpoint-registry/registry-20260201T020000000000Z.sqlite3", run_restore)
    p.add_argument("file", help="a backup file written by `checkpoint registry backup`")


def run_backup(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from sync.server.backup import BackupError, backup

    try:
        path = backup(args.db, args.out, keep=args.keep)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({"backup": str(path), "bytes": path.stat().st_size}))
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from sync.server.backup import BackupError, restore
    from sync.server.db import open_database
    from sync.server.schema import migrate

    try:
        restore(args.db, args.file)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    db = open_database(args.db)
    try:
        version = migrate(db)  # an older backup is brought up to this release's schema now
    finally:
        db.dispose()
    print(f"restored {args.file} (schema revision {version}); start the server: kiosks re-send what the "
          "backup is missing", file=sys.stderr)
    return 0
