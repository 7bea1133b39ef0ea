"""`checkpoint registry import | passes | returnee`: ledgers, passes and returnees from the shell.

The same services as the staff pages (sync.server.imports, issuing, people),
so the same checks, one transaction per command and an audit record with
`--by NAME`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(actions, make_parser) -> None:
    """Add the commands under `checkpoint registry`; `make_parser` is registry_cmd._parser."""
    from gateway.commands.registry_cmd import _day

    p = make_parser(actions, "import", "check a ledger (CSV or XLSX) and, with --commit, import it",
                    "checkpoint registry import --site site-1 --list residents 台账.xlsx --commit --by 王主任",
                    run_import, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--list", dest="list_kind", choices=["residents", "returnees", "contacts"], default="residents",
                   help="residents: the community's ledger; returnees / contacts: a street-office list")
    p.add_argument("--commit", action="store_true",
                   help="write it (refused while any row has an error); without it only the preview is printed")
    p.add_argument("file", type=Path)

    p = make_parser(actions, "returnee", "register a resident's return: 14 days of home observation from arrival",
                    "checkpoint registry returnee --site site-1 --arrival 2020-02-14 --origin 湖北武汉 p-001 --by 王主任",
                    run_returnee, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--arrival", required=True, type=_day, help="arrival date (YYYY-MM-DD)")
    p.add_argument("--origin", required=True, help="where they came from")
    p.add_argument("--contact", default="", help="how to reach them during the observation")
    p.add_argument("person_id")

    passes = actions.add_parser("passes", help="issue, print and revoke passes with the server's key",
                                description="Issue, print and revoke passes with the community's key held "
                                            "in the registry database.",
                                epilog="example: checkpoint registry passes issue --site site-1 --building 3号楼 "
                                       "--days 30 --pdf 3号楼.pdf --by 王主任")
    pass_actions = passes.add_subparsers(dest="passes_action", metavar="ACTION", required=True)
    p = make_parser(pass_actions, "issue", "issue passes to people, a building or everyone, and print the sheet",
                    "checkpoint registry passes issue --site site-1 --building 3号楼 --days 30 --pdf 3号楼.pdf --by 王主任",
                    run_pass_issue, changes=True)
    p.add_argument("--site", required=True)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", action="append", metavar="ID", help="a person id (repeat for several)")
    who.add_argument("--building", help="everyone living in this building")
    who.add_argument("--all", action="store_true", help="everyone living at the site")
    p.add_argument("--days", type=int, default=30, help="days of validity from today (default 30)")
    p.add_argument("--pdf", type=Path, help="write the printable A4 sheet here")
    p.add_argument("--issuer-passphrase-file", type=Path, metavar="FILE",
                   help="unlocks the issuing key (default: $CHECKPOINT_ISSUER_PASSPHRASE)")
    p = make_parser(pass_actions, "revoke", "revoke every pass a person holds (a lost pass: find the person)",
                    "checkpoint registry passes revoke --site site-1 --reason 丢失 p-001 --by 王主任",
                    run_pass_revoke, changes=True)
    p.add_argument("--site", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("person_id")


def _fail(message: str):
    from gateway.cli import CliError

    raise CliError(message)


def run_import(args) -> int:
    from gateway.commands.registry_cmd import _by, _db
    from sync.server import imports

    try:
        content = args.file.read_bytes()
        table = imports.parse(args.file.name, content)
    except OSError as exc:
        _fail(f"{args.file}: cannot read: {exc.strerror or exc}")
    except imports.LedgerError as exc:
        _fail(f"{args.file}: {exc}")
    db = _db(args)
    mapping = imports.auto_mapping(table.headers, args.list_kind)
    preview = imports.preview(db, args.site, table, args.list_kind, mapping)
    for problem in preview.mapping_problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    for row in preview.rows:
        for name, error in row.cells.items():
            print(f"{args.file}: row {row.number}: {name}: {error}", file=sys.stderr)
        for error in row.errors:
            print(f"{args.file}: row {row.number}: {error}", file=sys.stderr)
    summary = {"file": str(args.file), "rows": len(preview.rows), **preview.counts, "committed": False}
    if args.commit:
        if not preview.can_commit:
            print(json.dumps(summary, ensure_ascii=False))
            _fail(f"{args.file}: not imported: correct the rows above and run it again")
        counts = imports.commit(db, args.site, table, args.list_kind, mapping, by=_by(args))
        summary.update(counts, committed=True, error=0)
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if preview.can_commit or not preview.rows else 1


def run_returnee(args) -> int:
    from gateway.commands.registry_cmd import _by, _db
    from sync.server import people
    from sync.server.registry import RegistryError

    try:
        saved = people.register_returnee(_db(args), args.site, args.person_id, arrival_date=args.arrival,
                                         origin=args.origin, contact=args.contact, by=_by(args))
    except RegistryError as exc:
        _fail(str(exc))
    row = saved.row
    print(json.dumps({"person_id": saved.person_id, "name": row["name"], "arrival_date": str(row["arrival_date"]),
                      "observation_until": str(row["observation_until"]), "origin": row["origin"]},
                     ensure_ascii=False))
    return 0


def run_pass_issue(args) -> int:
    from gateway.commands.registry_cmd import _by, _db
    from sync.server import issuing, people, sheets, site_policy
    from sync.server.registry import RegistryError

    try:
        passphrase = issuing.load_passphrase(args.issuer_passphrase_file)
    except RegistryError as exc:
        _fail(str(exc))
    db = _db(args)
    if args.person:
        ids = args.person
    else:
        rows, _ = people.search(db, args.site, people.Filters(building="" if args.all else args.building),
                                limit=100_000)
        ids = [r["person_id"] for r in rows]
        if not ids:
            _fail(f"nobody lives in {args.building or 'site ' + args.site} according to the registry")
    try:
        result = issuing.issue(db, args.site, ids, days=args.days, passphrase=passphrase, by=_by(args))
    except RegistryError as exc:
        _fail(str(exc))
    for person_id, why in result.refused:
        print(f"not issued: {person_id}: {why}", file=sys.stderr)
    if args.pdf and result.issued:
        by_id = {p["person_id"]: p for p in people.people_by_ids(db, args.site, [r["person_id"] for r in result.issued])}
        try:
            pdf = sheets.render_pdf(sheets.cards_for(result.issued, by_id), site_name=sheets.site_title(db, args.site),
                                    mask=site_policy.mask_names(db, args.site))
            args.pdf.write_bytes(pdf)
        except (OSError, sheets.SheetError) as exc:
            _fail(f"{args.pdf}: {exc}")
        print(f"wrote {args.pdf}", file=sys.stderr)
    print(json.dumps({"batch_id": result.batch_id, "issued": len(result.issued), "refused": len(result.refused),
                      "passes": [{"pass_id": r["pass_id"], "person_id": r["person_id"]} for r in result.issued]},
                     ensure_ascii=False))
    return 0 if not result.refused else 1


def run_pass_revoke(args) -> int:
    from gateway.commands.registry_cmd import _by, _db
    from sync.server import issuing

    revoked = issuing.revoke_person(_db(args), args.site, args.person_id, reason=args.reason, by=_by(args))
    print(json.dumps({"person_id": args.person_id, "revoked": revoked}, ensure_ascii=False))
    return 0
