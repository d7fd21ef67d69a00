#!/usr/bin/env bash
# Measures server memory per idle WebSocket connection, for Switchyard and for the Node.js
# reference server (bench/reference), and prints the bytes per connection and the ratio
# ours/reference.
#
# Method: for each server and mode, start a fresh server, read its memory (VmRSS from
# /proc/<pid>/status and Pss from /proc/<pid>/smaps_rollup), open BENCH_CONNECTIONS
# WebSockets with switchyard-wsbench from several 127.0.1.x source addresses, wait until no
# frame has arrived for 2 s, read the memory again and divide the growth by the number of
# connections. Two modes:
# - upgraded: the WebSocket is open and idle, with no `join`;
# - joined: every connection has joined a room of BENCH_ROOM_SIZE participants, as a client
#   in a call keeps it, and has acknowledged the messages it got.
# For the reference only Node's memory is counted: Redis holds one subscription per room and
# nothing per connection. The clients reply to pings, so the connections stay open.
#
# Needs root: it re-runs itself in a new network namespace with only loopback (unshare -n),
# raises the open file limit and the namespace's ephemeral port range. Needs the release
# builds of switchyard and switchyard-wsbench, node (20 or later), npm and redis-server.
# Logs go to bench/artifacts/.
#
# Usage: bench/ws-memory.sh
# Settings (environment): BENCH_CONNECTIONS (default 100000); BENCH_MODES (default
# "upgraded joined"); BENCH_ROOM_SIZE (default 100).
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib/signaling.sh
install_reference_packages
enter_namespace "$0" "$@"

CONNECTIONS=${BENCH_CONNECTIONS:-100000}
MODES=${BENCH_MODES:-upgraded joined}
ROOM_SIZE=${BENCH_ROOM_SIZE:-100}

WORK=bench/artifacts
mkdir -p "$WORK"
trap stop_all EXIT

raise_limits
require_tools
CONNECTIONS=$(fit_open_files "$CONNECTIONS")

# Results by "server mode": the load generator's output line.
declare -A RESULT

# Usage: run_hold KEY MODE PORT NAME=PID
run_hold() {
  local key=$1 mode=$2 port=$3 pid=$4
  local join_flags=()
  if [ "$mode" = joined ]; then
    join_flags=(--join --room-size "$ROOM_SIZE")
  fi
  local line
  if line=$("$WSBENCH_BIN" hold --server "127.0.0.1:$port" --connections "$CONNECTIONS" \
    --sources "$(sources_for "$CONNECTIONS")" "${join_flags[@]}" --pid "$pid" \
    2>"$WORK/wsbench-$key.log"); then
    echo "$key: $line"
    RESULT[$key]=$line
  else
    echo "$key: switchyard-wsbench failed; see $WORK/wsbench-$key.log" >&2
    RESULT[$key]=""
  fi
}

for mode in $MODES; do
  key="switchyard-$mode"
  start_switchyard "$WORK/$key.log"
  run_hold "$key" "$mode" "$SWITCHYARD_PORT" "switchyard=$SWITCHYARD_PID"
  stop_all

  key="reference-$mode"
  start_reference "$WORK/$key"
  run_hold "$key" "$mode" "$REFERENCE_PORT" "node=$NODE_PID"
  stop_all
done

echo
printf '%-9s %-11s %12s %18s %18s\n' mode server connections "RSS B/connection" "PSS B/connection"
for mode in $MODES; do
  for server in switchyard reference; do
    line=${RESULT[$server-$mode]}
    name=$server
    [ "$server" = reference ] && name=node
    printf '%-9s %-11s %12s %18s %18s\n' "$mode" "$server" "$(field "$line" connections)" \
      "$(field "$line" "rss_bytes_per_connection_$name")" \
      "$(field "$line" "pss_bytes_per_connection_$name")"
  done
  echo "ratio ours/reference ($mode): RSS per connection" \
    "$(ratio "$(field "${RESULT[switchyard-$mode]}" rss_bytes_per_connection_switchyard)" \
      "$(field "${RESULT[reference-$mode]}" rss_bytes_per_connection_node)")"
done

for line in "${RESULT[@]}"; do
  if [ -z "$line" ]; then
    echo "$(basename "$0"): some runs failed; see $WORK/" >&2
    exit 1
  fi
done
