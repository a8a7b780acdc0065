#!/usr/bin/env bash
# Builds the Gitea server the pull-request tests run against (internal/testenv/gitea.go), from the
# Go module proxy, into $1/gitea (default: ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/gitea-bins,
# outside the clone so CI and later runs reuse it). The build is skipped when $1 already holds a
# binary built by this same script (the stamp is a hash of this file, which pins the version).
#
# `go install code.gitea.io/gitea@vX` cannot work: the module's go.mod says `module gitea.dev` and
# has replace directives. So the module is downloaded, copied to a writable directory, given two
# go.mod fixes for modules the proxy does not serve, and built there: static (CGO_ENABLED=0, sqlite
# is the pure-Go modernc driver), with the templates and options embedded (bindata), so it runs
# from any directory. About 17 minutes on 2 cores with cold Go caches, seconds when warm.
#
# DELIVER_GITEA_PREBUILT=PATH copies an existing binary instead of building, after checking that
# it reports the same version (for a machine where another checkout already built one).
set -euo pipefail
VER=1.27.3
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deliver/gitea-bins}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(sha256sum <"$0" | cut -c1-16)
up_to_date() { [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ] && [ -x "$OUT/gitea" ]; }
if up_to_date; then
  echo "gitea $VER up to date in $OUT"
  exit 0
fi
# One build at a time per cache directory: a second `make` waits and then finds it done.
exec 9>"$OUT/.lock"
flock 9
if up_to_date; then
  echo "gitea $VER up to date in $OUT"
  exit 0
fi
export GOTOOLCHAIN=local
# Gitea refuses to run as root, even for --version, unless told otherwise; CI runs as root.
export GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true
t0=$(date +%s)
if [ -n "${DELIVER_GITEA_PREBUILT:-}" ]; then
  got=$("$DELIVER_GITEA_PREBUILT" --version 2>/dev/null || true)
  case $got in
  "gitea version $VER "*) ;;
  *) echo "DELIVER_GITEA_PREBUILT=$DELIVER_GITEA_PREBUILT reports '$got', want gitea version $VER" >&2; exit 1 ;;
  esac
  cp "$DELIVER_GITEA_PREBUILT" "$OUT/gitea.tmp"
else
  echo "building gitea $VER into $OUT (about 17 minutes on 2 cores with cold Go caches)..."
  work=$(mktemp -d "$OUT/build.XXXXXX")
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  # `go mod download` outside any module, with the default module flags.
  mdir=$(cd "$work" && GOFLAGS= go mod download -json "code.gitea.io/gitea@v$VER" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [ -d "$mdir" ] || { echo "go mod download code.gitea.io/gitea@v$VER failed" >&2; exit 1; }
  cp -r "$mdir" "$work/src"
  chmod -R u+w "$work/src"
  cd "$work/src"
  # gitea.dev/actions-proto-go is not on the proxy; code.gitea.io/actions-proto-go declares that
  # very module path, so a replace works.
  apv=$(awk '$1=="gitea.dev/actions-proto-go"{print $2; exit}' go.mod)
  [ -n "$apv" ] || { echo "go.mod of gitea $VER does not require gitea.dev/actions-proto-go: update this script" >&2; exit 1; }
  go mod edit -replace="gitea.dev/actions-proto-go=code.gitea.io/actions-proto-go@$apv"
  # gitea.dev/sdk is not on the proxy either, and nothing there stands in for it; only the
  # Gitea-to-Gitea migration downloader uses it, which the tests never need.
  rm -f services/migrations/gitea_downloader.go services/migrations/gitea_downloader_test.go
  go mod edit -droprequire=gitea.dev/sdk
  export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
  for d in modules/options modules/templates modules/migration modules/public; do
    (cd "$d" && go generate -tags bindata ./) >/dev/null
  done
  tags="bindata timetzdata"
  go build -trimpath -tags "$tags" -ldflags "-s -w -X main.Version=$VER -X 'main.Tags=$tags'" -o "$OUT/gitea.tmp" .
  cd "$OUT"
fi
"$OUT/gitea.tmp" --version
mv -f "$OUT/gitea.tmp" "$OUT/gitea"
echo "$STAMP" >"$OUT/.stamp"
echo "gitea $VER ready in $OUT after $(($(date +%s) - t0))s"
