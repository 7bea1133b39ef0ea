"""Tables out as CSV and XLSX for the street office's Excel.

CSV is UTF-8 with a byte-order mark (so Excel on Windows opens Chinese
headers correctly). XLSX cells get real Excel dates and times: openpyxl
cannot store a time zone, so aware datetimes are written as the local time
they already carry (the reports and ledgers use the site's zone).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any, Iterable, Sequence

DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "是" if value else "否"
    return "" if value is None else value


def to_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_plain(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, bool):
        return "是" if value else "否"
    return value


def to_xlsx(sheets: Sequence[tuple[str, Sequence[str], Iterable[Sequence[Any]]]]) -> bytes:
    """One workbook: each (title, headers, rows) a sheet; dates are Excel dates."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for title, headers, rows in sheets:
        sheet = book.create_sheet(title[:31])
        sheet.append(list(headers))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append([_cell(v) for v in row])
            for cell in sheet[sheet.max_row]:
                if isinstance(cell.value, datetime):
                    cell.number_format = DATETIME_FORMAT
                elif isinstance(cell.value, date):
                    cell.number_format = DATE_FORMAT
        for i, header in enumerate(headers, start=1):
            sheet.column_dimensions[sheet.cell(1, i).column_letter].width = max(10, min(40, 2 * len(str(header)) + 4))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
