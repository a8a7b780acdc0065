#!/usr/bin/env bash
# Builds the real Flux controllers the tests run as local processes against the test control
# plane (internal/testenv/flux.go): source-controller and kustomize-controller v1.9.6, from the
# Go module proxy, into $1 (default: ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/flux-bins, outside
# the clone so every clone and CI reuse them), with their CustomResourceDefinitions in $1/crds.
# The build is skipped when $1 already holds binaries built by this same script (.stamp).
#
# The recipe (measured in shared/notes/flux-controllers.md):
# - `go install module@version` refuses both modules (their go.mod has replace directives), so
#   each module zip is copied out of the module cache with its api submodule (a module of its
#   own, not in the zip) beside it at ./api, and built in place with upstream's go.mod/go.sum.
# - v1.10.x needs Go 1.27 and dependency zips this proxy does not serve; v1.9.6 of both builds
#   with Go 1.26 (k8s.io 0.36.4, controller-runtime 0.24.1: the two agree with each other).
# - source-controller v1.9.6 requires github.com/fluxcd/pkg/artifact v0.18.3, which the proxy
#   may not serve; then v0.18.0 (its go.mod differs only in dependency bumps) replaces it.
# - A cold build takes about 10 minutes per controller on 2 cores and 1.7 GB of memory; the
#   second one reuses much of the first's build cache. Warm, both take about 20 seconds.
#
# Concurrent runs (two clones, or .ci/run starting the build early) take turns on a lock,
# $1/.lock; the second finds the stamp and returns.
#
#   hack/flux-bins.sh [--background] [DIR]
#
# --background returns at once and builds in the background (log: DIR/build.log), holding the
# lock from before it returns until the build ends: tests that need the controllers
# (internal/testenv's StartFlux) wait for the lock, so the build overlaps with the tests that
# do not need it.
set -euo pipefail
V=v1.9.6
MODULES=(source-controller kustomize-controller)
BACKGROUND=
if [ "${1:-}" = --background ]; then
  BACKGROUND=1
  shift
fi
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deliver/flux-bins}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(sha256sum <"$0" | cut -c1-16)

up_to_date() {
  [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ] || return 1
  local m
  for m in "${MODULES[@]}"; do [ -x "$OUT/$m" ] || return 1; done
  [ -s "$OUT/crds/source.toolkit.fluxcd.io_gitrepositories.yaml" ] &&
    [ -s "$OUT/crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml" ]
}

if up_to_date; then
  echo "flux controllers up to date in $OUT"
  exit 0
fi
if [ -z "${DELIVER_FLUX_BINS_LOCKED:-}" ]; then # set for the background child, which inherits the lock
  exec 9>"$OUT/.lock"
  if ! flock -n 9; then
    if [ -n "$BACKGROUND" ]; then
      echo "flux controllers: a build into $OUT is already running"
      exit 0
    fi
    echo "another build of the flux controllers into $OUT is running: waiting for it..."
    flock 9
  fi
  if up_to_date; then
    echo "flux controllers up to date in $OUT"
    exit 0
  fi
  if [ -n "$BACKGROUND" ]; then
    # The child inherits descriptor 9, and with it the lock, before this script returns.
    echo "flux controllers: building into $OUT in the background (log: $OUT/build.log)"
    DELIVER_FLUX_BINS_LOCKED=1 setsid "$0" "$OUT" >"$OUT/build.log" 2>&1 </dev/null &
    exit 0
  fi
fi

echo "building flux source-controller and kustomize-controller $V into $OUT (about 20 minutes on a cold cache)..."
export GOTOOLCHAIN=local CGO_ENABLED=0
SRC=$(mktemp -d "${TMPDIR:-/tmp}/deliver-flux-src.XXXXXX")
trap 'chmod -R u+w "$SRC" 2>/dev/null; rm -rf "$SRC"' EXIT
modcache=$(go env GOMODCACHE)
rm -f "$OUT/.stamp"
rm -rf "$OUT/crds.new" && mkdir -p "$OUT/crds.new"
for m in "${MODULES[@]}"; do
  go mod download "github.com/fluxcd/$m@$V" "github.com/fluxcd/$m/api@$V"
  cp -r "$modcache/github.com/fluxcd/$m@$V" "$SRC/$m" && chmod -R u+w "$SRC/$m"
  cp -r "$modcache/github.com/fluxcd/$m/api@$V" "$SRC/$m/api" && chmod -R u+w "$SRC/$m/api"
  cp "$SRC/$m"/config/crd/bases/*.yaml "$OUT/crds.new/"
done
( cd "$SRC/source-controller"
  if ! go mod download github.com/fluxcd/pkg/artifact@v0.18.3 2>/dev/null; then
    echo "github.com/fluxcd/pkg/artifact v0.18.3 is not served by the module proxy: replacing it with v0.18.0"
    go mod edit -replace github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.0
    GOFLAGS=-mod=mod go list -deps . >/dev/null # records the replacement's go.sum lines
  fi )
for m in "${MODULES[@]}"; do
  ( cd "$SRC/$m"
    s=$(date +%s)
    go build -trimpath -ldflags='-s -w' -o "$OUT/$m.new" .
    mv -f "$OUT/$m.new" "$OUT/$m"
    echo "$m $V built in $(($(date +%s) - s))s" )
done
rm -rf "$OUT/crds" && mv "$OUT/crds.new" "$OUT/crds"
echo "$STAMP" >"$OUT/.stamp"
ls -l "$OUT" "$OUT/crds"
