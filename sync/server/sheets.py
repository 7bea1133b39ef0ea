"""Printable pass sheets: eight passes per A4 page, as a PDF.

Each pass shows its QR code (error correction M, as `checkpoint pass issue
--png` makes it), the name (or a masked name such as
张** when the site chooses), building-unit-room, kind, the validity in China
dates and the pass id, which staff read out to revoke a lost pass.

ReportLab embeds only TrueType outlines; Debian's Noto CJK fonts are CFF, so
the sheet uses WenQuanYi Micro Hei (fonts-wqy-microhei, installed by
scripts/setup) or the font named by $CHECKPOINT_CJK_FONT.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

CHINA_TZ = timezone(timedelta(hours=8))
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
FONT_NAME = "CheckpointCJK"
KIND_LABELS = {"resident": ("居民", "Resident"), "staff": ("工作人员", "Staff"),
               "volunteer": ("志愿者", "Volunteer"), "visitor": ("访客", "Visitor"), "courier": ("快递", "Courier")}
COLUMNS, ROWS = 2, 4
PER_PAGE = COLUMNS * ROWS


class SheetError(RuntimeError):
    """The sheet cannot be made (no CJK font installed)."""


def mask_name(name: str) -> str:
    """Keep the surname, hide the rest: 张三 -> 张*, 欧阳娜娜 -> 欧***."""
    return name if len(name) <= 1 else name[0] + "*" * (len(name) - 1)


def _font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT_NAME in pdfmetrics.getRegisteredFontNames():
        return FONT_NAME
    configured = os.environ.get("CHECKPOINT_CJK_FONT")
    last = None
    for path in ([configured] if configured else []) + list(FONT_CANDIDATES):
        if path and Path(path).is_file():
            try:
                pdfmetrics.registerFont(TTFont(FONT_NAME, path, subfontIndex=0))
                return FONT_NAME
            except Exception as exc:  # a font ReportLab cannot embed: try the next one
                last = exc
    raise SheetError("no TrueType CJK font for the pass sheet: apt-get install fonts-wqy-microhei "
                     f"(or set CHECKPOINT_CJK_FONT){'; ' + str(last) if configured else ''}")


def qr_image(text: str, module_px: int = 2):
    """The QR code of `text` as a 1-bit PIL image with a 4-module quiet zone.

    Encoded by zxing-cpp (C++, already the kiosk's decoder): segno's pure
    Python mask search takes 26 ms a code, 13 s for a 500-pass sheet. Each
    module is `module_px` pixels, so a viewer that smooths scaled images
    cannot blur the module edges.
    """
    import numpy as np
    import zxingcpp
    from PIL import Image

    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    modules = np.asarray(code.to_image(scale=1, add_quiet_zones=False)) < 128
    modules = np.pad(modules, 4)
    pixels = modules.repeat(module_px, axis=0).repeat(module_px, axis=1)
    return Image.fromarray(~pixels)


def _draw_qr(canvas, text: str, x: float, y: float, size: float) -> None:
    from reportlab.lib.utils import ImageReader

    canvas.drawImage(ImageReader(qr_image(text)), x, y, size, size)


def _day(moment: datetime) -> str:
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d")


def render_pdf(cards: list[dict], *, site_name: str = "", mask: bool = False) -> bytes:
    """The PDF for `cards`: dicts with text, pass_id, name, address, kind, valid_from, valid_to."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas

    from reportlab import rl_config

    # Binary image streams: ReportLab's pure-Python ASCII85 took most of the time.
    rl_config.useA85 = 0
    font = _font()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, pageCompression=1)
    canvas.setTitle(f"{site_name} 通行证" if site_name else "通行证")
    width, height = A4
    margin = 10 * mm
    cell_w = (width - 2 * margin) / COLUMNS
    cell_h = (height - 2 * margin) / ROWS
    qr_size = 44 * mm
    for index, card in enumerate(cards):
        if index and index % PER_PAGE == 0:
            canvas.showPage()
        slot = index % PER_PAGE
        col, row = slot % COLUMNS, slot // COLUMNS
        x0 = margin + col * cell_w
        y0 = height - margin - (row + 1) * cell_h
        canvas.setDash(3, 3)
        canvas.setStrokeColorRGB(0.6, 0.6, 0.6)
        canvas.rect(x0, y0, cell_w, cell_h, stroke=1, fill=0)  # cut lines
        canvas.setDash()
        _draw_qr(canvas, card["text"], x0 + 3 * mm, y0 + (cell_h - qr_size) / 2, qr_size)
        tx = x0 + qr_size + 6 * mm
        top = y0 + cell_h - 10 * mm
        canvas.setFillColorRGB(0, 0, 0)
        canvas.setFont(font, 9)
        canvas.drawString(tx, top, f"{site_name} 出入通行证" if site_name else "出入通行证")
        name = mask_name(card["name"]) if mask else card["name"]
        canvas.setFont(font, 18)
        canvas.drawString(tx, top - 11 * mm, name[:10])
        canvas.setFont(font, 12)
        canvas.drawString(tx, top - 19 * mm, card.get("address") or "")
        zh, _ = KIND_LABELS.get(card["kind"], (card["kind"], card["kind"]))
        canvas.drawString(tx, top - 26 * mm, zh)
        canvas.setFont(font, 9)
        end = card["valid_to"] - timedelta(seconds=1)
        canvas.drawString(tx, top - 33 * mm, f"有效期 {_day(card['valid_from'])}")
        canvas.drawString(tx, top - 37.5 * mm, f"　　至 {_day(end)}")
        canvas.drawString(tx, top - 43 * mm, f"编号 {card['pass_id']}")
    if not cards:
        canvas.setFont(font, 12)
        canvas.drawString(margin, height - margin - 12, "没有通行证 / no passes")
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def site_title(db, site_id: str) -> str:
    """The community's name for the sheet's header (its id if it has none)."""
    from sync.server.sites import site_rows

    return (site_rows(db).get(site_id) or {}).get("name") or site_id


def cards_for(passes: list[dict], people_by_id: dict[str, dict]) -> list[dict]:
    """Join issued passes with their people, in address order."""
    from sync.server.people import address

    cards = []
    for p in passes:
        person = people_by_id.get(p["person_id"], {})
        cards.append({**p, "name": person.get("name", p["person_id"]), "address": address(person) if person else "",
                      "sort": (person.get("building", ""), person.get("unit", ""), person.get("room", ""),
                               person.get("name", ""))})
    cards.sort(key=lambda c: c["sort"])
    return cards
