"""`checkpoint check-config FILE`."""

from __future__ import annotations

import argparse

from gateway.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a kiosk config file",
        description="Validate a kiosk config file. Exits 0 when valid; otherwise prints one "
        "line per problem (file, key, value, what was expected) and exits 78.",
        epilog="example: checkpoint check-config deploy/gate.example.toml",
    )
    p.add_argument("file", help="the TOML config file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_config(args.file)
    print(f"{args.file}: ok (gate {settings.gate.id} at site {settings.gate.site}, "
          f"hardware {settings.hardware.kind})")
    return 0
