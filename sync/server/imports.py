"""Importing ledgers: CSV or XLSX in, a preview out, nothing written until confirmed.

Three kinds of list:
- `residents`: the community's own ledger (序号/姓名/楼号/单元/门牌号/联系电话/
  人员类别/是否返京/观察截止日期); each row creates or updates a person;
- `returnees` and `contacts`: lists passed down by the street office; each row
  is matched to a resident (name + phone, else name + address) and starts a
  home observation: from the arrival date (returnees) or the last contact
  (contacts, "观察期为与病例末次接触后14天"), through that date + 14 days.

Steps: `parse()` the file and guess the column mapping from the headers
(`auto_mapping`); `preview()` checks every cell and says per row what a
commit would do (new / update / same / error); `commit()` writes every row in
ONE transaction. A file with errors cannot be committed: the clerk fixes the
rows and uploads it again. Re-importing the same file changes nothing:
residents are keyed by building + unit + room + name (`people.natural_key`),
and a row whose values equal the stored ones is skipped.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable

from sync.server import people
from sync.server.db import Database

LIST_KINDS = ("residents", "returnees", "contacts")
COMMIT_CHUNK = 250  # rows prepared and written between progress reports (all in one transaction)
MAX_ROWS = 20_000
# Target fields and the headers that mean them (compared after removing spaces, lower case).
HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "居民姓名", "name"),
    "building": ("楼号", "楼栋", "楼栋号", "楼", "building"),
    "unit": ("单元", "单元号", "unit"),
    "room": ("门牌号", "房号", "房间号", "室", "门牌", "room"),
    "phone": ("联系电话", "电话", "手机", "手机号", "手机号码", "联系方式", "phone"),
    "kind": ("人员类别", "类别", "人员类型", "身份", "kind"),
    "returnee": ("是否返京", "返京", "是否返京人员", "returnee"),
    "observation_until": ("观察截止日期", "观察截止", "观察结束日期", "observation_until"),
    "arrival_date": ("返京日期", "到京日期", "抵京日期", "到达日期", "arrival_date"),
    "origin": ("来源地", "出发地", "来京前所在地", "返京前所在地", "origin"),
    "contact": ("紧急联系人", "联系人", "contact"),
    "last_contact": ("末次接触日期", "最后接触日期", "接触日期", "last_contact"),
}
IGNORED_HEADERS = ("序号", "编号", "备注", "no", "#")
FIELDS_BY_LIST = {
    "residents": ("name", "building", "unit", "room", "phone", "kind", "returnee", "observation_until",
                  "arrival_date", "origin", "contact"),
    "returnees": ("name", "phone", "building", "unit", "room", "arrival_date", "origin", "contact"),
    "contacts": ("name", "phone", "building", "unit", "room", "last_contact", "origin", "contact"),
}
REQUIRED = {"residents": ("name",), "returnees": ("name", "arrival_date"), "contacts": ("name", "last_contact")}
KIND_WORDS = {
    "resident": ("居民", "户籍", "常住", "业主", "住户", "resident"),
    "tenant": ("租户", "租客", "承租人", "新租户", "租住", "tenant"),
    "staff": ("工作人员", "物业", "员工", "社区工作者", "staff"),
    "volunteer": ("志愿者", "volunteer"),
}
YES = ("是", "y", "yes", "true", "1", "√", "✓")
NO = ("否", "n", "no", "false", "0", "")


class LedgerError(ValueError):
    """A file that cannot be read as a ledger at all (not the per-cell errors)."""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]  # cells as text (dates as ISO), padded to len(headers)
    first_row_number: int  # the spreadsheet row number of rows[0], for messages


def _norm_header(value) -> str:
    return re.sub(r"\s+", "", people.clean_text(value)).lower()


def _cell(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return people.clean_text(value)


def _header_score(row: list) -> int:
    known = {_norm_header(h) for names in HEADERS.values() for h in names}
    return sum(1 for v in row if _norm_header(v) in known)


def parse(filename: str, content: bytes) -> Table:
    """Read a CSV (UTF-8 or GB18030, as Excel saves it in China) or XLSX file.

    The header row is the first of the first ten rows with at least two
    known headers, so a title line above the table ("XX社区居民台账") is fine.
    """
    if content[:4] == b"PK\x03\x04" or filename.lower().endswith((".xlsx", ".xlsm")):
        raw = _xlsx_rows(content)
    else:
        raw = _csv_rows(content)
    for i, row in enumerate(raw[:10]):
        if _header_score(row) >= 2:
            headers = [people.clean_text(h) for h in row]
            body = [r for r in raw[i + 1:]]
            break
    else:
        raise LedgerError("no header row found: the first rows should name the columns (姓名, 楼号, 单元, 门牌号 …)")
    if len(body) > MAX_ROWS:
        raise LedgerError(f"{len(body)} rows: at most {MAX_ROWS} per file")
    width = len(headers)
    rows = [[_cell(v) for v in (list(r) + [None] * width)[:width]] for r in body]
    # Trailing blank lines (Excel keeps formatted empty rows) are not rows.
    numbered = [(n, r) for n, r in enumerate(rows) if any(r)]
    first = i + 2
    return Table(headers, [r for _, r in numbered], first) if numbered else Table(headers, [], first)


def _xlsx_rows(content: bytes) -> list[list]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise LedgerError(f"not a readable XLSX file ({type(exc).__name__})") from None
    try:
        sheet = book.worksheets[0]
        return [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def _csv_rows(content: bytes) -> list[list]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise LedgerError("not a text file in UTF-8 or GB18030")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    return [row for row in csv.reader(io.StringIO(text), dialect)]


def auto_mapping(headers: list[str], list_kind: str) -> dict[int, str]:
    """Column index -> field, from the header names; unknown columns are left out."""
    wanted = FIELDS_BY_LIST[list_kind]
    mapping: dict[int, str] = {}
    for index, header in enumerate(headers):
        key = _norm_header(header)
        for field_name, names in HEADERS.items():
            if field_name in wanted and key in {_norm_header(n) for n in names} \
                    and field_name not in mapping.values():
                mapping[index] = field_name
                break
    return mapping


def check_mapping(mapping: dict[int, str], headers: list[str], list_kind: str) -> list[str]:
    """Problems with a mapping (field used twice, required field missing)."""
    problems = []
    wanted = FIELDS_BY_LIST[list_kind]
    seen: dict[str, int] = {}
    for index, name in mapping.items():
        if not 0 <= index < len(headers):
            problems.append(f"column {index + 1} does not exist")
        elif name not in wanted:
            problems.append(f"{name} is not a field of a {list_kind} list")
        elif name in seen:
            problems.append(f"{name} is mapped to two columns ({headers[seen[name]]}, {headers[index]})")
        seen[name] = index
    for name in REQUIRED[list_kind]:
        if name not in mapping.values():
            problems.append(f"no column is mapped to {name}")
    return problems


# --- values ----------------------------------------------------------------------------

_DATE_PATTERNS = (
    re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"),
    re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"),
    re.compile(r"(\d{4})\.(\d{1,2})\.(\d{1,2})"),
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?"),
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
)


def parse_date(text: str) -> date:
    for pattern in _DATE_PATTERNS:
        match = pattern.fullmatch(text.strip())
        if match:
            try:
                return date(*(int(g) for g in match.groups()))
            except ValueError:
                break
    raise ValueError(f"“{text}” 不是日期 / not a date (e.g. 2020-02-14)")


def parse_kind(text: str) -> str:
    value = text.strip().lower()
    if not value:
        return "resident"
    for kind, words in KIND_WORDS.items():
        if value in words:
            return kind
    raise ValueError(f"“{text}” 不是人员类别 / not a kind (居民, 租户, 工作人员, 志愿者)")


def parse_yes(text: str) -> bool:
    value = text.strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise ValueError(f"“{text}” 应为 是 或 否 / expected yes or no")


# --- preview --------------------------------------------------------------------------------


@dataclass
class RowResult:
    number: int  # spreadsheet row number
    values: dict  # field -> parsed value
    cells: dict[str, str] = field(default_factory=dict)  # field -> error
    errors: list[str] = field(default_factory=list)  # row-level errors
    action: str = ""  # new, update, same, error
    person_id: str | None = None
    changes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.cells and not self.errors


@dataclass
class Preview:
    list_kind: str
    headers: list[str]
    mapping: dict[int, str]
    mapping_problems: list[str]
    rows: list[RowResult]

    @property
    def counts(self) -> dict[str, int]:
        out = {"new": 0, "update": 0, "same": 0, "error": 0}
        for r in self.rows:
            out[r.action] += 1
        return out

    @property
    def can_commit(self) -> bool:
        return not self.mapping_problems and bool(self.rows) and all(r.ok for r in self.rows)


def _parse_row(raw: list[str], mapping: dict[int, str], number: int) -> RowResult:
    result = RowResult(number, {})
    for index, name in mapping.items():
        text = raw[index] if index < len(raw) else ""
        try:
            if name in ("observation_until", "arrival_date", "last_contact"):
                result.values[name] = parse_date(text) if text else None
            elif name == "kind":
                result.values[name] = parse_kind(text)
            elif name == "returnee":
                result.values[name] = parse_yes(text)
            else:
                result.values[name] = text
        except ValueError as exc:
            result.cells[name] = str(exc)
    return result


def _check_person_fields(result: RowResult, values: dict) -> None:
    try:
        people.validate(values)
    except people.PersonError as exc:
        field_name = str(exc).split(" ", 1)[0].rstrip(":")
        result.cells.setdefault(field_name if field_name in people.FIELDS else "name", str(exc))


def _resident_fields(values: dict) -> dict:
    fields = {k: v for k, v in values.items() if k in people.FIELDS}
    for k in ("building", "unit", "room", "phone"):
        fields.setdefault(k, "")
    if fields.get("returnee") and fields.get("observation_until") is None and fields.get("arrival_date"):
        fields["observation_until"] = people.observation_end(fields["arrival_date"])
    return fields


def preview(db: Database, site_id: str, table: Table, list_kind: str, mapping: dict[int, str]) -> Preview:
    if list_kind not in LIST_KINDS:
        raise LedgerError(f"list kind {list_kind!r}: expected one of {', '.join(LIST_KINDS)}")
    problems = check_mapping(mapping, table.headers, list_kind)
    result = Preview(list_kind, table.headers, mapping, problems, [])
    if problems:
        return result
    existing, _ = people.search(db, site_id, people.Filters(status=""), limit=MAX_ROWS * 5)
    by_key = {p["natural_key"]: p for p in existing}
    seen: dict[str, int] = {}
    for offset, raw in enumerate(table.rows):
        row = _parse_row(raw, mapping, table.first_row_number + offset)
        for name in REQUIRED[list_kind]:
            if row.values.get(name) in (None, "") and name not in row.cells:
                row.cells[name] = "必填 / required"
        if list_kind == "residents":
            _preview_resident(row, site_id, by_key, seen)
        else:
            _preview_listed(row, list_kind, existing)
        if not row.ok:
            row.action = "error"
        result.rows.append(row)
    return result


def _preview_resident(row: RowResult, site_id: str, by_key: dict, seen: dict) -> None:
    fields = _resident_fields(row.values)
    _check_person_fields(row, fields)
    if fields.get("returnee") and not fields.get("observation_until") \
            and not {"returnee", "observation_until", "arrival_date"} & set(row.cells):
        row.cells["returnee"] = "返京人员需填写返京日期或观察截止日期 / a returnee needs an arrival or end date"
    if not row.ok:
        return
    key = people.natural_key(fields["building"], fields["unit"], fields["room"], fields["name"])
    if key in seen:
        row.errors.append(f"与第 {seen[key]} 行重复 / same person as row {seen[key]}")
        return
    seen[key] = row.number
    current = by_key.get(key)
    if current is None:
        row.action, row.person_id = "new", people.new_person_id(site_id, key)
        return
    row.person_id = current["person_id"]
    clean = people.validate(fields)
    row.changes = [k for k, v in clean.items() if current.get(k) != v]
    row.action = "update" if row.changes else "same"


def _match(values: dict, existing: list[dict]) -> tuple[dict | None, str | None]:
    name = people.clean_text(values.get("name"))
    candidates = [p for p in existing if p["name"] == name and p["status"] == "active"]
    phone = people.clean_text(values.get("phone"))
    if phone:
        by_phone = [p for p in candidates if p["phone"] == phone]
        if len(by_phone) == 1:
            return by_phone[0], None
    addr = [people.clean_text(values.get(k)) for k in ("building", "unit", "room")]
    if any(addr):
        by_addr = [p for p in candidates if [p["building"], p["unit"], p["room"]] == addr]
        if len(by_addr) == 1:
            return by_addr[0], None
    if len(candidates) == 1 and not phone and not any(addr):
        return candidates[0], None
    if len(candidates) > 1:
        return None, "有多位同名居民，请填写电话或门牌号 / several residents have this name: give the phone or room"
    return None, "本社区无此居民 / no such resident here"


def _listed_fields(values: dict, list_kind: str) -> dict:
    start = values.get("arrival_date") if list_kind == "returnees" else values.get("last_contact")
    fields = {"observation_until": people.observation_end(start) if start else None}
    if list_kind == "returnees":
        fields.update(returnee=True, arrival_date=start)
    for k in ("origin", "contact"):
        if values.get(k):
            fields[k] = values[k]
    return fields


def _preview_listed(row: RowResult, list_kind: str, existing: list[dict]) -> None:
    if not row.ok:
        return
    person, why = _match(row.values, existing)
    if person is None:
        row.errors.append(why)
        return
    row.person_id = person["person_id"]
    fields = people.validate(_listed_fields(row.values, list_kind))
    row.changes = [k for k, v in fields.items() if person.get(k) != v]
    row.action = "update" if row.changes else "same"


# --- commit --------------------------------------------------------------------------------


class NotCommittable(ValueError):
    """The preview has errors (or nothing to import): fix the file first."""


def commit(db: Database, site_id: str, table: Table, list_kind: str, mapping: dict[int, str], *, by: str,
           progress: Callable[[int, int], None] | None = None, with_ids: bool = False) -> dict:
    """Write every row in one transaction; returns counts of new, updated and unchanged rows
    (and with `with_ids`, "person_ids": every person of the file, for issuing their passes).

    The preview is recomputed inside the commit, so a person added by
    someone else since the clerk's preview is matched, not duplicated.
    """
    checked = preview(db, site_id, table, list_kind, mapping)
    if not checked.can_commit:
        bad = [r.number for r in checked.rows if not r.ok]
        raise NotCommittable(f"the file has errors in rows {bad[:20]}" if bad else
                             "; ".join(checked.mapping_problems) or "the file has no rows")
    counts = {"new": 0, "update": 0, "same": 0}
    person_ids: list[str] = []
    total = len(checked.rows)
    action = f"import.{list_kind}"
    from sqlalchemy import select

    from sync.server.schema import people as people_table

    with db.write() as conn:
        # Read again under the write lock: whoever added people since the preview is matched.
        current = [dict(r._mapping) for r in conn.execute(
            select(people_table).where(people_table.c.site_id == site_id))]
        by_key = {p["natural_key"]: p for p in current}
        by_id = {p["person_id"]: p for p in current}
        for start in range(0, total, COMMIT_CHUNK):
            changes = []
            for row in checked.rows[start:start + COMMIT_CHUNK]:
                if list_kind == "residents":
                    fields = _resident_fields(row.values)
                    key = people.natural_key(fields["building"], fields["unit"], fields["room"], fields["name"])
                    before, new_row = people.prepare(conn, site_id, fields, before=by_key.get(key),
                                                     find_key=by_key.get)
                else:
                    before, new_row = people.prepare(conn, site_id, _listed_fields(row.values, list_kind),
                                                     person_id=row.person_id, before=by_id.get(row.person_id),
                                                     find_key=by_key.get)
                if new_row is None:
                    counts["same"] += 1
                    person_ids.append(before["person_id"])
                    continue
                counts["new" if before is None else "update"] += 1
                person_ids.append(new_row["person_id"])
                if before is not None:
                    by_key.pop(before["natural_key"], None)
                by_key[new_row["natural_key"]] = by_id[new_row["person_id"]] = new_row
                changes.append((before, new_row))
            if changes:
                people.write(db, conn, site_id, changes, by=by, action=action)
            if progress:
                progress(min(start + COMMIT_CHUNK, total), total)
    if with_ids:
        return {**counts, "person_ids": person_ids}
    return counts


# --- jobs: an upload kept between preview and commit ------------------------------------------


def _jobs():
    from sync.server.schema import import_jobs

    return import_jobs


def create_job(db: Database, site_id: str, list_kind: str, filename: str, content: bytes, *, by: str) -> int:
    """Parse the upload (raises LedgerError if it is not a ledger) and keep it for preview."""
    import hashlib
    import json

    if list_kind not in LIST_KINDS:
        raise LedgerError(f"list kind {list_kind!r}: expected one of {', '.join(LIST_KINDS)}")
    table = parse(filename, content)
    mapping = auto_mapping(table.headers, list_kind)
    jobs = _jobs()
    with db.write() as conn:
        return conn.execute(jobs.insert().values(
            site_id=site_id, list_kind=list_kind, filename=filename[:200], sha256=hashlib.sha256(content).hexdigest(),
            content=content, mapping=json.dumps({str(k): v for k, v in mapping.items()}), status="preview",
            created_at=datetime.now().astimezone(), created_by=by)).inserted_primary_key[0]


def get_job(db: Database, site_id: str, job_id: int) -> dict | None:
    import json

    from sqlalchemy import select

    jobs = _jobs()
    with db.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.site_id == site_id)).first()
    if row is None:
        return None
    job = dict(row._mapping)
    job["mapping"] = {int(k): v for k, v in json.loads(job["mapping"] or "{}").items()}
    job["summary"] = json.loads(job["summary"]) if job["summary"] else None
    return job


def recent_jobs(db: Database, site_id: str, limit: int = 20) -> list[dict]:
    from sqlalchemy import select

    jobs = _jobs()
    with db.read() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.list_kind, jobs.c.filename, jobs.c.status, jobs.c.created_at,
                                   jobs.c.created_by, jobs.c.summary)
                            .where(jobs.c.site_id == site_id).order_by(jobs.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


def set_mapping(db: Database, site_id: str, job_id: int, mapping: dict[int, str]) -> None:
    import json

    jobs = _jobs()
    with db.write() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.site_id == site_id, jobs.c.status == "preview")
                     .values(mapping=json.dumps({str(k): v for k, v in mapping.items()})))


def claim_job(db: Database, site_id: str, job_id: int) -> bool:
    """Mark a previewed job as committing; False if it is not (double click, already done)."""
    from datetime import timezone

    jobs = _jobs()
    with db.write() as conn:
        claimed = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.site_id == site_id,
                                                   jobs.c.status == "preview")
                               .values(status="committing", progress_done=0, progress_total=0,
                                       progress_at=datetime.now(timezone.utc))).rowcount == 1
    if claimed and db.is_sqlite:
        _local_progress[(str(db.engine.url), job_id)] = (0, 0)
    return claimed


# --- progress: in the database, so every replica's progress bar shows it -----------------

# A committing job whose server reported nothing for this long was abandoned (the server
# stopped: its one transaction was rolled back, nothing was written).
PROGRESS_STALE = timedelta(minutes=5)
# SQLite keeps its one write lock for the whole import, so the progress cannot be written
# beside it; SQLite means one server process, which keeps it here instead.
_local_progress: dict[tuple[str, int], tuple[int, int]] = {}


def report_progress(db: Database, site_id: str, job_id: int, done: int, total: int) -> None:
    """Called by the committing import between chunks (from inside its transaction)."""
    from datetime import timezone

    if db.is_sqlite:
        _local_progress[(str(db.engine.url), job_id)] = (done, total)
        return
    jobs = _jobs()
    with db.write() as conn:  # a short transaction of its own, beside the import's
        conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.site_id == site_id)
                     .values(progress_done=done, progress_total=total, progress_at=datetime.now(timezone.utc)))


def progress_of(db: Database, site_id: str, job_id: int) -> dict | None:
    """{status, done, total, running}; `running` is false for a committing job nobody is
    importing any more (its server stopped). None if there is no such job."""
    from datetime import timezone

    from sqlalchemy import select

    jobs = _jobs()
    with db.read() as conn:
        row = conn.execute(select(jobs.c.status, jobs.c.progress_done, jobs.c.progress_total, jobs.c.progress_at)
                           .where(jobs.c.id == job_id, jobs.c.site_id == site_id)).first()
    if row is None:
        return None
    done, total = row.progress_done or 0, row.progress_total or 0
    running = False
    if row.status == "committing":
        if db.is_sqlite:
            local = _local_progress.get((str(db.engine.url), job_id))
            running = local is not None
            done, total = local or (done, total)
        elif row.progress_at is not None:
            at = row.progress_at if row.progress_at.tzinfo else row.progress_at.replace(tzinfo=timezone.utc)
            running = datetime.now(timezone.utc) - at <= PROGRESS_STALE
    return {"status": row.status, "done": done, "total": total, "running": running}


def finish_job(db: Database, site_id: str, job_id: int, status: str, summary: dict) -> None:
    """Record how the commit ended; a committed file is dropped (the people table has the data now)."""
    import json

    jobs = _jobs()
    values = {"status": status, "summary": json.dumps(summary, ensure_ascii=False),
              "finished_at": datetime.now().astimezone()}
    local = _local_progress.pop((str(db.engine.url), job_id), None) if db.is_sqlite else None
    if local is not None:  # the last progress, for the page after the import
        values.update(progress_done=local[0], progress_total=local[1])
    if status != "preview":
        values["content"] = None
    with db.write() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.site_id == site_id).values(**values))


def run_job(db: Database, site_id: str, job: dict, *, by: str,
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Commit a claimed job; returns its summary. On refusal the job goes back to preview."""
    table = parse(job["filename"], job["content"])
    try:
        counts = commit(db, site_id, table, job["list_kind"], job["mapping"], by=by, progress=progress,
                        with_ids=True)
    except NotCommittable as exc:
        finish_job(db, site_id, job["id"], "preview", {"error": str(exc)})
        raise
    except Exception as exc:
        finish_job(db, site_id, job["id"], "preview", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    finish_job(db, site_id, job["id"], "committed", counts)
    return counts
