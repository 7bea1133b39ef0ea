"""`checkpoint gate-close --config FILE`: drive the gate relay closed, then exit.

checkpoint.service runs it as `ExecStopPost=`, after every stop of the kiosk,
however it ended: a clean stop already closed the relay (this is then a
no-op), but a kiosk killed by SIGKILL (stop timeout), the OOM killer or a
crash in a C library never ran its own shutdown.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gate-close",
        help="drive the gate relay closed (run by systemd after the kiosk stops)",
        description="Claim the relay pin from [outputs], drive it to closed and release it. "
        "Only touches the outputs (not the camera or thermometer). With [hardware] kind = "
        "\"fake\" it closes a mock relay.",
        epilog="example: checkpoint gate-close --config /etc/checkpoint/gate.toml",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the kiosk config file")
    p.set_defaults(handler=run_gate_close)


def run_gate_close(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from drivers.outputs import GateOutputs
    from gateway.cli import CliError
    from gateway.config import load_config

    settings = load_config(args.config)
    factory = None
    if settings.hardware.kind == "fake":
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    try:
        # Constructing drives every output to its off state (initial_value=False).
        with GateOutputs(settings.outputs, pin_factory=factory) as outputs:
            outputs.close_gate()
    except DriverError as exc:
        raise CliError(f"gate relay: {exc}", 69) from exc
    print(f"gate-close: relay on GPIO{settings.outputs.relay_pin} closed", flush=True)
    return 0
