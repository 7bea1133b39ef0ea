"""`checkpoint enrol --config FILE --code CODE`: exchange a one-time enrolment
code for this gate's token and write it to `[sync] token_file`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enrol",
        help="enrol this gate with the registry using a one-time code",
        description="Exchange a one-time enrolment code (from registry staff: `checkpoint registry "
        "gate code`, or the staff API) for this gate's token, and write the token to the config's "
        "[sync] token_file (mode 0600). The code is for [gate] id at [gate] site and works once. "
        "An existing token file is kept unless --force is given.",
        epilog="example: checkpoint enrol --config /etc/checkpoint/gate.toml --code K7QF-M2XR-9PHD",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the kiosk config file (with [sync])")
    p.add_argument("--code", required=True, help="the one-time enrolment code")
    p.add_argument("--force", action="store_true", help="replace an existing token file")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server (default 15)")
    p.set_defaults(handler=run_enrol)


def run_enrol(args: argparse.Namespace) -> int:
    import httpx

    from gateway.cli import CliError
    from gateway.config import load_config
    from sync.protocol import API_PREFIX

    settings = load_config(args.config)
    sync = settings.sync
    if sync is None or sync.token_file is None:
        raise CliError(f"{args.config}: enrolment needs [sync] server and token_file", 78)
    token_file = Path(sync.token_file)
    if token_file.exists() and token_file.read_text(encoding="utf-8").strip() and not args.force:
        print(f"enrol: {token_file} already holds a token; keeping it (--force to replace)", file=sys.stderr)
        return 0
    url = sync.server.rstrip("/") + f"{API_PREFIX}/enrol"
    try:
        reply = httpx.post(url, json={"gate": settings.gate.id}, timeout=args.timeout,
                           headers={"Authorization": f"Bearer {args.code.strip()}"})
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the registry at {sync.server}: {exc}", 69) from exc
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail")
        except ValueError:
            detail = reply.text[:200]
        raise CliError(f"the registry refused the code ({reply.status_code}): {detail}", 1)
    body = reply.json()
    if body.get("site") != settings.gate.site:
        raise CliError(f"the code enrols gate {body.get('gate')} at site {body.get('site')}, but this "
                       f"config is for site {settings.gate.site}: fix [gate] site, then ask for a new code", 78)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = token_file.with_name(token_file.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body["token"] + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, token_file)
    print(f"enrol: gate {body['gate']} at site {body['site']} enrolled; token in {token_file}", file=sys.stderr)
    return 0
