#!/usr/bin/env bash
# Prints a Raspberry Pi config.txt with I2C on at 50 kHz (the MLX90614 is an
# SMBus part: 10-100 kHz). The firmware applies dtparam lines in order and a
# baud rate after a dtoverlay= line does not reach the I2C controller, so the
# two lines go at the very top: before every dtoverlay= line and every
# [filter] section. Any other i2c_arm / i2c_arm_baudrate line is dropped.
# Idempotent: its output, fed back in, comes out the same.
#   deploy/i2c-config.sh /boot/firmware/config.txt > new-config.txt
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 CONFIG_TXT" >&2; exit 2; }
file=$1
marker="# checkpoint: I2C for the MLX90614 at 50 kHz; keep these lines before any dtoverlay= line"
printf '%s\n%s\n%s\n' "$marker" "dtparam=i2c_arm=on" "dtparam=i2c_arm_baudrate=50000"
if [ -f "$file" ]; then
    awk -v marker="$marker" '
        $0 == marker { next }
        /^[ \t]*dtparam=i2c_arm(_baudrate)?=/ { next }
        /^[ \t]*dtparam=i2c(_baudrate)?=/ { next }
        { print }
    ' "$file"
fi
