#!/bin/sh
# Installs Debian's redis-server for the Redis baseline of `handoff bench`
# and its tests. Idempotent: does nothing when redis-server is on PATH.
set -eu
if command -v redis-server >/dev/null 2>&1; then
	exit 0
fi
echo "installing redis-server with apt-get (needs root)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends redis-server
