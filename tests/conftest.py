"""Shared fixtures. Fakes live at the hardware and network edges only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's: browser downloads do not work here

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


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup --dev installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # No background networking: this machine's closed network refuses it, many at a time.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()
