#!/usr/bin/env bash
# check-src.sh - cheap source checks that need no build: calls STYLE.md bans (sprintf, strcpy,
# strcat, atoi, strtok, gets: unbounded writes or silent parse failures) anywhere in src/ and tools/.
# Prints each hit and ends with "check-src: N passed, N failed"; exits non-zero on any hit.
set -uo pipefail
cd "$(dirname "$0")/.."

pass=0
fail=0
hits=$(grep -rnE '(^|[^A-Za-z0-9_.>])(sprintf|vsprintf|strcpy|strcat|atoi|atol|strtok|gets)[[:space:]]*\(' \
         --include='*.c' --include='*.h' src tools | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//)' || true)
if [ -n "$hits" ]; then
  echo "check-src: banned calls (use snprintf, memcpy with a length, strtol/strtoul, strtok_r-free parsing):"
  echo "$hits"
  fail=$((fail + 1))
else
  pass=$((pass + 1))
fi
echo "check-src: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
