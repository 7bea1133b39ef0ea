#!/usr/bin/env bash
# Sets up the community registry server on a Debian 12/13 host (64-bit).
# Run from a checkout of this repository (it copies the code to /opt/checkpoint):
#
#   sudo deploy/install-registry.sh                                   # SQLite
#   sudo deploy/install-registry.sh --db postgresql://checkpoint@db.local/registry
#
# Idempotent: run it again to upgrade (new code; the database, its backups and
# /etc/checkpoint-registry stay); a second run with nothing new changes nothing. It
#   - installs python3-venv (and postgresql-client for a PostgreSQL URL), waiting for the dpkg lock;
#   - puts the code and its venv in /opt/checkpoint, the settings in
#     /etc/checkpoint-registry/registry.env (kept if present), SQLite data in
#     /var/lib/checkpoint-registry, backups in /var/backups/checkpoint-registry;
#   - creates the system user "checkpoint-registry";
#   - installs and starts checkpoint-registry.service (127.0.0.1:8700) and the
#     nightly checkpoint-registry-backup.timer;
#   - ends by opening the database (migrating it) as the service user.
# Put a TLS-terminating proxy in front: deploy/Caddyfile.example or
# deploy/nginx-registry.conf.example.
#
# Options:
#   --db URL          database for a new registry.env (default SQLite in /var/lib/checkpoint-registry)
#   --no-systemctl    never call systemctl (image builds, chroots)
#   --dry-run         print what would be done; change nothing
#   --uninstall       remove the units and the user's code; keep the database, backups and
#                     settings unless --purge
set -euo pipefail
PROG=install-registry
here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
# shellcheck source=deploy/install-common.sh
. "$here/install-common.sh"

OPT=/opt/checkpoint
ETC=/etc/checkpoint-registry
DATA=/var/lib/checkpoint-registry
BACKUPS=/var/backups/checkpoint-registry
UNITS=(checkpoint-registry.service checkpoint-registry-backup.service checkpoint-registry-backup.timer)
db=""

while [ $# -gt 0 ]; do
    case "$1" in
        --db) db=${2:?--db needs a URL}; shift ;;
        *) common_option "$1" || die "unknown option $1 (see --help)" ;;
    esac
    shift
done

require_root "$@"
require_64bit

if [ "$uninstall" = 1 ]; then
    remove_units checkpoint-registry-backup.timer checkpoint-registry.service checkpoint-registry-backup.service
    [ -f /usr/local/bin/checkpoint-registry ] && run "remove /usr/local/bin/checkpoint-registry" \
        rm -f /usr/local/bin/checkpoint-registry
    # /opt/checkpoint may also serve a kiosk on this machine: only remove it when no kiosk unit uses it.
    if [ -d "$OPT" ] && [ ! -f /etc/systemd/system/checkpoint.service ]; then
        run "remove $OPT" rm -rf "$OPT"
    fi
    if [ "$purge" = 1 ]; then
        for d in "$ETC" "$DATA" "$BACKUPS"; do [ -d "$d" ] && run "remove $d" rm -rf "$d"; done
        getent passwd checkpoint-registry >/dev/null && run "remove user checkpoint-registry" userdel checkpoint-registry
    else
        say "kept $ETC (settings), $DATA (the SQLite database) and $BACKUPS; --purge removes them"
    fi
    finish
    exit 0
fi

# --- packages, code, user, folders ----------------------------------------------------------
if [ "$DRY_RUN" = 0 ] && ! command -v apt-cache >/dev/null; then
    die "no apt here: this script is for Debian"
fi
if [ -z "$db" ] && [ -f "$ETC/registry.env" ]; then
    db=$(sed -n 's/^CHECKPOINT_REGISTRY_DB=//p' "$ETC/registry.env")
fi
db=${db:-sqlite:///$DATA/registry.db}
case "$db" in
    sqlite:///*) ;;
    postgresql://* | postgresql+psycopg://*) apt_install postgresql-client ;;
    *) die "--db $db: expected sqlite:///PATH or postgresql://USER@HOST/DB" ;;
esac
if ! have_pkg libzbar0t64 && ! have_pkg libzbar0; then
    zbar=$(first_available libzbar0t64 libzbar0) || zbar=libzbar0
    apt_install "$zbar"
fi
# fonts-wqy-microhei: the printed pass sheets embed its Chinese outlines (sync/server/sheets.py).
apt_install python3 python3-venv ca-certificates rsync sqlite3 fonts-wqy-microhei

sync_code "$src" "$OPT"
ensure_venv "$OPT" 0
ensure_user checkpoint-registry "$DATA"
ensure_dir "$ETC" root:checkpoint-registry 0750
ensure_dir "$DATA" checkpoint-registry:checkpoint-registry 0750
ensure_dir "$BACKUPS" checkpoint-registry:checkpoint-registry 0750

# Settings: written once, kept on upgrades (the database URL may hold a password).
if [ ! -f "$ETC/registry.env" ]; then
    write_file "$ETC/registry.env" 0640 root:checkpoint-registry <<ENV
# Read by checkpoint-registry.service and its nightly backup. Written by install-registry.sh.
# The registry's database: SQLite (default) or postgresql://USER@HOST/DB.
CHECKPOINT_REGISTRY_DB=$db
ENV
fi

install_file "$src/deploy/checkpoint-registry-cli.sh" /usr/local/bin/checkpoint-registry 0755

# --- services -----------------------------------------------------------------------------
for unit in "${UNITS[@]}"; do
    install_file "$src/deploy/$unit" "/etc/systemd/system/$unit" 0644
done
[ "$CHANGES" -gt 0 ] && systemctl_do daemon-reload
enable_unit checkpoint-registry.service
enable_unit checkpoint-registry-backup.timer

# --- check: the service user opens (and migrates) the database ------------------------------------
if [ "$DRY_RUN" = 0 ]; then
    runuser -u checkpoint-registry -- env "CHECKPOINT_REGISTRY_DB=$db" \
        "$OPT/.venv/bin/checkpoint" registry purge --dry-run >/dev/null \
        || die "cannot open the database $db as user checkpoint-registry (see above)"
    say "database ready: $db"
    if [ "$CHANGES" -gt 0 ]; then
        systemctl_do restart checkpoint-registry.service
    else
        systemctl_do start checkpoint-registry.service
    fi
    systemctl_do start checkpoint-registry-backup.timer
fi
finish
if [ "$DRY_RUN" = 0 ] && [ "$CHANGES" -gt 0 ]; then
    say "next: TLS in front (deploy/Caddyfile.example), a staff token (sudo checkpoint-registry staff add NAME),"
    say "      then for each gate a one-time code: sudo checkpoint-registry gate code --site SITE GATE --by YOUR-NAME"
fi
