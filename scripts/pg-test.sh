#!/usr/bin/env bash
# pg-test.sh CMD [ARGS...] - run CMD against a real, throwaway PostgreSQL: initdb into a fresh temp
# dir (owned by the OS user 'postgres' when run as root, as CI does), a server on 127.0.0.1 on a
# free port (and a Unix socket in that dir only), a database livevlm_test, then CMD with
# LIVEVLM_TEST_PG=postgres://postgres@127.0.0.1:PORT/livevlm_test in its environment. The server is
# stopped and the dir removed afterwards, whatever happens (trap). Exits with CMD's status, or 2
# when no server could be started (with a sentence).
# LIVEVLM_PG_BIN picks the server binaries (default: the newest /usr/lib/postgresql/*/bin).
set -uo pipefail

if [ $# -eq 0 ]; then
  echo "usage: scripts/pg-test.sh CMD [ARGS...]" >&2
  exit 2
fi
PG_BIN=${LIVEVLM_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "pg-test: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
  exit 2
fi

as_pg() { # run a server binary as 'postgres' when we are root (initdb refuses root)
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# /tmp rather than $TMPDIR: the postgres user must be able to reach the directory.
dir=$(mktemp -d "${LIVEVLM_PG_TMP:-/tmp}/livevlm-pg.XXXXXX") || exit 2
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
chmod 700 "$dir"
started=0
cleanup() {
  if [ "$started" -eq 1 ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 20 stop >/dev/null 2>&1
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
  echo "pg-test: initdb failed:" >&2
  tail -20 "$dir/initdb.log" >&2
  exit 2
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A random port nobody listens on; a race with another process taking it is retried (3 tries).
for try in 1 2 3; do
  port=0
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if port_free "$p"; then port=$p; break; fi
  done
  if [ "$port" -eq 0 ]; then
    echo "pg-test: no free port found" >&2
    exit 2
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
       -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
       start >/dev/null 2>&1; then
    started=1
    break
  fi
  sleep 0.2
done
if [ "$started" -ne 1 ]; then
  echo "pg-test: the PostgreSQL server did not start:" >&2
  tail -20 "$dir/postgres.log" >&2
  exit 2
fi
if ! as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres livevlm_test >"$dir/createdb.log" 2>&1; then
  echo "pg-test: createdb failed:" >&2
  cat "$dir/createdb.log" >&2
  exit 2
fi

export LIVEVLM_TEST_PG="postgres://postgres@127.0.0.1:$port/livevlm_test"
echo "pg-test: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') at $LIVEVLM_TEST_PG"
"$@"
rc=$?
exit "$rc"
