"""`checkpoint run` (the kiosk) and `checkpoint simulate` (the same loop on fake hardware)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from gateway.config import HardwareSettings, load_config

EX_DATAERR = 65  # sysexits.h: the scenario file is wrong
EX_UNAVAILABLE = 69  # a device the kiosk cannot start without (GPIO claimed, ...)
EX_SOFTWARE = 70  # a bug stopped the loop: systemd restarts the kiosk


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="run the kiosk: camera, thermometer, gate relay and the guard screen",
        description="Run the gate checkpoint. The config chooses real (pi) or fake hardware. "
        "The guard screen is served on [screen] host:port (default 127.0.0.1:8080). "
        "Stops cleanly on Ctrl-C or SIGTERM, leaving the gate relay closed.",
        epilog="example: checkpoint run --config /etc/checkpoint/gate.toml",
    )
    run.add_argument("--config", required=True, help="the kiosk's TOML config file")
    run.add_argument("--host", help="serve the guard screen on this address instead of [screen] host")
    run.add_argument("--port", type=int, help="serve the guard screen on this port instead of [screen] port")
    run.add_argument("-v", "--verbose", action="store_true", help="log more")
    run.set_defaults(handler=run_kiosk)

    sim = sub.add_parser(
        "simulate",
        help="run the same loop on fake hardware, driven by a scenario file",
        description="Run the checkpoint loop on fake hardware: the fake camera shows each arrival's "
        "pass and the fake thermometer (the real MLX90614 driver on an emulated I2C bus) reports its "
        "temperature. Decisions are journalled exactly as on a real gate. With --json, one JSON object "
        "per decision is printed on stdout and the command exits when the scenario ends. The guard "
        "screen is served unless --json or --no-screen is given (--screen forces it).",
        epilog="example: checkpoint simulate --config deploy/sim.toml --scenario examples/morning-rush.yaml --json",
    )
    sim.add_argument("--config", required=True, help="the kiosk's TOML config file")
    sim.add_argument("--scenario", required=True, help="YAML or JSON scenario (see examples/)")
    sim.add_argument("--json", action="store_true", help="print one decision JSON object per line on stdout")
    sim.add_argument("--speed", type=float, default=1.0, help="play the scenario X times faster (default 1)")
    sim.add_argument("--loop", action="store_true", help="play the scenario again and again (until Ctrl-C)")
    screen = sim.add_mutually_exclusive_group()
    screen.add_argument("--screen", dest="screen", action="store_true", default=None, help="serve the guard screen")
    screen.add_argument("--no-screen", dest="screen", action="store_false", help="do not serve the guard screen")
    sim.add_argument("--host", help="guard screen address (default [screen] host)")
    sim.add_argument("--port", type=int, help="guard screen port (default [screen] port)")
    sim.add_argument("-v", "--verbose", action="store_true", help="log more")
    sim.set_defaults(handler=run_simulation)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _build(settings):
    from gateway.cli import CliError
    from gateway.journal import JournalWriteError
    from gateway.loop import build_app
    from gateway.passes import PassKeyError
    from drivers.errors import DriverError

    try:
        return build_app(settings)
    except PassKeyError as exc:
        raise CliError(f"issuer key: {exc}", 78) from exc
    except JournalWriteError as exc:
        raise CliError(str(exc), 74) from exc  # EX_IOERR
    except DriverError as exc:
        raise CliError(f"{exc} (use [hardware] kind = \"fake\" to try without a Pi)", EX_UNAVAILABLE) from exc


def _wait_for_signal(done: threading.Event, *also: threading.Event) -> None:
    """Block until `done` (or any of `also`) is set, or SIGTERM/SIGINT (main thread only)."""
    def handler(signum, frame):
        done.set()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not done.wait(0.2) and not any(e.is_set() for e in also):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _check_port(host: str, port: int) -> None:
    """Fail with one clear line now, not with a server traceback after start-up."""
    import socket

    from gateway.cli import CliError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CliError(f"guard screen: cannot resolve host {host!r}: {exc}", 78) from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise CliError(f"guard screen: cannot listen on {host}:{port}: {exc.strerror} "
                           "(is another kiosk or demo running? choose another --port)", EX_UNAVAILABLE) from exc


def run_kiosk(args: argparse.Namespace) -> int:
    _logging(args.verbose)
    settings = load_config(args.config)
    host = args.host or settings.screen.host
    port = args.port or settings.screen.port
    _check_port(host, port)
    app = _build(settings)
    from gateway.watchdog import Watchdog

    watchdog = Watchdog()  # under systemd: READY=1, and WATCHDOG=1 while the loop steps
    app.checkpoint.heartbeat = watchdog.beat
    # uvicorn handles SIGTERM while it serves, then restores the previous handler
    # and raises the signal again: with Python's default that kills the process
    # before app.stop() closes the relay. This handler makes it a clean stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: app.stop_event.set())
    try:
        app.start()
        print(f"checkpoint: gate {settings.gate.id} running; guard screen on http://{host}:{port}/", file=sys.stderr)
        watchdog.ready(f"gate {settings.gate.id} running")
        app.serve(host, port)
    finally:
        watchdog.stop()
        app.stop()
    if app.failed is not None:
        from gateway.cli import CliError

        raise CliError(f"the checkpoint loop crashed: {type(app.failed).__name__}: {app.failed}", EX_SOFTWARE)
    return 0


def run_simulation(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from gateway.scenario import ScenarioError, ScenarioPlayer, load_scenario, pass_texts

    _logging(args.verbose)
    if not 0 < args.speed <= 100:
        raise CliError(f"--speed {args.speed:g}: must be more than 0 and at most 100", 2)
    settings = load_config(args.config)
    # The same loop, on fake hardware whatever the config says.
    settings = settings.model_copy(update={"hardware": HardwareSettings(kind="fake")})
    try:
        scenario = load_scenario(args.scenario)
        texts = pass_texts(scenario, settings)  # may create the demo issuer keys
    except ScenarioError as exc:
        raise CliError(str(exc).replace("\n", "\ncheckpoint: error: "), EX_DATAERR) from exc
    serve = args.screen if args.screen is not None else not args.json
    host = args.host or settings.screen.host
    port = args.port or settings.screen.port
    if serve:
        _check_port(host, port)
    app = _build(settings)
    try:
        player = ScenarioPlayer(app, scenario, speed=args.speed, repeat=args.loop, texts=texts)
        player.seed_registry()
        app.checkpoint.listeners.append(_printer(args.json))
        app.start()
        stop = threading.Event()
        threading.Thread(target=player.run, args=(stop,), name="scenario", daemon=True).start()
        if serve:
            print(f"checkpoint: simulating {scenario.name!r}; guard screen on http://{host}:{port}/  "
                  f"(public side: /public)", file=sys.stderr)
            app.serve(host, port, until=player.done)
        else:
            _wait_for_signal(player.done, app.stop_event)
        stop.set()
    finally:
        app.stop()
    if app.failed is not None:
        raise CliError(f"the checkpoint loop crashed: {type(app.failed).__name__}: {app.failed}", EX_SOFTWARE)
    return 0


def _printer(as_json: bool):
    from gateway.journal import decision_record

    def emit(event: dict, decision) -> None:
        if event.get("kind") not in ("decision", "one_at_a_time", "vehicle"):  # a crowd is decided too: nobody passes
            return
        if as_json:
            line = json.dumps(decision_record(event), ensure_ascii=False)
        else:
            body = "—" if event.get("body_c") is None else f"{event['body_c']:.1f}℃"
            line = (f"{event['time'][11:19]}  #{event['seq']:<5} {event['decision']:<5} "
                    f"{'FEVER ' if event['flagged'] else ''}{event.get('person_id') or '-':<10} {body:>7}  "
                    f"{','.join(event['reasons'])}")
        # Printed only after the journal commit: a printed decision is on disk.
        print(line, flush=True)

    return emit
