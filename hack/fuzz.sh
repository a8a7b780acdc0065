#!/usr/bin/env bash
# Runs every fuzz target in the module for $1 each (a -fuzztime: a duration such as 20s, or a
# count such as 5000x), one after another; $GO is the go command (default: go; split on spaces,
# as make does, so "env GOTOOLCHAIN=go1.27.1 go" works).
#
# A failing input (a crash, a panic, a failed check) fails the run. Go's fuzzer does not detect
# an input that hangs: that runs until the duration ends and passes. One failure that is not the
# target's is told apart: before Go 1.27, the fuzz coordinator can report its own -fuzztime
# deadline as "context deadline exceeded" (https://go.dev/issue/75804: it compares the worker's
# error with the workers' context, which may not be cancelled yet when the deadline has passed;
# our CI saw it on FuzzParse after 15 s). A target whose report (the lines between its
# "--- FAIL" line and the "FAIL" line that closes it) is exactly that message, and that wrote no
# failing input, is reported as that bug and counted as passed; anything else fails the run.
set -uo pipefail
FUZZTIME=${1:-20s}
GO=${GO:-go}
cd "$(dirname "$0")/.."

status=0
for file in $(grep -rlE '^func Fuzz[A-Za-z0-9_]*\(' --include='*_test.go' . | sort); do
  dir=$(dirname "$file")
  for target in $(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$file"); do
    echo "fuzz: $target in $dir for $FUZZTIME"
    corpus="$dir/testdata/fuzz/$target"
    before=$(ls "$corpus" 2>/dev/null | sort)
    out=$(mktemp)
    trap 'rm -f "$out"' EXIT
    $GO test -run='^$' -fuzz="^$target\$" -fuzztime="$FUZZTIME" "$dir" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    after=$(ls "$corpus" 2>/dev/null | sort)
    if [ "$rc" -ne 0 ]; then
      # The lines between the target's "--- FAIL" line and the bare "FAIL" that closes them;
      # nothing (so not the bug) when the closing line is missing.
      report=$(awk -v t="--- FAIL: $target " '
        index($0, t) == 1 { on = 1; body = ""; next }
        on && $0 == "FAIL" { print body; exit }
        on { body = body $0 "\n" }' "$out")
      if [ "$before" = "$after" ] && ! grep -q 'Failing input written to' "$out" &&
        [ "$(printf '%s' "$report" | sed 's/^[[:space:]]*//')" = "context deadline exceeded" ]; then
        echo "fuzz: $target: no failing input; Go's fuzz coordinator reported its own -fuzztime deadline (go.dev/issue/75804, fixed in Go 1.27): counted as passed"
      else
        echo "fuzz: $target failed (exit $rc)" >&2
        status=1
      fi
    fi
    rm -f "$out"
  done
done
exit $status
