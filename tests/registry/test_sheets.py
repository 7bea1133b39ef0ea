"""A printed pass sheet: every code on it scans with `checkpoint scan` and verifies."""

from __future__ import annotations

from datetime import datetime, timezone

from gateway.passes import load_public_keys, verify
from sync.server import issuing, people, sheets
from tests.registry.conftest import PASSPHRASE
from tests.registry.scan_sheet import scan_with_cli, sheet_to_pngs


def test_every_code_on_a_printed_sheet_scans_and_verifies(db, tmp_path, capsys):
    ids = [people.save_one(db, "site-1", {"name": name, "building": "7", "unit": "1", "room": f"{101 + i}",
                                          "kind": "tenant" if i % 3 else "resident"}, by="clerk").person_id
           for i, name in enumerate(["欧阳娜娜", "王伟", "李秀英", "张三", "刘洋", "陈静", "杨帆", "赵磊", "黄丽", "周杰"])]
    result = issuing.issue(db, "site-1", ids, days=30, passphrase=PASSPHRASE, by="clerk")
    cards = sheets.cards_for(result.issued, {p["person_id"]: p for p in people.people_by_ids(db, "site-1", ids)})
    pdf = sheets.render_pdf(cards, site_name="幸福里社区", mask=True)
    assert pdf.startswith(b"%PDF")
    pages = sheet_to_pngs(pdf, tmp_path / "sheet")
    assert len(pages) == 2  # 8 passes per A4 page
    found = scan_with_cli(pages, capsys)
    texts = [t for page in pages for t in found[str(page)]]
    assert sorted(texts) == sorted(r["text"] for r in result.issued)
    (tmp_path / "issuer.pub").write_text(issuing.public_key_pem(db, "site-1"), encoding="ascii")
    keys = load_public_keys([tmp_path / "issuer.pub"])
    for text in texts:
        verdict = verify(text, keys, datetime.now(timezone.utc))
        assert verdict.valid and verdict.site_id == "site-1" and verdict.person_id in ids


def test_masked_names_keep_only_the_surname():
    assert [sheets.mask_name(n) for n in ["张三", "欧阳娜娜", "李"]] == ["张*", "欧***", "李"]
