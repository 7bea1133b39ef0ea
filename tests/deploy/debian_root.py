"""A throwaway Debian root to run the install scripts in: debootstrap (cached
as a tarball), unpacked into a folder, entered with chroot.

The mirror is the one apt on this machine uses (/etc/apt/sources.list*). The
chroot shares the network with the host, and gets its resolv.conf and CA
bundle (for pip behind a TLS-inspecting proxy). It gets /proc and a private
/dev (a tmpfs with a few device nodes and its own devpts instance; never a
bind mount of the host's /dev) while it is in use. No systemd runs inside:
the install scripts enable units (symlinks, which systemctl does offline)
and skip start/restart.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("CHECKPOINT_DEBIAN_ROOT_CACHE", Path.home() / ".cache" / "checkpoint"))
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
CHROOT_CA = "/etc/ssl/host-ca-bundle.pem"


def problem() -> str | None:
    """None when a Debian root can be built here, else why not."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mount)"
    for tool in ("debootstrap", "chroot", "mount", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup --dev installs debootstrap)"
    return None


def apt_mirror() -> str:
    """The Debian mirror apt is configured with here (deb822 or one-line sources)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for url in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, flags=re.M):
            if url.rstrip("/").endswith("/debian"):
                return url
    return DEFAULT_MIRROR


def cached_tarball() -> Path:
    """A minbase bookworm root as a tarball, made once with debootstrap."""
    tarball = CACHE / f"{SUITE}-minbase.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"{SUITE}-root.tmp"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(work), apt_mirror()], check=True,
                   stdout=subprocess.DEVNULL)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(work), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(work, ignore_errors=True)
    return tarball


class DebianRoot:
    """`with DebianRoot(folder) as root: root.sh("...")` runs commands inside a fresh root."""

    def __init__(self, folder: Path):
        self.path = Path(folder)
        self._mounted: list[Path] = []

    def __enter__(self) -> "DebianRoot":
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["tar", "-C", str(self.path), "-xf", str(cached_tarball())], check=True)
            shutil.copy2("/etc/resolv.conf", self.path / "etc" / "resolv.conf")
            # This machine's CA bundle: a TLS-inspecting proxy on the network needs it for pip.
            if Path(HOST_CA).exists():
                (self.path / CHROOT_CA.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(HOST_CA, self.path / CHROOT_CA.lstrip("/"))
            self._mount(["-t", "proc", "proc"], "proc")
            # A private /dev (tmpfs with the few nodes a package install needs, and its own
            # devpts): never a bind of the host's /dev, which a stray rm inside would empty.
            self._mount(["-t", "tmpfs", "-o", "mode=755,size=16m", "dev-tmpfs"], "dev")
            for name, (major, minor) in {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                                         "urandom": (1, 9), "tty": (5, 0)}.items():
                node = self.path / "dev" / name
                os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
                node.chmod(0o666)
            self._mount(["-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts"], "dev/pts")
            (self.path / "dev" / "ptmx").symlink_to("pts/ptmx")
            for name, target in {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                                 "stderr": "/proc/self/fd/2"}.items():
                (self.path / "dev" / name).symlink_to(target)
            (self.path / "dev" / "shm").mkdir(mode=0o1777)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _mount(self, args: list[str], where: str) -> None:
        target = self.path / where
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True)
        self._mounted.append(target)

    def __exit__(self, *exc) -> None:
        for target in reversed(self._mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self._mounted.clear()
        # Only delete when nothing is mounted below the root any more; never cross into another file system.
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            busy = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.path) + "/")]
        if not busy:
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.path)], check=False)

    def sh(self, script: str, *, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        if (self.path / CHROOT_CA.lstrip("/")).exists():
            env["PIP_CERT"] = CHROOT_CA
        result = subprocess.run(["chroot", str(self.path), "/bin/bash", "-c", script], env=env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"in the Debian root, {script!r} exited {result.returncode}:\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
        return result

    def copy_checkout(self, checkout: Path, dest: str = "/src/checkpoint") -> str:
        """The tracked files of this checkout (as they are now), without .venv or var."""
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=checkout, check=True,
                               capture_output=True, text=True).stdout.splitlines()
        root = self.path / dest.lstrip("/")
        for name in files:
            source = checkout / name
            if not source.is_file():
                continue
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return dest

    def tree_digest(self, *folders: str) -> dict[str, tuple]:
        """Every file's (size, mtime, mode, owner) under the folders: what a re-run must not change."""
        seen = {}
        for folder in folders:
            base = self.path / folder.lstrip("/")
            for path in sorted(base.rglob("*")) if base.exists() else []:
                rel = "/" + str(path.relative_to(self.path))
                if "__pycache__" in rel or rel.endswith(".pyc"):
                    continue
                st = path.lstat()
                if path.is_dir() and not path.is_symlink():
                    # A folder's own time moves with any entry in it; the entries are compared themselves.
                    seen[rel] = (st.st_mode, st.st_uid, st.st_gid)
                else:
                    seen[rel] = (st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid)
        return seen
