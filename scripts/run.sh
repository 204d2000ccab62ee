#!/usr/bin/env bash
# The README's run command: install what is missing (Debian 12), build, start the server.
# Extra arguments go to `livevlm serve`, e.g. scripts/run.sh --backend ollama=http://127.0.0.1:11434/v1
set -euo pipefail
cd "$(dirname "$0")/.."

# what `make build/livevlm` links (Makefile PKGS and MEDIA_PKGS) and the camera path needs at run time
build_pkgs=(build-essential pkg-config libuv1-dev
            libcurl4-openssl-dev libjansson-dev libturbojpeg0-dev libssl-dev openssl ca-certificates
            libhiredis-dev libsqlite3-dev libpq-dev libsodium-dev zlib1g-dev
            libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
            gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
            gstreamer1.0-libav gstreamer1.0-nice)
missing=()
for p in "${build_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
make -j"$(nproc)" build/livevlm build/fakevlm
exec build/livevlm serve "$@"
