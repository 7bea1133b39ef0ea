#!/usr/bin/env bash
# Sets up a gate kiosk on 64-bit Raspberry Pi OS (Bookworm or Trixie) on a Pi 4 or 5.
# Run from a checkout of this repository (it copies the code to /opt/checkpoint):
#
#   sudo deploy/install-kiosk.sh --gate east-1 --site site-1 \
#        --server https://registry.example.org --enrol-code K7QF-M2XR-9PHD
#
# Idempotent: run it again to upgrade (new code, same config and journal);
# a second run with nothing new changes nothing. It
#   - installs the apt packages (python3-venv, zbar, Chromium, cage, fonts-noto-cjk,
#     python3-picamera2 with --camera picamera2), waiting for the dpkg lock;
#   - puts the code and its venv in /opt/checkpoint, the config in /etc/checkpoint
#     (kept if present), the journal in /var/lib/checkpoint;
#   - creates the system user "checkpoint" (groups gpio, i2c, video) and
#     "checkpoint-screen" (the browser: video, render, input; no GPIO);
#   - turns I2C on at 50 kHz in the release's config.txt and sets gpiozero's pin factory;
#   - enrols the gate with the registry from a one-time code;
#   - installs and starts checkpoint.service (watchdog-supervised) and
#     checkpoint-screen.service (Chromium full-screen on the display);
#   - ends with `checkpoint selftest` (the relay is not clicked: no one confirms).
#
# Options:
#   --gate ID --site ID     for a new /etc/checkpoint/gate.toml (ignored when it exists)
#   --server URL            the registry (new config only)
#   --enrol-code CODE       one-time code from registry staff (`checkpoint registry gate code`)
#   --issuer-key FILE       an issuer public key to trust (else keys come from the registry)
#   --camera usb|picamera2  camera kind for a new config (default usb)
#   --no-hardware           skip config.txt, I2C modules and the hardware selftest (a VM, a chroot)
#   --no-screen             no Chromium on an attached display
#   --no-systemctl          never call systemctl (image builds, chroots)
#   --dry-run               print what would be done; change nothing
#   --uninstall             remove the code, units and users; keep /etc/checkpoint and
#                           /var/lib/checkpoint (config and journal) unless --purge
set -euo pipefail
PROG=install-kiosk
here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
# shellcheck source=deploy/install-common.sh
. "$here/install-common.sh"

OPT=/opt/checkpoint
ETC=/etc/checkpoint
DATA=/var/lib/checkpoint
gate="" site="" server="" code="" issuer_key="" camera=usb
hardware=1 screen=1

while [ $# -gt 0 ]; do
    case "$1" in
        --gate) gate=${2:?--gate needs a value}; shift ;;
        --site) site=${2:?--site needs a value}; shift ;;
        --server) server=${2:?--server needs a URL}; shift ;;
        --enrol-code) code=${2:?--enrol-code needs the code}; shift ;;
        --issuer-key) issuer_key=${2:?--issuer-key needs a file}; shift ;;
        --camera) camera=${2:?--camera needs usb or picamera2}; shift ;;
        --no-hardware) hardware=0 ;;
        --no-screen) screen=0 ;;
        *) common_option "$1" || die "unknown option $1 (see --help)" ;;
    esac
    shift
done
case "$camera" in usb | picamera2) ;; *) die "--camera $camera: expected usb or picamera2" ;; esac

require_root "$@"
require_64bit

uninstall_kiosk() {
    remove_units checkpoint-screen.service checkpoint.service
    # /opt/checkpoint may also serve the registry on this machine: then it stays.
    if [ -d "$OPT" ] && [ ! -f /etc/systemd/system/checkpoint-registry.service ]; then
        run "remove $OPT" rm -rf "$OPT"
    fi
    getent passwd checkpoint-screen >/dev/null && run "remove user checkpoint-screen" userdel checkpoint-screen
    if [ "$purge" = 1 ]; then
        [ -d "$ETC" ] && run "remove $ETC (config, token)" rm -rf "$ETC"
        [ -d "$DATA" ] && run "remove $DATA (the journal)" rm -rf "$DATA"
        getent passwd checkpoint >/dev/null && run "remove user checkpoint" userdel checkpoint
    else
        # The user stays too: it owns the journal, and a reinstall finds it as it was.
        say "kept $ETC (config, token) and $DATA (the journal); --purge removes them"
    fi
    finish
}

