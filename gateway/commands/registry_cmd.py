"""`checkpoint registry ...`: run the community server and manage what it holds."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

# Same as sync.server.db.DEFAULT_DB_URL; not imported so `--help` stays fast.
DEFAULT_DB_URL = "sqlite:///var/registry.db"
DB_HELP = "database URL (default sqlite:///var/registry.db; postgresql://user@host/db for PostgreSQL)"
# Same as sync.server.auth.ROLES.
ROLES = ("admin", "worker", "guard_supervisor", "inspector", "street_officer")
# Same as sync.server.retention.DEFAULT_RETENTION_DAYS / MAX_RETENTION_DAYS.
DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
RETENTION_HELP = (
    "delete events (temperatures, decisions, ledgers), quarantined events, clock anchors and acknowledged "
    "fever alerts this many days after the server received them; unacknowledged fever alerts stay "
    f"(default {DEFAULT_RETENTION_DAYS}: covers the 14-day home observation and leaves the street office "
    "time for its checks)"
)


def _add_db(p: argparse.ArgumentParser) -> None:
    # install-registry.sh puts the server's URL in CHECKPOINT_REGISTRY_DB (/etc/checkpoint-registry/registry.env).
    p.add_argument("--db", default=os.environ.get("CHECKPOINT_REGISTRY_DB", DEFAULT_DB_URL),
                   help=DB_HELP + "; $CHECKPOINT_REGISTRY_DB when set")


def _parser(sub, name: str, help: str, example: str, handler, *, changes: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                       epilog=f"example: {example}")
    _add_db(p)
    if changes:
        p.add_argument("--by", metavar="NAME",
                       help="your name, written to the audit log with the change "
                            "(default: the CHECKPOINT_OPERATOR environment variable; one of them is required)")
    p.set_defaults(handler=handler, changes=changes)
    return p


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2026-02-01") from None


def _retention_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days from 1 to {MAX_RETENTION_DAYS}")
    return days


def register(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser(
        "registry",
        help="the community registry server: serve, gates, people, keys, reports",
        description="The community registry server and the staff commands that fill it.",
        epilog="example: checkpoint registry serve --port 8700",
    )
    actions = reg.add_subparsers(dest="registry_action", metavar="ACTION", required=True)

    p = _parser(actions, "serve", "run the registry server", "checkpoint registry serve --db sqlite:///var/registry.db --port 8700", run_serve)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8700, help="port (default 8700)")
    p.add_argument("--retention-days", type=_retention_days, default=DEFAULT_RETENTION_DAYS, metavar="DAYS",
                   help=RETENTION_HELP + "; purged at start-up and then hourly")
    p.add_argument("--notify", type=Path, metavar="FILE",
                   help="TOML file of channels (e-mail, webhook, MQTT) that get street-office notices: "
                        "fever case, unstaffed gate, gate offline (see README 'Notifications to the street office')")
    p.add_argument("--redis", metavar="URL",
                   help="share rate limits and login throttling with every replica on this Redis "
                        "(e.g. redis://127.0.0.1:6379/0); default: counted in this process")
    p.add_argument("--gate-rate", type=float, default=50.0, metavar="PER_S",
                   help="uploads and registry reads per second one gate may make (default 50)")
    p.add_argument("--gate-burst", type=float, default=100.0, metavar="N",
                   help="requests one gate may make at once before --gate-rate applies (default 100)")
    p.add_argument("--issuer-passphrase-file", type=Path, metavar="FILE",
                   help="file whose first line unlocks the pass-issuing keys stored encrypted in the database "
                        "(default: $CHECKPOINT_ISSUER_PASSPHRASE; without either, passes cannot be issued)")

    p = _parser(actions, "purge", "delete health data older than the retention period once and print the counts",
                "checkpoint registry purge --db sqlite:///var/registry.db --retention-days 30 --dry-run", run_purge)
    p.add_argument("--retention-days", type=_retention_days, default=DEFAULT_RETENTION_DAYS, metavar="DAYS",
                   help=RETENTION_HELP)
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")

    from gateway.commands.backup_cmd import register_registry_actions

    register_registry_actions(actions, _parser)  # backup, restore

    from gateway.commands import migrate_cmd

    migrate_cmd.register_registry_actions(actions, _parser)  # migrate

    gate = actions.add_parser("gate", help="enrol, revoke and list gates",
                              description="Enrol, revoke and list gates.",
                              epilog="example: checkpoint registry gate add --site site-1 east-1")
    gate_actions = gate.add_subparsers(dest="gate_action", metavar="ACTION", required=True)
    p = _parser(gate_actions, "add", "enrol a gate and print its token once",
                "checkpoint registry gate add --site site-1 east-1 > east-1.token", run_gate_add, changes=True)
    p.add_argument("--site", required=True, help="the site (community) id")
    p.add_argument("name", help="the gate's id, as in its config's [gate] id")
    p = _parser(gate_actions, "revoke", "revoke a gate's token (its data stays)",
                "checkpoint registry gate revoke --site site-1 east-1", run_gate_revoke, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("name")
    p = _parser(gate_actions, "list", "list gates as JSON lines", "checkpoint registry gate list --site site-1",
                run_gate_list)
    p.add_argument("--site")
    p = _parser(gate_actions, "code", "create a one-time enrolment code for a gate (checkpoint enrol)",
                "checkpoint registry gate code --site site-1 east-1 --by 王主任", run_gate_code, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--minutes", type=int, default=30, help="valid this long (default 30, at most 1440)")
    p.add_argument("name", help="the gate's id, as in its config's [gate] id")

    staff = actions.add_parser("staff", help="staff accounts: roles, sites, passwords, API tokens",
                               description="Staff accounts: roles, sites, passwords and API tokens.",
                               epilog="example: checkpoint registry staff add wang --role admin --site '*' --by 王主任")
    staff_actions = staff.add_subparsers(dest="staff_action", metavar="ACTION", required=True)
    p = _parser(staff_actions, "add", "create a staff account (the first administrator too) and print its API token once",
                "checkpoint registry staff add wang --role worker --site site-1 --password-file pw.txt --by 王主任",
                run_staff_add, changes=True)
    p.add_argument("--role", required=True, choices=ROLES,
                   help="admin, worker (community worker), guard_supervisor, inspector (read-only), "
                        "street_officer (reads its street offices' communities)")
    p.add_argument("--site", action="append", default=[], metavar="SITE",
                   help="a site the account works at; repeat for several; '*' for every site")
    p.add_argument("--office", action="append", default=[], metavar="OFFICE",
                   help="a street office (street_officer only); repeat for several")
    p.add_argument("--password-file", type=Path, metavar="FILE",
                   help="read the page log-in password from the first line of FILE "
                        "(default: ask on the terminal; with no terminal the account gets only an API token)")
    p.add_argument("name")
    p = _parser(staff_actions, "passwd", "set a staff account's page log-in password (ends its sessions)",
                "checkpoint registry staff passwd wang --password-file pw.txt --by 王主任", run_staff_passwd,
                changes=True)
    p.add_argument("--password-file", type=Path, metavar="FILE", help="default: ask on the terminal")
    p.add_argument("name")
    p = _parser(staff_actions, "revoke", "revoke a staff account (token and sessions)",
                "checkpoint registry staff revoke wang --by 王主任", run_staff_revoke, changes=True)
    p.add_argument("name")
    p = _parser(staff_actions, "list", "list staff accounts as JSON lines (no secrets)",
                "checkpoint registry staff list", run_staff_list)

    site = actions.add_parser("site", help="communities and their street offices",
                              description="Communities (sites) and the street offices they report to.",
                              epilog="example: checkpoint registry site add site-1 --name 阳光小区 --office 东城街道 --by 王主任")
    site_actions = site.add_subparsers(dest="site_action", metavar="ACTION", required=True)
    p = _parser(site_actions, "add", "add or update a community and its street office",
                "checkpoint registry site add site-1 --name 阳光小区 --office 东城街道 --by 王主任", run_site_add,
                changes=True)
    p.add_argument("--name", default="", help="the community's name")
    p.add_argument("--office", help="the street office it reports to")
    p.add_argument("site_id")
    p = _parser(site_actions, "list", "list known communities as JSON lines", "checkpoint registry site list",
                run_site_list)

    person = actions.add_parser("person", help="residents in the registry", description="Residents in the registry.",
                                epilog="example: checkpoint registry person add --site site-1 --name 张三 --unit 3-2-101 p-001")
    person_actions = person.add_subparsers(dest="person_action", metavar="ACTION", required=True)
    p = _parser(person_actions, "add", "add or update a resident",
                "checkpoint registry person add --site site-1 --name 张三 --unit 3-2-101 p-001", run_person_add, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--unit", default="")
    p.add_argument("--status", choices=["active", "moved_out"], default="active")
    p.add_argument("--observation-until", type=_day, help="last day of home observation (YYYY-MM-DD)")
    p.add_argument("--risk", choices=["green", "yellow", "red"])
    p.add_argument("--returnee", action="store_true",
                   help="returned from elsewhere: 14 days of home observation from --arrival (default today)")
    p.add_argument("--arrival", type=_day, help="the returnee's arrival date (YYYY-MM-DD)")
    p.add_argument("person_id")
    p = _parser(person_actions, "observe", "start or end (--until none) a home observation period",
                "checkpoint registry person observe --site site-1 --until 2026-02-14 p-001", run_person_observe, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--until", required=True, help="YYYY-MM-DD, or 'none' to end it")
    p.add_argument("--risk", choices=["green", "yellow", "red"])
    p.add_argument("--reason", help="why an end date already set changes (required then; audited)")
    p.add_argument("person_id")

    p = _parser(actions, "revoke-pass", "revoke a pass at a site's gates",
                "checkpoint registry revoke-pass --site site-1 --reason lost ps-123", run_revoke_pass, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--reason", default="")
    p.add_argument("pass_id")

    key = actions.add_parser("key", help="issuer public keys pushed to gates", description="Issuer public keys.",
                             epilog="example: checkpoint registry key add --site site-1 --pub keys/issuer.pub")
    key_actions = key.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    p = _parser(key_actions, "add", "publish an issuer public key to a site's gates (site * for all)",
                "checkpoint registry key add --site site-1 --pub keys/issuer.pub", run_key_add, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--pub", required=True, type=Path, help="the issuer.pub PEM file")

    p = _parser(actions, "policy", "publish a site's policy document (JSON with an integer version)",
                "checkpoint registry policy --site site-1 --file policy.json", run_policy, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--file", required=True, type=Path)

    from gateway.commands import people_cmd

    people_cmd.register(actions, _parser)

    report = actions.add_parser("report", help="reports for the street office", description="Reports.",
                                epilog="example: checkpoint registry report daily --site site-1 --date 2026-02-01")
    report_actions = report.add_subparsers(dest="report_action", metavar="ACTION", required=True)
    p = _parser(report_actions, "daily", "print one site's report for one day",
                "checkpoint registry report daily --site site-1 --date 2026-02-01 --format csv", run_report_daily)
    p.add_argument("--site", required=True)
    p.add_argument("--date", required=True, type=_day, help="YYYY-MM-DD")
    p.add_argument("--format", choices=["json", "csv", "xlsx"], default="json")
    p.add_argument("--tz", default="Asia/Shanghai", help="the day's time zone (default Asia/Shanghai)")
    p.add_argument("--out", type=Path, help="write to this file instead of stdout")


def _db(args, *, existing: bool = False):
    """The registry database, migrated. `existing=True` (commands that only
    read) refuses a missing SQLite file or a database that is not a registry,
    instead of creating an empty one."""
    from sync.server.db import open_database
    from sync.server.schema import migrate
    from gateway.cli import CliError

    if getattr(args, "changes", False):
        args.by = (args.by or os.environ.get("CHECKPOINT_OPERATOR") or "").strip()
    if getattr(args, "changes", False) and not args.by:
        raise CliError("say who makes this change: --by NAME (or set CHECKPOINT_OPERATOR); "
                       "it goes into the audit log", 2)
    if existing:
        _check_exists(args.db)
    try:
        db = open_database(args.db)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if existing:
        from sqlalchemy import inspect
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with db.engine.connect() as conn:
                is_registry = inspect(conn).has_table("meta") and inspect(conn).has_table("registry_changes")
        except SQLAlchemyError as exc:
            db.dispose()
            raise CliError(f"{args.db}: cannot open: {str(exc).splitlines()[0]}", 2) from None
        if not is_registry:
            db.dispose()
            raise CliError(f"{args.db}: not a registry database (no registry tables); check --db", 2)
    migrate(db)
    return db


def _check_exists(url: str) -> None:
    from gateway.cli import CliError

    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        if path in ("", ":memory:") or not Path(path).is_file():
            raise CliError(f"{url}: no such database file; check --db (nothing was created)", 2)


def _by(args) -> str:
    return args.by.strip()


def _fail(exc: Exception):
    from gateway.cli import CliError

    raise CliError(str(exc)) from None


def run_serve(args) -> int:
    import uvicorn

    from sync.server import create_app

    from sync.server.notify_config import load_notify_config

    notify_config = load_notify_config(args.notify) if args.notify else None
    if not (args.gate_rate > 0 and args.gate_burst >= 1):
        _fail(ValueError("--gate-rate must be > 0 and --gate-burst >= 1"))
    db = _db(args)
    from sync.server.issuing import IssuingError, load_passphrase

    try:
        passphrase = load_passphrase(args.issuer_passphrase_file)
    except IssuingError as exc:
        _fail(exc)
    if passphrase is None:
        print("registry: no issuer passphrase (--issuer-passphrase-file or $CHECKPOINT_ISSUER_PASSPHRASE): "
              "the staff pages cannot issue passes", file=sys.stderr)
    try:
        app = create_app(db=db, retention_days=args.retention_days, notify_config=notify_config,
                         redis_url=args.redis, gate_rate=args.gate_rate, gate_burst=args.gate_burst,
                         issuer_passphrase=passphrase)
    except ValueError as exc:  # e.g. a --redis URL that is not redis://
        _fail(exc)
    print(f"registry: serving {args.db} on http://{args.host}:{args.port} (API docs at /api/docs); "
          f"health data kept {args.retention_days} days; "
          f"notices: {len(notify_config.channels) if notify_config else 0} channel(s); "
          f"rate limits: {'shared through Redis' if args.redis else 'counted in this process'}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def run_purge(args) -> int:
    from datetime import datetime, timezone

    from sync.server.retention import cutoff_for, purge

    now = datetime.now(timezone.utc)
    counts = purge(_db(args), now, args.retention_days, dry_run=args.dry_run)
    print(json.dumps({"retention_days": args.retention_days,
                      "cutoff": cutoff_for(now, args.retention_days).isoformat(timespec="seconds"),
                      "dry_run": args.dry_run, "deleted": counts}))
    return 0


def run_gate_add(args) -> int:
    from sync.server import auth

    try:
        gate, token = auth.add_gate(_db(args), args.site, args.name, by=_by(args))
    except auth.EnrolmentError as exc:
        _fail(exc)
    print(f"enrolled gate {gate.name} (id {gate.id}) at site {gate.site_id}; its token follows, "
          "shown only this once - put it in the kiosk's [sync] token_file", file=sys.stderr)
    print(token)
    return 0


def run_gate_revoke(args) -> int:
    from sync.server import auth

    try:
        gate = auth.revoke_gate(_db(args), args.site, args.name, by=_by(args))
    except auth.EnrolmentError as exc:
        _fail(exc)
    print(f"revoked gate {gate.name} (id {gate.id}) at site {gate.site_id}")
    return 0


def run_gate_list(args) -> int:
    from sync.server import auth

    for row in auth.list_gates(_db(args, existing=True), args.site):
        print(json.dumps(row, default=str, ensure_ascii=False))
    return 0


def _password(args, *, required: bool) -> str | None:
    import getpass

    if args.password_file:
        try:
            lines = args.password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{args.password_file}: cannot read: {exc}")
        if not lines or not lines[0]:
            _fail(f"{args.password_file}: the first line (the password) is empty")
        return lines[0]
    if not sys.stdin.isatty():
        if required:
            _fail("no terminal to ask for the password: use --password-file FILE")
        return None
    first = getpass.getpass("password (8 or more characters): ")
    if first != getpass.getpass("again: "):
        _fail("the two passwords differ")
    return first


def run_gate_code(args) -> int:
    from sync.server.enrolment import create_code

    try:
        code, expires = create_code(_db(args), args.site, args.name, by=_by(args), minutes=args.minutes)
    except ValueError as exc:
        _fail(exc)
    print(f"one-time code for gate {args.name} at site {args.site}, valid until {expires:%Y-%m-%d %H:%M} UTC: "
          "on the kiosk run install-kiosk.sh --enrol-code CODE (or checkpoint enrol)", file=sys.stderr)
    print(code)
    return 0


def run_staff_add(args) -> int:
    from sync.server import auth

    db = _db(args)
    password = _password(args, required=False)
    try:
        member, token = auth.add_staff(db, args.name, role=args.role, sites=args.site, offices=args.office,
                                       password=password, by=_by(args))
    except auth.EnrolmentError as exc:
        _fail(exc)
    scope = ", ".join(args.site or [f"office {o}" for o in args.office])
    login = "can log in to the pages" if password else "has no page password yet (staff passwd)"
    print(f"staff account {member.name} (id {member.id}), {member.role} at {scope}; {login}; "
          "its API token follows, shown only this once", file=sys.stderr)
    print(token)
    return 0


def run_staff_passwd(args) -> int:
    from sync.server import auth

    db = _db(args)
    try:
        auth.set_password(db, args.name, _password(args, required=True), by=_by(args))
    except auth.EnrolmentError as exc:
        _fail(exc)
    print(f"password of {args.name} set; their open sessions ended", file=sys.stderr)
    return 0


def run_staff_revoke(args) -> int:
    from sync.server import auth

    try:
        auth.revoke_staff(_db(args), args.name, by=_by(args))
    except auth.EnrolmentError as exc:
        _fail(exc)
    print(f"revoked staff member {args.name}")
    return 0


def run_staff_list(args) -> int:
    from sync.server import auth

    for row in auth.list_staff(_db(args, existing=True)):
        print(json.dumps(row, default=str, ensure_ascii=False))
    return 0


def run_site_add(args) -> int:
    from sync.server.sites import SiteError, add_site

    try:
        row = add_site(_db(args), args.site_id, name=args.name, street_office=args.office, by=_by(args))
    except SiteError as exc:
        _fail(exc)
    print(json.dumps(row, ensure_ascii=False))
    return 0


def run_site_list(args) -> int:
    from sync.server.sites import known_sites, site_rows

    db = _db(args, existing=True)
    rows = site_rows(db)
    for site_id in known_sites(db):
        print(json.dumps({"site_id": site_id, **rows.get(site_id, {"name": "", "street_office": None})},
                         ensure_ascii=False))
    return 0


def run_person_add(args) -> int:
    from sync.server import registry

    if args.returnee and args.observation_until is None:
        from sync.server.people import observation_end, today_in_china

        args.observation_until = observation_end(args.arrival or today_in_china())
    try:
        payload = registry.add_person(_db(args), args.site, args.person_id, name=args.name, unit=args.unit,
                                      status=args.status, observation_until=args.observation_until,
                                      risk=args.risk, returnee=args.returnee, by=_by(args))
    except registry.RegistryError as exc:
        _fail(exc)
    print(json.dumps({"person_id": args.person_id, **payload}, ensure_ascii=False))
    return 0


def run_person_observe(args) -> int:
    from sync.server import registry

    until = None if args.until.lower() == "none" else _day(args.until)
    try:
        payload = registry.set_observation(_db(args), args.site, args.person_id, until, risk=args.risk, by=_by(args),
                                           reason=args.reason)
    except registry.RegistryError as exc:
        _fail(exc)
    print(json.dumps({"person_id": args.person_id, **payload}, ensure_ascii=False))
    return 0


def run_revoke_pass(args) -> int:
    from sync.server import registry

    payload = registry.revoke_pass(_db(args), args.site, args.pass_id, args.reason, by=_by(args))
    print(json.dumps({"pass_id": args.pass_id, **payload}, ensure_ascii=False))
    return 0


def run_key_add(args) -> int:
    from sync.server import registry

    try:
        pem = args.pub.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{args.pub}: cannot read: {exc}")
    try:
        kid = registry.add_key(_db(args), args.site, pem, by=_by(args))
    except registry.RegistryError as exc:
        _fail(f"{args.pub}: {exc}")
    print(json.dumps({"kid": kid, "site": args.site}))
    return 0


def run_policy(args) -> int:
    from sync.server import registry

    try:
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{args.file}: {exc}")
    if not isinstance(document, dict):
        _fail(f"{args.file}: a policy document is a JSON object")
    try:
        version = registry.set_policy(_db(args), args.site, document, by=_by(args))
    except registry.RegistryError as exc:
        _fail(f"{args.file}: {exc}")
    print(json.dumps({"site": args.site, "version": version}))
    return 0


def run_report_daily(args) -> int:
    from sync.server import exports
    from sync.server.daily import site_daily, site_daily_csv_rows, site_daily_sheets
    from sync.server.reports import ReportError
    from sync.server.sites import known_sites

    db = _db(args, existing=True)
    sites = known_sites(db)
    if args.site not in sites:
        _fail(f"unknown site {args.site!r}; this registry has: {', '.join(sites) or 'no sites yet'}")
    try:
        report = site_daily(db, args.site, args.date, args.tz)
    except ReportError as exc:
        _fail(exc)
    if args.format == "json":
        data = (json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n").encode("utf-8")
    elif args.format == "csv":
        data = exports.to_csv(*site_daily_csv_rows(report))
    else:
        data = exports.to_xlsx(site_daily_sheets(report))
        if args.out is None and sys.stdout.isatty():
            _fail("xlsx is binary: use --out FILE or redirect stdout")
    if args.out:
        args.out.write_bytes(data)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
