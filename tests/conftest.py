"""Shared fixtures. Fakes live at the hardware and network edges only."""

from __future__ import annotations

import os

import pytest

# Never touch real GPIO from tests, even on a Pi.
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")


@pytest.fixture
def write_config(tmp_path):
    """Write a kiosk TOML config into tmp_path and return its path."""

    def write(text: str, name: str = "gate.toml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
