#!/usr/bin/env bash
# Checks our relay (`switchyard turn`) against coturn's client tools, and its loss against
# coturn's own turnserver in the same run:
#
# 1. turnutils_stunclient gets a mapped address from our relay.
# 2. turnutils_uclient relays through our relay to turnutils_peer with 20 concurrent clients,
#    over UDP and over TCP (-t), and every client finishes.
# 3. In each of those runs our relay loses no more messages than coturn's turnserver under the
#    same load.
#
# Must run inside a loopback-only network namespace: tests/run.sh starts it with
# `unshare -n` and `ip link set lo up`. Needs coturn's binaries (Debian package coturn) and the
# release build of switchyard (SWITCHYARD_BIN overrides it). Logs go to
# tests/turn/artifacts/.
#
# Usage: tests/turn/interop.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
source tests/turn/lib.sh

OUR_PORT=3478
COTURN_PORT=3578
PEER_PORT=3480
CLIENTS=20
# Messages per client: at uclient's default interval of 20 ms, about 4 s of traffic.
MESSAGES=200
MESSAGE_BYTES=1200
# Upper bound on one uclient run, far above the few seconds a healthy run takes.
UCLIENT_TIMEOUT=120

WORK=tests/turn/artifacts
mkdir -p "$WORK"
rm -f "$WORK"/*.log "$WORK"/*.toml "$WORK"/*.pid

FAILURES=0
trap stop_all EXIT

fail() {
  echo "FAIL: $*"
  FAILURES=$((FAILURES + 1))
}

require_loopback_only
require_coturn
echo "coturn $(coturn_version), switchyard $("$(switchyard_binary)" --version)"

start_peer "$PEER_PORT" "$WORK"
start_our_relay "$OUR_PORT" 50000 50999 "$WORK"
start_coturn "$COTURN_PORT" 51000 51999 "$WORK"

# 1. A STUN Binding request through coturn's client.
stun_output=$(timeout 10 turnutils_stunclient -p "$OUR_PORT" 127.0.0.1 2>&1) || true
if grep -q 'UDP reflexive addr: 127\.0\.0\.1:[0-9]' <<<"$stun_output"; then
  echo "ok: turnutils_stunclient got a mapped address from our relay"
else
  fail "turnutils_stunclient got no mapped address from our relay:"
  echo "$stun_output"
fi

# Runs uclient against one server and prints "SENT RECEIVED LOST", or fails.
# Usage: relay_through NAME PORT [UCLIENT_OPTION...]
relay_through() {
  local name=$1 port=$2
  shift 2
  local log="$WORK/uclient-$name.log" status=0
  run_uclient "$log" "$UCLIENT_TIMEOUT" "$port" "$PEER_PORT" -m "$CLIENTS" -n "$MESSAGES" \
    -l "$MESSAGE_BYTES" "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "turnutils_uclient against $name exited with status $status (124: timed out after ${UCLIENT_TIMEOUT} s); last lines of $log:" >&2
    tail -n 5 "$log" >&2
    return 1
  fi
  uclient_summary "$log"
}

# 2 and 3. The same load through both servers, over one transport.
compare_transport() {
  local transport=$1
  shift
  local ours coturn
  if ! ours=$(relay_through "switchyard-$transport" "$OUR_PORT" "$@"); then
    fail "uclient over $transport did not finish through our relay"
    return
  fi
  if ! coturn=$(relay_through "coturn-$transport" "$COTURN_PORT" "$@"); then
    fail "uclient over $transport did not finish through coturn, so there is nothing to compare with"
    return
  fi

  local expected=$((CLIENTS * MESSAGES)) sent received lost coturn_lost
  read -r sent received lost <<<"$ours"
  read -r _ _ coturn_lost <<<"$coturn"
  echo "$transport: switchyard sent $sent, received $received, lost $lost; coturn: $coturn"
  if [ "$sent" -ne "$expected" ]; then
    fail "$transport: uclient sent $sent messages through our relay, expected $expected"
  elif [ "$received" -eq 0 ]; then
    fail "$transport: no message came back through our relay"
  elif [ "$lost" -gt "$coturn_lost" ]; then
    fail "$transport: our relay lost $lost messages, coturn lost $coturn_lost"
  else
    echo "ok: $transport relaying through our relay, loss no worse than coturn's"
  fi
}

compare_transport udp
compare_transport tcp -t

if [ "$FAILURES" -ne 0 ]; then
  echo "tests/turn/interop.sh: $FAILURES check(s) failed; logs are in $WORK/"
  exit 1
fi
echo "tests/turn/interop.sh: all checks passed"
