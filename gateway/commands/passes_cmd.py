"""`checkpoint keys new`, `checkpoint pass issue`, `checkpoint pass verify`."""

from __future__ import annotations

import argparse
import json
import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

_PASS_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I: read aloud over the phone


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser(
        "keys",
        help="manage the pass-issuing key pair",
        description="Manage the community's pass-issuing key pair (Ed25519).",
        epilog="example: checkpoint keys new --out keys/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = keys_sub.add_parser(
        "new",
        help="write a new issuer.key (private) and issuer.pub",
        description="Write a new issuer key pair: DIR/issuer.key (private, mode 0600; keep it on "
        "the registry, never on a kiosk) and DIR/issuer.pub (give it to every kiosk). "
        "Refuses to overwrite an existing key unless --force.",
        epilog="example: checkpoint keys new --out keys/",
    )
    new.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write to")
    new.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    new.set_defaults(handler=keys_new)

    pass_ = sub.add_parser(
        "pass",
        help="issue or verify a signed pass",
        description="Issue or verify a signed QR pass.",
        epilog="example: checkpoint pass verify --pub keys/issuer.pub 'CP1:...'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pass_sub = pass_.add_subparsers(dest="pass_command", metavar="ACTION", required=True)
    issue = pass_sub.add_parser(
        "issue",
        help="sign a pass and print its QR text",
        description="Sign a pass and print its QR text (at most 160 ASCII characters). With "
        "--png, also write a printable QR code. The pass is valid from --from (default: now, "
        "to the minute) for --days days. A time without a UTC offset is local time.",
        epilog="example: checkpoint pass issue --key keys/issuer.key --person R-0301-02 "
        "--site site-1 --kind resident --days 14 --png pass.png",
    )
    issue.add_argument("--key", required=True, type=Path, metavar="FILE", help="issuer private key")
    issue.add_argument("--person", required=True, metavar="ID", help="person id")
    issue.add_argument("--site", required=True, metavar="ID", help="site (community) id")
    issue.add_argument("--kind", required=True, metavar="KIND", help="resident, staff, volunteer, visitor or courier")
    issue.add_argument("--days", required=True, type=float, metavar="N", help="days of validity (> 0)")
    issue.add_argument("--from", dest="valid_from", metavar="ISO", help="start of validity (default: now)")
    issue.add_argument("--pass-id", metavar="ID", help="pass id (default: 10 random characters)")
    issue.add_argument("--png", type=Path, metavar="FILE", help="also write the QR code as a PNG")
    issue.set_defaults(handler=pass_issue)

    verify = pass_sub.add_parser(
        "verify",
        help="check a pass and print a JSON verdict",
        description="Check a pass offline against issuer public keys and print a JSON verdict "
        "(valid, reasons, payload). Exits 0 if the pass is valid, 1 if not. --at checks it at "
        "another moment (a time without a UTC offset is local time).",
        epilog="example: checkpoint pass verify --pub keys/issuer.pub --at 2026-02-10T08:00+08:00 'CP1:...'",
    )
    verify.add_argument(
        "--pub", required=True, action="append", type=Path, metavar="FILE",
        help="issuer public key (repeat for several issuers)",
    )
    verify.add_argument("--at", metavar="ISO-TIME", help="check at this moment instead of now")
    verify.add_argument("--site", metavar="ID", help="also require the pass to be for this site")
    verify.add_argument("text", metavar="TEXT", help="the QR text")
    verify.set_defaults(handler=pass_verify)


def keys_new(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from gateway.passes import generate_keypair, key_id, load_public_key

    out: Path = args.out
    private_path, public_path = out / "issuer.key", out / "issuer.pub"
    if not args.force and (private_path.exists() or public_path.exists()):
        raise CliError(f"{private_path} already exists; use --force to replace it (old passes stop verifying)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = generate_keypair()
        _write_private(private_path, private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise CliError(f"cannot write keys to {out}: {exc.strerror or exc}") from None
    kid = key_id(load_public_key(public_path))
    print(f"wrote {private_path} (private, keep it off the kiosks) and {public_path} (key id {kid})")
    return 0


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start, so the key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def pass_issue(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from gateway.passes import PassFormatError, PassKeyError, issue_pass, load_private_key

    if not 0 < args.days <= 3660:
        raise CliError(f"--days {args.days:g}: must be more than 0 and at most 3660")
    start = _parse_time(args.valid_from, "--from") if args.valid_from else _now_minute()
    try:
        key = load_private_key(args.key)
        text = issue_pass(
            key,
            pass_id=args.pass_id or _new_pass_id(),
            person_id=args.person,
            site_id=args.site,
            kind=args.kind,
            valid_from=start,
            valid_to=start + timedelta(days=args.days),
        )
    except (PassKeyError, PassFormatError) as exc:
        raise CliError(str(exc)) from None
    if args.png:
        import segno

        try:
            # Error level M, boosted when the size allows: survives a worn printout.
            segno.make_qr(text, error="m").save(str(args.png), scale=10, border=4)
        except OSError as exc:
            raise CliError(f"cannot write {args.png}: {exc.strerror or exc}") from None
    print(text)
    return 0


def pass_verify(args: argparse.Namespace) -> int:
    from gateway.cli import CliError
    from gateway.passes import PassKeyError, load_public_keys, verify

    try:
        keys = load_public_keys(args.pub)
    except PassKeyError as exc:
        raise CliError(str(exc)) from None
    at = _parse_time(args.at, "--at") if args.at else datetime.now(timezone.utc)
    verdict = verify(args.text.strip(), keys, at)
    result = verdict.to_dict()
    if args.site and verdict.signature_ok and verdict.site_id != args.site:
        result["valid"] = False
        result["reasons"] = [*result["reasons"], "wrong_site"]
    result["checked_at"] = at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0 if result["valid"] else 1


def _parse_time(value: str, option: str) -> datetime:
    from gateway.cli import CliError

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option} {value!r}: expected an ISO 8601 time, e.g. 2026-02-10T08:00+08:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as a guard would type it
    return moment


def _now_minute() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


def _new_pass_id() -> str:
    return "".join(secrets.choice(_PASS_ID_ALPHABET) for _ in range(10))
