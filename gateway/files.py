"""Reading the operator's files (config, policy, scenario) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def read_text_file(path: Path, what: str, error: Callable[[str], Exception]) -> str:
    """The file's text; otherwise raises `error(message)`, the message naming the
    file: "<path>: no such <what> file" or "<path>: cannot read: <why>"."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None
