#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the tests, all from the Go module proxy:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (v1.37.2), etcd (v3.7.0),
# kwok (v0.8.0) and the kustomize CLI (v5, for the benchmark baseline), into $1
# (default: ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/k8s-bins, outside the clone so CI reuses it).
# The build is skipped when $1 already holds binaries built from the same go.mod/go.sum/script.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deliver/k8s-bins}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(cat "$HERE/k8stools/go.mod" "$HERE/k8stools/go.sum" "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "k8s test binaries up to date in $OUT"
  exit 0
fi
echo "building k8s test binaries into $OUT (about 7 minutes on a cold cache)..."
KV=v1.37.2 KMAJ=1 KMIN=37
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF="$LDF -X $p.gitVersion=$KV -X $p.gitMajor=$KMAJ -X $p.gitMinor=$KMIN -X $p.gitTreeState=clean"
done
cd "$HERE/k8stools"
# 'tool' = every tool directive in k8stools/go.mod; one go build shares the compile work.
GOTOOLCHAIN=local go build -trimpath -ldflags="$LDF" -o "$OUT/" tool
mv -f "$OUT/server" "$OUT/etcd" # go.etcd.io/etcd/server/v3 builds as "server"
echo "$STAMP" >"$OUT/.stamp"
ls -l "$OUT"
