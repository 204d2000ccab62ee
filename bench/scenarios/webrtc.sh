#!/usr/bin/env bash
# bench/scenarios/webrtc.sh - livevlm's CPU per session for "Send video" (WebRTC ingest, uncapped
# and capped as the page caps it) against "Send frames", in Chromium (bench/scenarios/webrtc.mjs).
# Needs the test dependencies (scripts/install-deps.sh: chromium, tests/node_modules).
# Writes $BENCH_OUT/webrtc.md and .summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d tests/node_modules/playwright-core ] || { echo "webrtc: tests/node_modules is missing (scripts/install-deps.sh)" >&2; exit 1; }
exec node bench/scenarios/webrtc.mjs
