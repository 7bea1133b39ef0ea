# shellcheck shell=bash
# Helpers shared by install-kiosk.sh and install-registry.sh (sourced, not run).
#
# Every step is idempotent: it looks first and acts only when something is
# missing or different, and says "changed: ..." when it acted. A second run on
# an installed machine prints no "changed:" line. With --dry-run nothing is
# changed: each action is printed as "would: ..." instead.

DRY_RUN=0          # --dry-run
USE_SYSTEMCTL=auto # --no-systemctl: never call systemctl (a chroot, an image build)
CHANGES=0
APT_UPDATED=0

uninstall=0        # --uninstall
purge=0            # --purge (with --uninstall)

say() { printf '%s: %s\n' "${PROG:-install}" "$*" >&2; }
die() { say "error: $*"; exit 1; }
changed() { CHANGES=$((CHANGES + 1)); say "changed: $*"; }

# run DESCRIPTION CMD...: do it (and count it as a change), or print it on --dry-run.
run() {
    local what=$1
    shift
    if [ "$DRY_RUN" = 1 ]; then
        say "would: $what"
        return 0
    fi
    "$@"
    changed "$what"
}

# The options both installers take; returns 1 for any other (the caller's own, or unknown).
# shellcheck disable=SC2034  # uninstall and purge are read by the installers
common_option() {
    case "$1" in
        --no-systemctl) USE_SYSTEMCTL=0 ;;
        --dry-run) DRY_RUN=1 ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        # The header comment of the running script, down to "set -euo", is its help.
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) return 1 ;;
    esac
}

# remove_units UNIT...: stop, disable and remove these systemd units if installed.
remove_units() {
    local unit
    for unit in "$@"; do
        if [ -f "/etc/systemd/system/$unit" ]; then
            systemctl_do disable --now "$unit" 2>/dev/null || true
            run "remove $unit" rm -f "/etc/systemd/system/$unit"
        fi
    done
    systemctl_do daemon-reload
}

require_root() {
    [ "$DRY_RUN" = 1 ] && return 0
    [ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*)"
}

# OpenCV, zxing-cpp and numpy publish no 32-bit ARM wheels: refuse early and clearly.
require_64bit() {
    local arch
    arch=$(dpkg --print-architecture)
    case "$arch" in
        arm64 | amd64) ;;
        armhf | armel | i386)
            die "this is a 32-bit system ($arch). The checkpoint needs 64-bit Raspberry Pi OS (Bookworm or Trixie) on a Pi 4 or 5: OpenCV, zxing-cpp and numpy have no 32-bit wheels. Flash the 64-bit image and run this again." ;;
        *) die "unsupported architecture $arch (use arm64 or amd64)" ;;
    esac
}

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# apt waits up to 10 minutes for another apt/dpkg (unattended-upgrades at first boot) instead of failing.
APT=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

apt_install() {
    local missing=() p
    for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$DRY_RUN" = 1 ]; then
        say "would: apt-get install ${missing[*]}"
        return 0
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        "${APT[@]}" update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    changed "installed packages: ${missing[*]}"
}

