"""`checkpoint ...`: a thin command line over the gateway, drivers and sync.

Errors are one line (`checkpoint: error: ...`); set CHECKPOINT_DEBUG=1 for a
traceback. A bad config exits 78 (EX_CONFIG) so systemd does not restart-loop.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from gateway.commands import MODULES
from gateway.config import EX_CONFIG, ConfigError


class CliError(Exception):
    """A user-facing failure: printed as one line, exits with `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="checkpoint",
        description="Temperature-screening gate checkpoint: kiosk, simulator and community registry.",
        epilog="example: checkpoint simulate --config deploy/sim.toml --scenario examples/morning-rush.yaml --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EX_CONFIG
    except CliError as exc:
        _debug_traceback()
        print(f"checkpoint: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one place that turns any crash into one line
        _debug_traceback()
        print(f"checkpoint: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _debug_traceback() -> None:
    if os.environ.get("CHECKPOINT_DEBUG") == "1":
        traceback.print_exc()


if __name__ == "__main__":
    # `python -m gateway.cli` runs this file as __main__, a second copy of the
    # module: dispatch through the imported one so the CliError that handlers
    # raise (gateway.cli.CliError) is the class caught above.
    from gateway.cli import main as _main

    sys.exit(_main())
