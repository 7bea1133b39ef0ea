#!/usr/bin/env bash
# Started by checkpoint-screen.service: waits for the kiosk's guard screen,
# then runs Chromium full-screen in cage. When either exits, systemd starts
# this again. The browser profile lives in the session's tmpfs
# ($XDG_RUNTIME_DIR), so it never wears the SD card and starts clean.
set -euo pipefail
url="${CHECKPOINT_SCREEN_URL:-http://127.0.0.1:8080/}"
browser=$(command -v chromium || command -v chromium-browser) \
    || { echo "kiosk-browser: no chromium installed (install-kiosk.sh installs it)" >&2; exit 1; }
# Chromium showing "site can't be reached" would stay there: wait for the screen first.
for _ in $(seq 120); do
    curl -fsS -o /dev/null --max-time 2 "${url%/}/healthz" && break
    sleep 1
done
profile="${XDG_RUNTIME_DIR:-/tmp}/checkpoint-chromium"
mkdir -p "$profile"
# --autoplay-policy: the fever alarm sounds without anyone touching the screen first.
exec cage -s -- "$browser" --kiosk --noerrdialogs --disable-infobars --no-first-run \
    --disable-session-crashed-bubble --check-for-update-interval=31536000 \
    --autoplay-policy=no-user-gesture-required --lang=zh-CN \
    --ozone-platform=wayland --user-data-dir="$profile" --password-store=basic \
    "$url"
