"""Subcommands of `checkpoint`. Each module has `register(subparsers)`.

Handlers import heavy modules (OpenCV, FastAPI, ...) inside the function, so
`checkpoint --help` and `check-config` start fast on a Pi.
"""

MODULES = [
    "gateway.commands.config_cmd",
    "gateway.commands.enrol_cmd",
    "gateway.commands.hardware_cmd",
    "gateway.commands.kiosk_cmd",
    "gateway.commands.passes_cmd",
    "gateway.commands.registry_cmd",
    "gateway.commands.service_cmd",
    "gateway.commands.sync_cmd",
]
