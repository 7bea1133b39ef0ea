"""Render a printed pass sheet back to images and read it with `checkpoint scan`."""

from __future__ import annotations

import json
from pathlib import Path


def sheet_to_pngs(pdf: bytes, directory: Path, dpi: int = 150) -> list[Path]:
    """Each PDF page as a PNG at `dpi`, as a scanner or a phone photo of the printout would give."""
    import cv2
    import pypdfium2 as pdfium

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    document = pdfium.PdfDocument(pdf)
    try:
        for index in range(len(document)):
            page = document[index]
            image = page.render(scale=dpi / 72).to_numpy()
            path = directory / f"page-{index + 1:03d}.png"
            cv2.imwrite(str(path), image)
            paths.append(path)
            page.close()
    finally:
        document.close()
    return paths


def scan_with_cli(paths: list[Path], capsys) -> dict[str, list[str]]:
    """{file: texts} from `checkpoint scan --json` (the project's scanner, as a user runs it)."""
    from gateway.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(["scan", "--json", *map(str, paths)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return {line["file"]: line["texts"] for line in lines}