if [ "$uninstall" = 1 ]; then
    uninstall_kiosk
    exit 0
fi

# --- packages -------------------------------------------------------------------------
if [ "$DRY_RUN" = 0 ] && ! command -v apt-cache >/dev/null; then
    die "no apt here: this script is for Debian / Raspberry Pi OS"
fi
if ! have_pkg libzbar0t64 && ! have_pkg libzbar0; then
    zbar=$(first_available libzbar0t64 libzbar0) || zbar=libzbar0  # renamed in Trixie
    apt_install "$zbar"
fi
apt_install python3 python3-venv ca-certificates rsync curl fonts-noto-cjk
if [ "$screen" = 1 ]; then
    # Raspberry Pi OS Bookworm calls it chromium-browser; Debian and Trixie, chromium.
    browser=$(first_available chromium chromium-browser) || browser=chromium
    apt_install "$browser" cage
fi
if [ "$hardware" = 1 ]; then
    apt_install i2c-tools
    if [ "$camera" = picamera2 ]; then apt_install python3-picamera2; fi
fi

# --- code, venv, users, folders -------------------------------------------------------------
sync_code "$src" "$OPT"
# picamera2 comes from apt (libcamera has no wheels): the venv must see system packages.
ensure_venv "$OPT" "$([ "$camera" = picamera2 ] && echo 1 || echo 0)"

ensure_user checkpoint "$DATA" gpio i2c video
if [ "$screen" = 1 ]; then
    ensure_user checkpoint-screen /var/lib/checkpoint-screen video render input
    ensure_dir /var/lib/checkpoint-screen checkpoint-screen:checkpoint-screen 0750
fi
ensure_dir "$ETC" root:checkpoint 0750
ensure_dir "$DATA" checkpoint:checkpoint 0750

# --- config ------------------------------------------------------------------------------
if [ -n "$issuer_key" ]; then
    ensure_dir "$ETC/keys" root:checkpoint 0750
    install_file "$issuer_key" "$ETC/keys/$(basename "$issuer_key")" 0640 root:checkpoint
fi
if [ ! -f "$ETC/gate.toml" ]; then
    if [ -z "$gate" ] || [ -z "$site" ]; then
        die "no $ETC/gate.toml yet: give --gate ID and --site ID (and --server URL)"
    fi
    pin=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ' | cut -c1-6)
    keys="[]"
    [ -n "$issuer_key" ] && keys="[\"keys/$(basename "$issuer_key")\"]"
    source_kind=$([ "$camera" = picamera2 ] && echo picamera2 || echo 0)
    # A new config from the commented example: gate, site, keys, camera, PIN and registry filled in.
    sed -e "s|^id = \"east-1\" |id = \"$gate\" |" \
        -e "s|^site = \"site-1\" |site = \"$site\" |" \
        -e "s|^issuer_keys = \\[\"keys/issuer.pub\"\\]|issuer_keys = $keys|" \
        -e "s|^source = \"0\" |source = \"$source_kind\" |" \
        -e "s|^pin = \"246810\" |pin = \"$pin\" |" \
        -e "s|^server = \"http://registry.local:8700\"|server = \"${server:-http://registry.local:8700}\"|" \
        "$src/deploy/gate.example.toml" | write_file "$ETC/gate.toml" 0640 root:checkpoint
    [ "$DRY_RUN" = 0 ] && say "guard screen PIN for the LAN: $pin (in $ETC/gate.toml, [screen] pin)"
fi
# gpiozero's pin factory: lgpio works on the Pi 4 and the Pi 5 (RPi.GPIO does not on a 5).
write_file "$ETC/checkpoint.env" 0644 root:root <<'ENV'
# Read by checkpoint.service (EnvironmentFile). Written by install-kiosk.sh.
GPIOZERO_PIN_FACTORY=lgpio
ENV
if [ "$DRY_RUN" = 0 ]; then
    "$OPT/.venv/bin/checkpoint" check-config "$ETC/gate.toml" >/dev/null \
        || die "$ETC/gate.toml has problems (listed above); fix it and run this again"
fi

