"""install-registry.sh and install-kiosk.sh, run for real in a throwaway Debian
root (debootstrap + chroot), with the hardware steps skipped by --no-hardware
and systemd not running (units are enabled offline, start/restart skipped).

Checks: --dry-run changes nothing; the install works (packages, code, venv,
users, config, units enabled, enrolment with a one-time code from the
registry running in the same root, selftest); a second run changes nothing;
the gate syncs with its enrolled token; uninstall keeps the config and the
journal, and a re-install carries on with them.

Slow (downloads packages and wheels): `scripts/test -m slow tests/deploy`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.deploy.debian_root import DebianRoot, problem
from tests.sync.sync_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = ("/etc", "/opt/checkpoint", "/var/lib/checkpoint", "/var/lib/checkpoint-registry",
             "/var/backups/checkpoint-registry", "/usr/local/bin", "/boot")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def changes(output: str) -> list[str]:
    return [line for line in output.splitlines() if ": changed: " in line]


def installed_digest(root: DebianRoot) -> dict:
    digest = root.tree_digest(*INSTALLED)
    # Written by every apt/dpkg run and by the registry server process itself, not by the installer.
    return {k: v for k, v in digest.items()
            if not k.startswith(("/etc/ld.so.cache", "/var/lib/checkpoint-registry/registry.db"))}


@pytest.fixture(scope="module")
def debian(tmp_path_factory):
    why = problem()
    if why:
        pytest.skip(why)
    with DebianRoot(tmp_path_factory.mktemp("debian") / "root") as root:
        # What any Debian host has and a minbase root lacks.
        root.sh("apt-get -o DPkg::Lock::Timeout=600 update -qq && "
                "apt-get install -y -qq --no-install-recommends systemd >/dev/null")
        yield root


def test_install_registry_and_kiosk_in_a_debian_root(debian):
    src = debian.copy_checkout(ROOT)
    registry = f"{src}/deploy/install-registry.sh"
    kiosk = f"{src}/deploy/install-kiosk.sh"

    # --dry-run: says what it would do, changes nothing.
    before = installed_digest(debian)
    out = debian.sh(f"{registry} --dry-run 2>&1").stdout
    assert "would: " in out and "dry run: nothing was changed" in out
    assert installed_digest(debian) == before
    assert not (debian.path / "opt/checkpoint").exists()

    # The registry, then again: nothing changes.
    debian.sh(f"{registry} 2>&1")
    assert (debian.path / "etc/systemd/system/multi-user.target.wants/checkpoint-registry.service").is_symlink()
    assert (debian.path / "etc/systemd/system/timers.target.wants/checkpoint-registry-backup.timer").is_symlink()
    assert (debian.path / "var/lib/checkpoint-registry/registry.db").exists()
    before = installed_digest(debian)
    again = debian.sh(f"{registry} 2>&1").stdout
    assert changes(again) == [], again
    assert "nothing to change" in again
    assert installed_digest(debian) == before

    # The registry runs (as its service would) so the kiosk can enrol; staff make a one-time code.
    port = free_port()
    pid = int(debian.sh(
        "CHECKPOINT_REGISTRY_DB=sqlite:////var/lib/checkpoint-registry/registry.db nohup setpriv "
        "--reuid=checkpoint-registry --regid=checkpoint-registry --init-groups "
        f"/opt/checkpoint/.venv/bin/checkpoint registry serve --port {port} >/tmp/registry.log 2>&1 & echo $!"
    ).stdout.strip())
    try:
        code = debian.sh("checkpoint-registry gate code --site site-1 east-1 --by installer").stdout.strip()
        _wait_for_port(debian, port)

        before = installed_digest(debian)
        args = (f"--gate east-1 --site site-1 --server http://127.0.0.1:{port} --enrol-code {code} "
                "--no-hardware")
        out = debian.sh(f"{kiosk} {args} --dry-run 2>&1").stdout
        assert "would: " in out
        assert installed_digest(debian) == before
        assert not (debian.path / "etc/checkpoint").exists()

        out = debian.sh(f"{kiosk} {args} 2>&1").stdout
        assert "enrolled" in out
        for part in ("thermometer", "camera", "relay"):
            assert any(line.startswith("PASS") and part in line for line in out.splitlines()), out
        token = debian.path / "etc/checkpoint/gate.token"
        assert oct(token.stat().st_mode & 0o777) == "0o640"
        assert (debian.path / "etc/systemd/system/multi-user.target.wants/checkpoint.service").is_symlink()
        assert (debian.path / "etc/systemd/system/multi-user.target.wants/checkpoint-screen.service").is_symlink()
        assert 'GPIOZERO_PIN_FACTORY=lgpio' in (debian.path / "etc/checkpoint/checkpoint.env").read_text()
        groups = debian.sh("id -nG checkpoint").stdout.split()
        assert {"gpio", "i2c", "video"} <= set(groups)
        # The screen's font is there: the guard screen is Chinese.
        assert "install ok installed" in debian.sh("dpkg-query -W -f='${Status}' fonts-noto-cjk").stdout

        before = installed_digest(debian)
        again = debian.sh(f"{kiosk} {args} 2>&1").stdout
        assert changes(again) == [], again
        assert "nothing to change" in again
        assert installed_digest(debian) == before

        # The enrolled token works: the gate's journal syncs to the registry.
        sync = debian.sh("runuser -u checkpoint -- /opt/checkpoint/.venv/bin/checkpoint sync now "
                         "--config /etc/checkpoint/gate.toml")
        assert '"pending": 0' in sync.stdout
        journal = debian.path / "var/lib/checkpoint/journal.db"
        assert journal.exists()

        # Uninstall keeps the config, the token and the journal; a re-install carries on with them.
        out = debian.sh(f"{kiosk} --uninstall 2>&1").stdout
        assert "kept /etc/checkpoint" in out
        assert not (debian.path / "etc/systemd/system/checkpoint.service").exists()
        assert journal.exists() and token.exists()
        assert (debian.path / "etc/checkpoint/gate.toml").exists()
        debian.sh(f"{kiosk} --no-hardware 2>&1")
        sync = debian.sh("runuser -u checkpoint -- /opt/checkpoint/.venv/bin/checkpoint sync now "
                         "--config /etc/checkpoint/gate.toml")
        assert '"pending": 0' in sync.stdout
    finally:
        os.kill(pid, signal.SIGTERM)


def _wait_for_port(root: DebianRoot, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = f"import httpx; httpx.get('http://127.0.0.1:{port}/api/v1/time').raise_for_status()"
        if root.sh(f'/opt/checkpoint/.venv/bin/python -c "{probe}"', check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the registry did not start:\n" + (root.path / "tmp/registry.log").read_text())
