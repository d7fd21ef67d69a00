#!/usr/bin/env bash
# Runs the browser end-to-end tests inside a new network namespace where only loopback exists,
# so WebRTC in Chromium can reach nothing but the server under test. Needs root for unshare.
#
# Usage: tests/browser/run.sh [TEST_FILE...]   (default: every *.test.js here)
set -euo pipefail

cd "$(dirname "$0")"

if [ "$#" -eq 0 ]; then
  set -- *.test.js
fi

exec unshare -n sh -c 'ip link set lo up && exec node --test --test-concurrency=1 "$@"' sh "$@"
