"""`checkpoint sync now --config FILE`: the guard's "sync now" button as a command."""

from __future__ import annotations

import argparse
import json
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="sync this kiosk's journal with the community registry",
        description="Sync this kiosk's journal with the community registry.",
        epilog="example: checkpoint sync now --config deploy/sim.toml",
    )
    actions = p.add_subparsers(dest="sync_action", metavar="ACTION", required=True)
    now = actions.add_parser(
        "now",
        help="upload every pending event and download registry changes",
        description="Upload every pending event of this kiosk's journal and download registry changes, "
        "then print a JSON summary (uploaded, acked_through, pending, registry_cursor). Retries with "
        "backoff until --timeout. Exits 0 when nothing is left pending, 1 otherwise.",
        epilog="example: checkpoint sync now --config /etc/checkpoint/gate.toml --timeout 30",
    )
    now.add_argument("--config", required=True, help="the kiosk's TOML config")
    now.add_argument("--timeout", type=float, default=60.0,
                     help="give up retrying after this many seconds (default 60)")
    now.set_defaults(handler=run_now)


def run_now(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from gateway.config import load_config
    from gateway.journal import Journal, JournalWriteError
    from sync.client import AuthRefused, ProtocolError, SyncError, SyncWorker

    settings = load_config(args.config)
    if settings.sync is None:
        raise CliError(f"{args.config}: no [sync] section: this kiosk has no registry to sync with", 78)
    try:
        journal = Journal.open(settings.journal.path, retention_days=settings.journal.retention_days)
    except JournalWriteError as exc:  # a full disk: say so, move nothing
        raise CliError(str(exc), 74) from exc  # EX_IOERR
    worker = SyncWorker(journal, settings)
    deadline = time.monotonic() + max(0.0, args.timeout)
    summary: dict = {}
    try:
        while True:
            try:
                summary = worker.sync_once()
                if summary["pending"] == 0:
                    break
            except (AuthRefused, ProtocolError) as exc:
                summary = {"error": str(exc)}
                break
            except SyncError as exc:
                summary = {"error": str(exc)}
                delay = worker.backoff_delay(exc)
                if time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
                continue
            if time.monotonic() > deadline:
                break
        summary.setdefault("uploaded", 0)
        summary.setdefault("acked_through", None)
        summary["pending"] = journal.pending_count()
        summary.setdefault("registry_cursor", journal.registry_cursor())
        print(json.dumps(summary, ensure_ascii=False))
        return 0 if summary["pending"] == 0 and "error" not in summary else 1
    finally:
        worker.stop()
        journal.close()
