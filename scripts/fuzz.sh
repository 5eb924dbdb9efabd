#!/usr/bin/env bash
# fuzz.sh: a short fuzz run of every Fuzz target in the module (make fuzz; CI).
#   FUZZTIME=10s scripts/fuzz.sh        (default 10s per target)
# A failure leaves its input under the package's testdata/fuzz/<Target>/, which
# `go test` then replays as a regression case: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-10s}
n=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -lq '^func Fuzz' "$dir"/*_test.go 2>/dev/null || continue
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | cut -d' ' -f2); do
    echo "fuzz: $pkg $target ($t)"
    go test -run '^$' -fuzz "^$target\$" -fuzztime "$t" "$pkg" | grep -v '^fuzz: elapsed' || exit 1
    n=$((n + 1))
  done
done
echo "fuzz: $n targets, $t each, no failure"
