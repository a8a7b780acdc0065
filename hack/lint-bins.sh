#!/usr/bin/env bash
# Builds the pinned linters `make lint` runs (staticcheck, from the nested tool module
# hack/linttools) from the Go module proxy into $1 (default:
# ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/lint-bins, outside the clone so every clone and CI reuse
# it). The build is skipped when $1 already holds binaries built from the same go.mod/go.sum/script.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deliver/lint-bins}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(cat "$HERE/linttools/go.mod" "$HERE/linttools/go.sum" "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ] && [ -x "$OUT/staticcheck" ]; then
  exit 0
fi
echo "building linters (staticcheck) into $OUT ..."
cd "$HERE/linttools"
GOTOOLCHAIN=local go build -trimpath -ldflags="-s -w" -o "$OUT/" tool
echo "$STAMP" >"$OUT/.stamp"
