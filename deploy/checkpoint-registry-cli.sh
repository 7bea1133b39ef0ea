#!/bin/sh
# /usr/local/bin/checkpoint-registry: `checkpoint registry ...` as the service
# user, with the server's database from /etc/checkpoint-registry/registry.env.
#   sudo checkpoint-registry staff add wang
#   sudo checkpoint-registry gate code --site site-1 east-1 --by 王主任
# Installed by deploy/install-registry.sh.
set -eu
set -a
# shellcheck source=/dev/null
. /etc/checkpoint-registry/registry.env
set +a
exec runuser -u checkpoint-registry -- /opt/checkpoint/.venv/bin/checkpoint registry "$@"
