"""scripts/setup: quick when nothing changed, waits for the dpkg lock, installs
the CJK font for the runtime.

The script runs for real in a copy of the project; only its edges are fakes
on PATH: `dpkg-query` (which packages are installed), `apt-get`/`sudo`
(record what they are asked), and `.venv/bin/python` (records pip calls).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def project(tmp_path):
    """A copy of scripts/setup and pyproject.toml, a fake venv python and fake apt tools."""
    proj = tmp_path / "proj"
    (proj / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup", proj / "scripts" / "setup")
    shutil.copy2(ROOT / "pyproject.toml", proj / "pyproject.toml")
    log = tmp_path / "calls.log"
    _executable(proj / ".venv" / "bin" / "python", f'#!/bin/sh\necho "python $*" >> {log}\n')
    bin_dir = tmp_path / "bin"
    missing = tmp_path / "missing-packages"
    missing.write_text("", encoding="utf-8")
    # Installed unless listed in `missing`, in dpkg-query's own output format.
    _executable(bin_dir / "dpkg-query",
                f'#!/bin/sh\nfor pkg; do :; done\ngrep -qx "$pkg" {missing} && exit 1\n'
                'printf "install ok installed"\n')
    _executable(bin_dir / "apt-get", f'#!/bin/sh\necho "apt-get $*" >> {log}\n')
    _executable(bin_dir / "sudo", '#!/bin/sh\nexec "$@"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("APT_UPDATED", None)

    def run(*args: str) -> list[str]:
        before = log.read_text().splitlines() if log.exists() else []
        subprocess.run([str(proj / "scripts" / "setup"), *args], env=env, check=True, capture_output=True,
                       timeout=60)
        after = log.read_text().splitlines() if log.exists() else []
        return after[len(before):]

    return proj, missing, run


def pip_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip install") and "--upgrade pip" not in c]


def test_switching_between_demo_and_test_does_not_reinstall(project):
    proj, _, run = project
    assert pip_installs(run()) == ["python -m pip install -q -e ."]
    assert pip_installs(run()) == []
    # ./scripts/test after ./scripts/demo: the dev extras are new, installed once.
    assert pip_installs(run("--dev")) == ["python -m pip install -q -e .[dev]"]
    # Then switching back and forth installs nothing.
    for args in [(), ("--dev",), (), ("--dev",)]:
        assert pip_installs(run(*args)) == [], args


def test_a_changed_pyproject_reinstalls_with_the_extras_already_there(project):
    proj, _, run = project
    run("--dev")
    with open(proj / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    assert pip_installs(run()) == ["python -m pip install -q -e .[dev]"]
    assert pip_installs(run()) == []


def test_apt_waits_for_the_dpkg_lock_and_the_runtime_gets_the_cjk_font(project):
    proj, missing, run = project
    missing.write_text("fonts-noto-cjk\n", encoding="utf-8")
    calls = [c for c in run() if c.startswith("apt-get")]
    assert len(calls) == 2, calls
    update, install = calls
    assert "-o DPkg::Lock::Timeout=600 update" in update
    assert "-o DPkg::Lock::Timeout=600" in install and install.endswith("fonts-noto-cjk")


def test_dev_setup_installs_the_deploy_test_tools(project):
    proj, missing, run = project
    missing.write_text("shellcheck\ndebootstrap\n", encoding="utf-8")
    install = [c for c in run("--dev") if c.startswith("apt-get") and " install " in c]
    assert install and install[-1].endswith("shellcheck debootstrap"), install
