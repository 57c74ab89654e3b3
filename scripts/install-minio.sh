#!/usr/bin/env bash
# Builds MinIO (the S3 baseline) from the Go module proxy into bin/minio, once.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x bin/minio ]; then exit 0; fi
if command -v minio >/dev/null 2>&1; then
  mkdir -p bin && ln -sf "$(command -v minio)" bin/minio && exit 0
fi
echo "building MinIO from the Go module proxy into bin/minio (first run only; about 3-5 minutes on 2 cores)..."
mkdir -p bin
start=$(date +%s)
# Outside the module, so that the build leaves go.mod alone.
bindir="$PWD/bin"
( cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod GOBIN="$bindir" go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c ) &
pid=$!
while kill -0 $pid 2>/dev/null; do
  sleep 10
  kill -0 $pid 2>/dev/null && echo "  still building MinIO... $(( $(date +%s) - start ))s"
done
wait $pid
echo "MinIO built in $(( $(date +%s) - start ))s"
