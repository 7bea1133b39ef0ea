"""Every shell script passes shellcheck; every systemd unit passes
`systemd-analyze verify`; the install scripts' own checks (32-bit refused,
I2C at 50 kHz before any dtoverlay) behave."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted(p for p in (ROOT / "deploy").iterdir() if p.suffix in (".service", ".timer"))


def shell_scripts() -> list[Path]:
    found = []
    for folder in ("scripts", "deploy", ".ci"):
        for path in sorted((ROOT / folder).iterdir()):
            if path.is_file() and (path.suffix == ".sh" or path.read_bytes()[:32].startswith(b"#!/usr/bin/env bash")
                                   or path.read_bytes()[:9] == b"#!/bin/sh"):
                found.append(path)
    return found


def test_the_scripts_are_found():
    names = {p.name for p in shell_scripts()}
    assert {"setup", "demo", "test", "run", "install-kiosk.sh", "install-registry.sh", "install-common.sh",
            "kiosk-browser.sh", "i2c-config.sh"} <= names
    assert {"checkpoint.service", "checkpoint-screen.service", "checkpoint-registry.service",
            "checkpoint-registry-backup.service", "checkpoint-registry-backup.timer"} <= {u.name for u in UNITS}


def test_shellcheck_is_clean_on_every_script():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (scripts/setup --dev installs it)")
    result = subprocess.run(["shellcheck", "--external-sources", *map(str, shell_scripts())], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_analyze_verify_is_clean_on_every_unit(tmp_path):
    """Verified in a scratch root holding the units where install scripts put them, systemd's own
    units, and stand-ins for the programs they run (this machine has no /opt/checkpoint)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (scripts/setup --dev installs systemd)")
    shutil.copytree("/usr/lib/systemd", tmp_path / "usr/lib/systemd", symlinks=True)
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy2(unit, unit_dir / unit.name)
        for program in re.findall(r"^Exec\w*=[-@:+!]*(/\S+)", unit.read_text(), flags=re.M):
            stand_in = tmp_path / program.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", "--man=no",
                             *(u.name for u in UNITS)], capture_output=True, text=True)
    # Clean means no complaint at all: unknown keys are only warnings (exit 0) but still printed.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_the_kiosk_unit_is_supervised():
    unit = (ROOT / "deploy" / "checkpoint.service").read_text()
    for line in ("Type=notify", "WatchdogSec=20", "WatchdogSignal=SIGTERM", "RestartPreventExitStatus=78",
                 "Restart=on-failure", "StandardError=journal",
                 "ExecStopPost=-/opt/checkpoint/.venv/bin/checkpoint gate-close --config /etc/checkpoint/gate.toml"):
        assert line in unit.splitlines(), line


# --- the install scripts' own checks --------------------------------------------------------------


def _fake_tool(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("script", ["install-kiosk.sh", "install-registry.sh"])
@pytest.mark.parametrize("arch", ["armhf", "i386"])
def test_32_bit_is_refused_with_a_clear_message(tmp_path, script, arch):
    _fake_tool(tmp_path / "bin", "dpkg", f'[ "$1" = --print-architecture ] && echo {arch}')
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run([str(ROOT / "deploy" / script), "--dry-run"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"32-bit system ({arch})" in result.stderr
    assert "64-bit Raspberry Pi OS" in result.stderr


BOOKWORM_CONFIG = """\
# For more options and information see
# http://rptl.io/configtxt
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[all]
dtparam=i2c_arm=on
dtparam=i2c_arm_baudrate=100000
"""


def i2c_config(tmp_path: Path, text: str) -> str:
    config = tmp_path / "config.txt"
    config.write_text(text)
    return subprocess.run([str(ROOT / "deploy" / "i2c-config.sh"), str(config)], check=True,
                          capture_output=True, text=True).stdout


def test_i2c_at_50_khz_comes_before_every_dtoverlay_and_section(tmp_path):
    out = i2c_config(tmp_path, BOOKWORM_CONFIG)
    lines = out.splitlines()
    baud = lines.index("dtparam=i2c_arm_baudrate=50000")
    assert lines.index("dtparam=i2c_arm=on") < baud
    assert baud < min(i for i, line in enumerate(lines) if line.startswith(("dtoverlay=", "[")))
    # The old 100 kHz line after the overlay is gone; nothing else is lost or reordered.
    assert "dtparam=i2c_arm_baudrate=100000" not in lines
    assert lines[3:] == [x for x in BOOKWORM_CONFIG.splitlines()
                         if x not in ("dtparam=i2c_arm=on", "dtparam=i2c_arm_baudrate=100000")]


def test_i2c_config_is_idempotent(tmp_path):
    once = i2c_config(tmp_path, BOOKWORM_CONFIG)
    assert i2c_config(tmp_path, once) == once


def test_i2c_config_on_a_missing_file_writes_just_the_i2c_lines(tmp_path):
    out = subprocess.run([str(ROOT / "deploy" / "i2c-config.sh"), str(tmp_path / "none.txt")], check=True,
                         capture_output=True, text=True).stdout
    assert out.splitlines()[1:] == ["dtparam=i2c_arm=on", "dtparam=i2c_arm_baudrate=50000"]
