#!/bin/sh
# Builds MinIO from the Go module proxy into bin/ (or $1) for the MinIO
# baseline of `handoff bench` and its tests. Takes 3-5 minutes (more on a
# busy machine) the first time; does nothing when the binary is there.
set -eu
bindir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/bin"}
if [ -x "$bindir/minio" ]; then
	exit 0
fi
mkdir -p "$bindir"
bindir=$(cd "$bindir" && pwd)
echo "building MinIO from the Go module proxy into $bindir (first run only, about 3-5 minutes)..." >&2
start=$(date +%s)
# Outside the module, so that the build leaves go.mod alone.
cd "${TMPDIR:-/tmp}"
GOFLAGS=-mod=mod GOBIN="$bindir" go install github.com/minio/minio@latest
echo "built MinIO in $(( $(date +%s) - start ))s: $bindir/minio" >&2
