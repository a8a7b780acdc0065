#!/usr/bin/env bash
# Builds the pinned tools the benchmark baseline needs that the k8s bin dir does not hold: the
# kustomize CLI (sigs.k8s.io/kustomize/kustomize/v5 v5.8.2, the newest that builds with Go
# 1.26; v5.8.3 needs Go 1.27), from the Go module proxy through the nested tool module
# hack/benchtools, into $1 (default: ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/bench-bins,
# outside the clone so every clone and CI reuse it). kubectl comes from the k8s bin dir
# (hack/k8s-bins.sh). The build is skipped when $1 already holds binaries built from the same
# go.mod/go.sum/script.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deliver/bench-bins}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(cat "$HERE/benchtools/go.mod" "$HERE/benchtools/go.sum" "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ] && [ -x "$OUT/kustomize" ]; then
  echo "benchmark tools up to date in $OUT"
  exit 0
fi
echo "building benchmark tools (kustomize CLI) into $OUT ..."
cd "$HERE/benchtools"
KV=$(GOTOOLCHAIN=local go list -m -f '{{.Version}}' sigs.k8s.io/kustomize/kustomize/v5)
GOTOOLCHAIN=local go build -trimpath \
  -ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=$KV" \
  -o "$OUT/kustomize" sigs.k8s.io/kustomize/kustomize/v5
echo "$STAMP" >"$OUT/.stamp"
ls -l "$OUT"
