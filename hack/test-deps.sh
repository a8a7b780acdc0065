#!/usr/bin/env bash
# Installs what `make test` and `make image` need beyond Go, git, make and gcc, so that both work
# on a fresh Debian machine (as root; as another user it names what is missing and stops):
#
#   hack/test-deps.sh packages   Debian packages: rsync (gitlab-ci-local copies artifacts with
#                                it), util-linux (unshare: the image test runs the image in a
#                                mount namespace), ca-certificates (the image's CA bundle),
#                                nodejs and npm when there is no npm (the pinned npm tools),
#                                openssh-client and gnupg (ssh-keygen and gpg make the signed-
#                                commit tests' keys and check signatures, as git verify-commit does).
#   hack/test-deps.sh busybox    Debian's busybox-static for linux/amd64 and linux/arm64 (the
#                                image's /bin/sh), fetched with apt from private package lists
#                                (the machine's apt configuration is left alone), into
#                                $CACHE/busybox-static/<arch>/busybox.
#   hack/test-deps.sh citest     the pinned CI validators of hack/citest/package-lock.json
#                                (@action-validator/cli, gitlab-ci-local, Node.js 22), with
#                                `npm ci`, into $CACHE/citest-tools/node_modules.
#
# $CACHE is $DELIVER_CACHE, else $XDG_CACHE_HOME/deliver, else ~/.cache/deliver: outside the
# clone, like the Kubernetes binaries (hack/k8s-bins.sh), so every clone and CI reuse it. Each
# part is stamped with what it was made from and skipped when the stamp matches; each is built
# in a temporary directory and renamed into place, so an interrupted or concurrent run never
# leaves half of it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${DELIVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deliver}
ARCHES=(amd64 arm64)

apt_updated=
apt_update() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
}

packages() {
  local missing=()
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  [ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  { command -v gpg && command -v gpgconf; } >/dev/null 2>&1 || missing+=(gnupg)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "test packages present (rsync, unshare, CA bundle, npm, ssh-keygen, gpg)"
    return
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

busybox() {
  local out=$CACHE/busybox-static
  # The stamp is the package version each architecture got: one fetch, one version for all.
  local have=1 a
  for a in "${ARCHES[@]}"; do [ -x "$out/$a/busybox" ] || have=; done
  if [ -s "$out/.stamp" ] && [ -n "$have" ]; then
    echo "busybox-static $(cat "$out/.stamp") for ${ARCHES[*]} up to date in $out"
    return
  fi
  for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || { echo "test-deps: busybox-static needs $tool (Debian)" >&2; exit 1; }
  done
  mkdir -p "$CACHE"
  local tmp
  tmp=$(mktemp -d "$CACHE/.busybox-static.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  local opts=() versions=()
  for a in "${ARCHES[@]}"; do
    # Package lists of this architecture only, kept in the temporary directory: `apt-get
    # download` of a foreign architecture needs its lists, and the machine's dpkg and apt
    # configuration stay as they were.
    mkdir -p "$tmp/apt-$a/lists/partial" "$tmp/apt-$a/cache/archives/partial" "$tmp/$a" "$tmp/deb-$a"
    opts=(-o "APT::Architecture=$a" -o "APT::Architectures::=$a" -o "Dir::State::Lists=$tmp/apt-$a/lists"
      -o "Dir::Cache=$tmp/apt-$a/cache" -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1"
      -o "APT::Sandbox::User=root")
    echo "fetching busybox-static for $a"
    apt-get "${opts[@]}" update -qq >/dev/null
    (cd "$tmp/deb-$a" && apt-get "${opts[@]}" download -qq "busybox-static:$a" >/dev/null)
    local deb
    deb=$(ls "$tmp/deb-$a"/busybox-static_*.deb)
    versions+=("$(dpkg-deb -f "$deb" Version)")
    dpkg-deb -x "$deb" "$tmp/root-$a"
    cp "$tmp/root-$a/bin/busybox" "$tmp/$a/busybox"
    rm -rf "$tmp/apt-$a" "$tmp/deb-$a" "$tmp/root-$a"
  done
  local v
  for v in "${versions[@]}"; do
    if [ "$v" != "${versions[0]}" ]; then
      echo "test-deps: busybox-static versions differ between architectures: ${versions[*]}" >&2
      exit 1
    fi
  done
  echo "${versions[0]}" >"$tmp/.stamp"
  chmod 755 "$tmp"
  rm -rf "$out.old"
  [ ! -e "$out" ] || mv "$out" "$out.old"
  mv "$tmp" "$out"
  rm -rf "$out.old"
  echo "busybox-static ${versions[0]} for ${ARCHES[*]} in $out"
}

citest() {
  local out=$CACHE/citest-tools stamp
  # The same stamp hack/citest computes to find the tools: package.json and package-lock.json.
  stamp=$(cat "$HERE/citest/package.json" "$HERE/citest/package-lock.json" | sha256sum | cut -c1-16)
  if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] && [ -d "$out/node_modules" ]; then
    echo "citest tools up to date in $out"
    return
  fi
  command -v npm >/dev/null 2>&1 || { echo "test-deps: no npm (hack/test-deps.sh packages installs it)" >&2; exit 1; }
  mkdir -p "$CACHE"
  local tmp
  tmp=$(mktemp -d "$CACHE/.citest-tools.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  cp "$HERE/citest/package.json" "$HERE/citest/package-lock.json" "$tmp/"
  echo "installing the citest tools (npm ci) into $out"
  npm ci --prefix "$tmp" --no-audit --no-fund --loglevel=error
  echo "$stamp" >"$tmp/.stamp"
  chmod 755 "$tmp"
  rm -rf "$out.old"
  [ ! -e "$out" ] || mv "$out" "$out.old"
  mv "$tmp" "$out"
  rm -rf "$out.old"
}

if [ $# -eq 0 ]; then set -- packages busybox citest; fi
for part in "$@"; do
  case $part in
  packages | busybox | citest) "$part" ;;
  *) echo "usage: $0 [packages|busybox|citest]..." >&2; exit 2 ;;
  esac
done
