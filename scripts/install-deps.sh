#!/usr/bin/env bash
# install-deps.sh - install everything livevlm needs to build and test on Debian 12, idempotently.
# Fast when all is present: dpkg is asked first and apt only runs for what is missing.
# Never downloads a browser: the tests drive Debian's /usr/bin/chromium through playwright-core.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

PKGS=(
  build-essential pkg-config
  libuv1-dev libcurl4-openssl-dev libjansson-dev
  libturbojpeg0-dev libssl-dev libcmocka-dev
  zlib1g-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-tools
  libgstrtspserver-1.0-dev
  libhiredis-dev redis-server haproxy
  libsqlite3-dev sqlite3 libpq-dev postgresql libsodium-dev
  openssl curl ca-certificates procps
  chromium
  clang libclang-rt-14-dev
)

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi

missing=()
for p in "${PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done
# Node: keep whatever node is already there (node 20 may come with the machine); only install
# Debian's nodejs+npm when there is no node at all.
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: node $(node --version) is present but npm is not; install npm for that node" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  "${SUDO[@]}" apt-get "${apt_opts[@]}" update -q
  "${SUDO[@]}" apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "install-deps: warning: node $(node --version) is older than 20, which playwright-core needs" >&2
fi

# npm packages for the tests, pinned by tests/package-lock.json. Skip when the installed tree was
# made from this very lock file.
lock_sum=$(sha256sum tests/package-lock.json | cut -d' ' -f1)
stamp=tests/node_modules/.livevlm-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ] \
   && [ -d tests/node_modules/ws ] && [ -d tests/node_modules/playwright-core ] \
   && [ -d tests/node_modules/oidc-provider ]; then
  echo "install-deps: tests/node_modules up to date"
else
  echo "install-deps: npm ci in tests/"
  ok=0
  for attempt in 1 2 3; do
    if (cd tests && npm ci --no-audit --no-fund --loglevel=error); then ok=1; break; fi
    echo "install-deps: npm ci failed (attempt $attempt), retrying" >&2
    sleep $((attempt * 5))
  done
  [ "$ok" = 1 ] || { echo "install-deps: npm ci failed" >&2; exit 1; }
  echo "$lock_sum" > "$stamp"
fi
echo "install-deps: done"
