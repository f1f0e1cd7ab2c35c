#!/usr/bin/env bash
# Fails when git tracks a file over 1 MiB that is not text: a build output
# (a 73 MB test binary once slipped in) or an archive that belongs elsewhere.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	size=$(stat -c %s "$f")
	[ "$size" -gt "$limit" ] || continue
	# grep -I treats a file with NUL bytes as binary and reports no match.
	if ! grep -qI . "$f"; then
		echo "tracked binary over 1 MiB: $f ($size bytes)" >&2
		bad=1
	fi
done < <(git ls-files -z)
exit $bad
