"""Ledgers as a clerk has them: the usual Excel columns, some rows wrong."""

from __future__ import annotations

import csv
import io
from datetime import date

HEADERS = ["序号", "姓名", "楼号", "单元", "门牌号", "联系电话", "人员类别", "是否返京", "观察截止日期"]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def resident_rows(count: int, start: int = 1) -> list[list]:
    """`count` residents spread over buildings 1-N, 2 units, 6 floors, 2 flats per floor."""
    rows = []
    for n in range(start, start + count):
        i = n - 1
        building, rest = divmod(i, 48)
        unit, rest = divmod(rest, 24)
        floor, flat = divmod(rest, 4)
        name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % len(GIVEN)] + GIVEN[(i * 7) % len(GIVEN)]
        kind = "租户" if i % 10 == 3 else "志愿者" if i % 50 == 7 else "居民"
        returnee = i % 25 == 5
        rows.append([n, name, f"{building + 1}号楼", f"{unit + 1}", f"{floor + 1}0{flat % 2 + 1}",
                     f"13{i:09d}", kind, "是" if returnee else "否",
                     date(2020, 2, 20) if returnee else None])
    return rows


def xlsx_bytes(rows: list[list], headers: list[str] = HEADERS, title: str | None = "幸福里社区居民登记台账") -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    if title:
        sheet.append([title])
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    for cell in sheet["I"]:
        cell.number_format = "yyyy-mm-dd"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bytes(rows: list[list], headers: list[str] = HEADERS, encoding: str = "utf-8-sig") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, date) else v for v in row])
    return out.getvalue().encode(encoding)