# The first of several package names that apt knows (names differ between releases).
first_available() {
    local p
    for p in "$@"; do
        if have_pkg "$p" || apt-cache show "$p" >/dev/null 2>&1; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

ensure_group() {
    getent group "$1" >/dev/null || run "group $1" groupadd --system "$1"
}

# ensure_user NAME HOME GROUP...: a system user without a login shell, in these groups.
ensure_user() {
    local name=$1 home=$2 g
    shift 2
    if ! getent passwd "$name" >/dev/null; then
        run "system user $name" useradd --system --user-group --home-dir "$home" --no-create-home \
            --shell /usr/sbin/nologin "$name"
    fi
    for g in "$@"; do
        ensure_group "$g"
        if ! id -nG "$name" 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then
            run "$name joins group $g" usermod -a -G "$g" "$name"
        fi
    done
}

# ensure_dir PATH OWNER:GROUP MODE
ensure_dir() {
    local path=$1 owner=$2 mode=$3
    if [ ! -d "$path" ]; then
        run "folder $path" install -d -o "${owner%:*}" -g "${owner#*:}" -m "$mode" "$path"
        return 0
    fi
    if [ "$(stat -c '%U:%G %a' "$path")" != "$owner ${mode#0}" ]; then
        run "owner/mode of $path" sh -c "chown '$owner' '$path' && chmod '$mode' '$path'"
    fi
}

# install_file SRC DEST MODE [OWNER:GROUP]: copy when missing or different.
install_file() {
    local src=$1 dest=$2 mode=$3 owner=${4:-root:root}
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c '%U:%G %a' "$dest")" = "$owner ${mode#0}" ]; then
        return 0
    fi
    run "file $dest" install -D -o "${owner%:*}" -g "${owner#*:}" -m "$mode" "$src" "$dest"
}

# write_file DEST MODE OWNER:GROUP <<< content: like install_file, from stdin.
write_file() {
    local dest=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat > "$tmp"
    install_file "$tmp" "$dest" "$mode" "$owner"
    rm -f "$tmp"
}

# Copy the code (this checkout) to /opt/checkpoint; reports changes. Kept there:
# the venv, and what pip's editable install writes (*.egg-info, build/); folder
# times are not compared (pip touching /opt/checkpoint is not a change of the code).
RSYNC_KEEP=(--exclude /.venv --exclude /.git --exclude /var --exclude /artifacts --exclude /build
    --exclude '/*.egg-info' --exclude __pycache__ --exclude .pytest_cache)
sync_code() {
    local src=$1 dest=$2 itemized
    [ -d "$dest" ] && [ "$(cd "$src" && pwd -P)" = "$(cd "$dest" && pwd -P)" ] && return 0
    if [ "$DRY_RUN" = 1 ]; then
        itemized=$(rsync -a --omit-dir-times --delete --dry-run --itemize-changes "${RSYNC_KEEP[@]}" "$src/" "$dest/" 2>/dev/null \
            || echo all)
        [ -n "$itemized" ] && say "would: copy the code to $dest"
        return 0
    fi
    itemized=$(rsync -a --omit-dir-times --delete --itemize-changes --chown=root:root "${RSYNC_KEEP[@]}" "$src/" "$dest/")
    [ -n "$itemized" ] && changed "code in $dest ($(printf '%s\n' "$itemized" | wc -l) files)"
    return 0
}

# The venv and Python packages, through the project's own scripts/setup (quick when unchanged).
ensure_venv() {
    local dest=$1 system_site=$2
    local opts=()
    [ "$system_site" = 1 ] && opts=(--system-site-packages)
    if [ ! -x "$dest/.venv/bin/python" ]; then
        run "virtual environment $dest/.venv" python3 -m venv "${opts[@]}" "$dest/.venv"
    fi
    [ "$DRY_RUN" = 1 ] && { say "would: $dest/scripts/setup (pip only if pyproject.toml changed)"; return 0; }
    local before after
    before=$(cat "$dest/.venv/.setup-stamp" 2>/dev/null || true)
    "$dest/scripts/setup"
    after=$(cat "$dest/.venv/.setup-stamp" 2>/dev/null || true)
    [ "$before" = "$after" ] || changed "Python packages in $dest/.venv"
}

systemd_running() { [ -d /run/systemd/system ]; }

# systemctl_do ARGS...: skipped with --no-systemctl; start/restart skipped when systemd is not running.
systemctl_do() {
    if [ "$USE_SYSTEMCTL" = 0 ]; then
        say "skipped (--no-systemctl): systemctl $*"
        return 0
    fi
    case "$1" in
        start | restart | reload | daemon-reload | try-restart)
            if ! systemd_running; then
                say "skipped (systemd is not running here): systemctl $*"
                return 0
            fi ;;
    esac
    systemctl "$@"
}

# enable_unit NAME: enable when not enabled (works offline, in a chroot too).
enable_unit() {
    [ "$USE_SYSTEMCTL" = 0 ] && { say "skipped (--no-systemctl): systemctl enable $1"; return 0; }
    systemctl is-enabled --quiet "$1" 2>/dev/null || run "enable $1" systemctl enable --quiet "$1"
}

finish() {
    if [ "$DRY_RUN" = 1 ]; then
        say "dry run: nothing was changed"
    elif [ "$CHANGES" = 0 ]; then
        say "nothing to change: already installed"
    else
        say "done: $CHANGES change(s)"
    fi
}
