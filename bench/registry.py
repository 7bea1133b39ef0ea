"""How fast does the registry enrol a community? Rows/s for import and for passes.

Measured in one run, on the same database engine:
- anchor: the CLI path a clerk had before, one process per person
  (`checkpoint registry person add`, `checkpoint pass issue --png`), timed on
  a sample of calls and extrapolated to the full count (said so in the output);
- import: an XLSX ledger of 5,000 residents parsed, previewed and committed
  in one transaction (`sync.server.imports`);
- passes: 5,000 passes signed with the server-held key and recorded
  (`sync.server.issuing.issue`), in one transaction;
- the printable sheet of 500 passes (`sync.server.sheets.render_pdf`), cold
  (font loaded) and warm.

    .venv/bin/python -m bench.registry [--rows 5000] [--cli-sample 5] [--pg postgresql://postgres@127.0.0.1/test]

Targets: import and passes at least 500 rows/s and 50x the CLI path each; the
500-pass PDF in at most 10 s. Exits 1 on a miss; the verdict rows go to
`python -m bench` (bench/common.py). CHECKPOINT_BENCH_SLOWDOWN_MS sleeps once
per imported row and per issued pass (the measured paths, not the CLI anchor).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Row, finish, slowdown  # noqa: E402

TARGET_ROWS_S = 500.0
TARGET_RATIO = 50.0
TARGET_PDF_S = 10.0
PASSPHRASE = b"bench passphrase, kept outside the database"


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cli_person_rate(db_url: str, sample: int) -> float:
    """People per second through `checkpoint registry person add`, one process each."""
    start = time.perf_counter()
    for i in range(sample):
        _cli("registry", "person", "add", "--db", db_url, "--site", "cli-site", "--name", f"张{i}", "--by", "bench",
             "--unit", f"1-1-{100 + i}", f"cli-{i}")
    return sample / (time.perf_counter() - start)


def cli_pass_rate(directory: Path, sample: int) -> float:
    """Passes per second through `checkpoint pass issue --png`, one process each."""
    _cli("keys", "new", "--out", str(directory / "keys"))
    start = time.perf_counter()
    for i in range(sample):
        _cli("pass", "issue", "--key", str(directory / "keys" / "issuer.key"), "--person", f"cli-{i}",
             "--site", "cli-site", "--kind", "resident", "--days", "30", "--png", str(directory / f"p{i}.png"))
    return sample / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="residents to import and passes to issue")
    parser.add_argument("--cli-sample", type=int, default=5, help="CLI calls timed for the anchor")
    parser.add_argument("--sheet", type=int, default=500, help="passes on the printed sheet")
    parser.add_argument("--pg", metavar="URL", help="run on PostgreSQL, in a new schema of this database "
                        "(default: a new SQLite file)")
    args = parser.parse_args()

    from sync.server import imports, issuing, open_database, people, sheets
    from sync.server.schema import migrate
    from tests.registry.ledgers import resident_rows, xlsx_bytes

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        drop_schema = None
        if args.pg:
            from bench.sync import pg_schema

            db_url, drop_schema = pg_schema(args.pg)
        else:
            db_url = f"sqlite:///{tmp_path / 'registry.db'}"
        db = open_database(db_url)
        migrate(db)

        cli_people = cli_person_rate(db_url, args.cli_sample)
        cli_passes = cli_pass_rate(tmp_path, args.cli_sample)

        content = xlsx_bytes(resident_rows(args.rows))
        start = time.perf_counter()
        table = imports.parse("ledger.xlsx", content)
        mapping = imports.auto_mapping(table.headers, "residents")
        preview = imports.preview(db, "site-1", table, "residents", mapping)
        assert preview.can_commit, "the generated ledger has errors"
        counts = imports.commit(db, "site-1", table, "residents", mapping, by="bench", with_ids=True)
        for _ in range(args.rows):
            slowdown()  # the test hook: one sleep per imported row (off unless set)
        import_s = time.perf_counter() - start
        assert counts["new"] == args.rows, counts

        start = time.perf_counter()
        again = imports.commit(db, "site-1", imports.parse("ledger.xlsx", content), "residents", mapping, by="bench")
        reimport_s = time.perf_counter() - start
        assert again["same"] == args.rows, again

        start = time.perf_counter()
        result = issuing.issue(db, "site-1", counts["person_ids"], days=30, passphrase=PASSPHRASE, by="bench")
        for _ in range(args.rows):
            slowdown()  # one sleep per issued pass
        issue_s = time.perf_counter() - start
        assert len(result.issued) == args.rows and not result.refused

        chosen = result.issued[:args.sheet]
        by_id = {p["person_id"]: p for p in people.people_by_ids(db, "site-1", [r["person_id"] for r in chosen])}
        cards = sheets.cards_for(chosen, by_id)
        start = time.perf_counter()
        pdf = sheets.render_pdf(cards, site_name="site-1")
        pdf_cold_s = time.perf_counter() - start
        start = time.perf_counter()
        sheets.render_pdf(cards, site_name="site-1")
        pdf_warm_s = time.perf_counter() - start
        db.dispose()
        if drop_schema:
            drop_schema()

    import_rate, issue_rate = args.rows / import_s, args.rows / issue_s
    engine = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"
    print(f"registry bench on {engine}, {args.rows} residents")
    print(f"  anchor  CLI person add     {cli_people:8.2f} people/s  (sample of {args.cli_sample} calls; "
          f"{args.rows} would take ~{args.rows / cli_people / 60:.0f} min)")
    print(f"  anchor  CLI pass issue     {cli_passes:8.2f} passes/s  (sample of {args.cli_sample} calls; "
          f"{args.rows} would take ~{args.rows / cli_passes / 60:.0f} min)")
    print(f"  import  XLSX -> preview -> commit  {import_rate:8.0f} rows/s   ({import_s:.2f} s; "
          f"ratio {import_rate / cli_people:.0f}x the CLI; target >= {TARGET_ROWS_S:.0f} rows/s and {TARGET_RATIO:.0f}x)")
    print(f"  re-import (no change)      {args.rows / reimport_s:8.0f} rows/s   ({reimport_s:.2f} s, wrote nothing)")
    print(f"  passes  issue + record     {issue_rate:8.0f} passes/s ({issue_s:.2f} s; "
          f"ratio {issue_rate / cli_passes:.0f}x the CLI; target >= {TARGET_ROWS_S:.0f}/s and {TARGET_RATIO:.0f}x)")
    print(f"  sheet   {len(cards)} passes -> PDF   {pdf_cold_s:6.2f} s cold (font load), {pdf_warm_s:.2f} s warm, "
          f"{len(pdf) / 1e6:.1f} MB, {-(-len(cards) // sheets.PER_PAGE)} pages; target <= {TARGET_PDF_S:.0f} s")
    load = f"{engine}, load {os.getloadavg()[0]:.1f}"
    target = f">= {TARGET_ROWS_S:.0f} and {TARGET_RATIO:.0f}x anchor"
    rows = [
        Row("registry", "XLSX import: parse, preview, commit", import_rate, "rows/s", "CLI person add", cli_people,
            target, import_rate >= TARGET_ROWS_S and import_rate / cli_people >= TARGET_RATIO, note=load),
        Row("registry", "passes issued and recorded", issue_rate, "passes/s", "CLI pass issue", cli_passes,
            target, issue_rate >= TARGET_ROWS_S and issue_rate / cli_passes >= TARGET_RATIO, note=load),
        Row("registry", f"PDF sheet of {len(cards)} passes, cold", pdf_cold_s, "s", "", None,
            f"<= {TARGET_PDF_S:.0f} s", pdf_cold_s <= TARGET_PDF_S),
    ]
    return finish(rows)


if __name__ == "__main__":
    os.environ.setdefault("CHECKPOINT_QUIET", "1")
    sys.exit(main())
