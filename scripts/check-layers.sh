#!/usr/bin/env bash
# check-layers.sh - the layering rules of STYLE.md habit 1 and 14, checked on the sources:
#   - src/core (the frame pipeline) includes no I/O or format library: libwebsockets, curl,
#     jansson, libuv, OpenSSL; it meets the world through its ports (docs/internals/ports.md);
#   - src/proto (pure parsers and encoders) includes no I/O library: libwebsockets, curl, libuv
#     (it may use jansson and OpenSSL's hashes: they do no I/O);
#   - no layer includes a header of a layer above it (common <- proto <- core <- backend, store,
#     obs, media <- server <- main; only src/media includes GStreamer). The Makefile enforces the same with per-layer -I flags; this check
#     names the offending line.
# Prints "check-layers: N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "check-layers: $*"; }

# headers of each layer, by file name
headers_of() { ls "src/$1"/*.h 2>/dev/null | xargs -n1 basename 2>/dev/null; }

# rule 1 and 2: forbidden libraries
check_libs() { # dir regex
  local dir=$1 re=$2 hits
  hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*<($re)" "src/$dir"/*.[ch] 2>/dev/null)
  if [ -n "$hits" ]; then bad "src/$dir includes a library it must not:"; echo "$hits" | sed 's/^/    /'; else ok; fi
}
check_libs core 'libwebsockets|curl/|jansson|uv\.h|uv/|openssl/'
check_libs proto 'libwebsockets|curl/|uv\.h|uv/|gst/'
check_libs core 'gst/'

# rule 3: upward includes
declare -A above
above[common]="proto core backend store obs media server"
above[proto]="core backend store obs media server"
above[core]="backend store obs media server"
above[backend]="store obs media server"
above[store]="backend obs media server"
above[obs]="backend store media server"
above[media]="backend store obs server"
for layer in common proto core backend store obs media; do
  found=0
  for up in ${above[$layer]}; do
    for h in $(headers_of "$up"); do
      hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]*/)?$h\"" "src/$layer"/*.[ch] 2>/dev/null)
      if [ -n "$hits" ]; then
        bad "src/$layer includes $up/$h (a layer above it):"; echo "$hits" | sed 's/^/    /'; found=1
      fi
    done
  done
  [ "$found" -eq 0 ] && ok
done

echo "check-layers: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