# --- hardware: I2C at 50 kHz --------------------------------------------------------------
if [ "$hardware" = 1 ]; then
    # Bookworm and later mount the boot partition on /boot/firmware; older releases on /boot.
    if [ -f /boot/firmware/config.txt ]; then
        boot_config=/boot/firmware/config.txt
    elif [ -f /boot/config.txt ]; then
        boot_config=/boot/config.txt
    else
        die "no /boot/firmware/config.txt or /boot/config.txt: not a Raspberry Pi? (--no-hardware skips this)"
    fi
    wanted=$(mktemp)
    "$src/deploy/i2c-config.sh" "$boot_config" > "$wanted"
    if ! cmp -s "$wanted" "$boot_config"; then
        [ -f "$boot_config.before-checkpoint" ] || run "backup $boot_config.before-checkpoint" \
            cp "$boot_config" "$boot_config.before-checkpoint"
        # cat, not mv: the boot partition is FAT (no owners or modes to keep right).
        run "I2C at 50 kHz in $boot_config (takes effect after a reboot)" sh -c "cat '$wanted' > '$boot_config'"
    fi
    rm -f "$wanted"
    write_file /etc/modules-load.d/checkpoint-i2c.conf 0644 root:root <<<"i2c-dev"
fi

# --- enrolment ----------------------------------------------------------------------------
if [ -n "$code" ]; then
    if [ -s "$ETC/gate.token" ]; then
        say "$ETC/gate.token exists: the gate is enrolled (checkpoint enrol --force replaces it)"
    elif [ "$DRY_RUN" = 1 ]; then
        say "would: enrol the gate with the one-time code"
    else
        "$OPT/.venv/bin/checkpoint" enrol --config "$ETC/gate.toml" --code "$code"
        chgrp checkpoint "$ETC/gate.token" && chmod 0640 "$ETC/gate.token"
        changed "enrolled; token in $ETC/gate.token"
    fi
fi

# --- services -----------------------------------------------------------------------------
install_file "$src/deploy/checkpoint.service" /etc/systemd/system/checkpoint.service 0644
if [ "$screen" = 1 ]; then
    install_file "$src/deploy/checkpoint-screen.service" /etc/systemd/system/checkpoint-screen.service 0644
fi
if [ "$CHANGES" -gt 0 ]; then
    systemctl_do daemon-reload
fi
enable_unit checkpoint.service
if [ "$screen" = 1 ]; then
    enable_unit checkpoint-screen.service
    # The kiosk owns the display: a desktop login screen would take it from cage.
    if [ "$USE_SYSTEMCTL" != 0 ] && systemctl is-enabled --quiet display-manager.service 2>/dev/null; then
        run "disable the desktop login (display-manager) so the kiosk owns the screen" \
            systemctl disable --quiet display-manager.service
    fi
fi
# --- selftest, then (re)start ------------------------------------------------------------------
if [ "$DRY_RUN" = 0 ]; then
    if [ "$hardware" = 1 ]; then
        config="$ETC/gate.toml"
        # The selftest needs the devices the running kiosk holds: stop it meanwhile (the relay closes).
        if [ "$USE_SYSTEMCTL" != 0 ] && systemd_running && systemctl is-active --quiet checkpoint.service; then
            systemctl_do stop checkpoint.service
        fi
    else
        # No devices here: check the software on the fake devices instead (decoder, MLX driver, relay logic).
        config="$ETC/.selftest-fake.toml"
        sed 's/^kind = "pi"/kind = "fake"/' "$ETC/gate.toml" > "$config"
        trap 'rm -f "$config"' EXIT
    fi
    say "selftest (the relay is not clicked here; run checkpoint selftest --config $ETC/gate.toml --yes for that)"
    selftest=0
    runuser -u checkpoint -- "$OPT/.venv/bin/checkpoint" selftest --config "$config" </dev/null || selftest=$?
    if [ "$CHANGES" -gt 0 ]; then
        systemctl_do restart checkpoint.service
        if [ "$screen" = 1 ]; then systemctl_do restart checkpoint-screen.service; fi
    else
        systemctl_do start checkpoint.service
    fi
    [ "$selftest" = 0 ] || die "selftest failed (see above); the service is installed: fix the part and run this again"
fi
finish
