#!/usr/bin/env bash
# Runs each fuzz target for its budget, one after another (go test fuzzes one target at a time).
#
#   hack/fuzz.sh PACKAGE:TARGET:EXECUTIONS ...
#
# FUZZ_BUDGET, if set, replaces every target's own budget: a count (40000x) or a duration (5m).
# FUZZMINIMIZETIME (default 1s) bounds the minimising of each new corpus entry, 60s in Go, which
# would eat a short run; crashers are still saved, just less minimised.
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 PACKAGE:TARGET:EXECUTIONS ..." >&2
	exit 2
fi
minimize=${FUZZMINIMIZETIME:-1s}
for t in "$@"; do
	IFS=: read -r pkg fn execs <<<"$t"
	budget=${FUZZ_BUDGET:-$execs}
	echo "fuzz $fn ($pkg) for $budget"
	go test -run '^$' -fuzz "^$fn\$" -fuzztime "$budget" -fuzzminimizetime "$minimize" "$pkg"
done
