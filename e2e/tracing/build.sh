#!/usr/bin/env bash
# Builds Jaeger (v2, the OpenTelemetry Collector-based backend) from Go modules, pinned by go.mod/go.sum here, into
# a folder keyed by its version, for the tracing tests (tests/helpers/jaeger.py).
#
#   e2e/tracing/build.sh DIR    build DIR/jaeger unless it is there
#
# From nothing about six minutes on 2 cores; the build goes to a temporary folder renamed into place at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${1:?usage: $0 DIR}
if [[ -x $DIR/jaeger ]]; then
	exit 0
fi
mkdir -p "$(dirname "$DIR")"
TMP=$(mktemp -d "$DIR.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
(cd "$HERE" && GOFLAGS=-mod=readonly GOBIN=$TMP go install -trimpath -ldflags="-s -w" tool)
rm -rf "$DIR"
mv "$TMP" "$DIR"
trap - EXIT
echo "built $DIR/jaeger"
