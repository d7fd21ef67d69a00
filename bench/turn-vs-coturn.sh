#!/usr/bin/env bash
# Runs coturn's turnserver and our relay (`switchyard turn`) on loopback under the same
# turnutils_uclient load, first over UDP and then over TCP. For each server it prints the
# messages per second, the loss, the server's CPU seconds and the messages per CPU second, and
# then the ratio ours/coturn.
#
# Method: for each transport and server, start a fresh server with the settings of
# tests/turn/lib.sh, read its CPU time (utime + stime in /proc/<pid>/stat), run one
# turnutils_uclient with 20 clients sending 1200-byte messages through it to turnutils_peer,
# which echoes them back, and read the CPU time again. "Messages" are the messages that came
# back to the clients, so each one crossed the relay twice. The rate is over the wall-clock
# time of the uclient run, allocations included.
#
# Needs root: it re-runs itself in a new network namespace with only loopback (unshare -n).
# Needs coturn's binaries (Debian package coturn) and the release build of switchyard
# (SWITCHYARD_BIN overrides it). Logs go to bench/artifacts/.
#
# Usage: bench/turn-vs-coturn.sh
# Settings (environment): BENCH_CLIENTS (default 20), BENCH_MESSAGES per client (default
# 4000), BENCH_BYTES per message (default 1200), BENCH_INTERVAL_MS between one client's
# messages (default 1), BENCH_TRANSPORTS to run (default "udp tcp"), BENCH_THREADS for the
# relay threads of coturn (--relay-threads) and the tokio worker threads of ours
# (--worker-threads). Each server keeps its other threads. Unset, each uses its own default.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ -z "${BENCH_IN_NAMESPACE:-}" ]; then
  exec unshare -n env BENCH_IN_NAMESPACE=1 sh -c 'ip link set lo up && exec "$@"' sh bash "$0" "$@"
fi

source tests/turn/lib.sh

CLIENTS=${BENCH_CLIENTS:-20}
MESSAGES=${BENCH_MESSAGES:-4000}
BYTES=${BENCH_BYTES:-1200}
INTERVAL_MS=${BENCH_INTERVAL_MS:-1}
TRANSPORTS=${BENCH_TRANSPORTS:-udp tcp}
RELAY_THREADS=${BENCH_THREADS:-}
# Upper bound on one uclient run.
UCLIENT_TIMEOUT=300

SERVER_PORT=3478
PEER_PORT=3480
CLOCK_TICKS=$(getconf CLK_TCK)

WORK=bench/artifacts
mkdir -p "$WORK"
rm -f "$WORK"/*.log "$WORK"/*.toml "$WORK"/*.pid
trap stop_all EXIT

require_loopback_only
require_coturn
SWITCHYARD=$(switchyard_binary)

# Results by "server transport": messages/s, loss in percent, CPU seconds, messages per CPU s.
declare -A RATE LOSS CPU PER_CPU

# Measures one server over one transport. Usage: measure SERVER TRANSPORT [UCLIENT_OPTION...]
measure() {
  local server=$1 transport=$2
  shift 2
  local pid
  if [ "$server" = coturn ]; then
    start_coturn "$SERVER_PORT" 50000 59999 "$WORK"
    pid=$COTURN_PID
  else
    start_our_relay "$SERVER_PORT" 50000 59999 "$WORK"
    pid=$OUR_PID
  fi

  local log="$WORK/uclient-$server-$transport.log" ticks_before ticks_after start end status=0
  ticks_before=$(cpu_ticks "$pid")
  start=$(date +%s.%N)
  run_uclient "$log" "$UCLIENT_TIMEOUT" "$SERVER_PORT" "$PEER_PORT" -m "$CLIENTS" \
    -n "$MESSAGES" -l "$BYTES" -z "$INTERVAL_MS" "$@" || status=$?
  end=$(date +%s.%N)
  ticks_after=$(cpu_ticks "$pid")
  stop_pid "$pid"

  local key="$server $transport"
  if [ "$status" -ne 0 ]; then
    echo "$key: turnutils_uclient exited with status $status (124: timed out); see $log" >&2
    RATE[$key]=failed LOSS[$key]=- CPU[$key]=- PER_CPU[$key]=-
    return
  fi
  local sent received lost
  read -r sent received lost < <(uclient_summary "$log")
  RATE[$key]=$(awk -v n="$received" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')
  LOSS[$key]=$(awk -v l="$lost" -v n="$sent" 'BEGIN { printf "%.3f", 100 * l / n }')
  CPU[$key]=$(awk -v t="$((ticks_after - ticks_before))" -v hz="$CLOCK_TICKS" 'BEGIN { printf "%.2f", t / hz }')
  PER_CPU[$key]=$(awk -v n="$received" -v c="${CPU[$key]}" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "-" }')
}

# Prints ours/coturn for one column, or "-" when either value is missing.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'
}

echo "machine: $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
echo "coturn $(coturn_version), $("$SWITCHYARD" --version)"
echo "load: turnutils_uclient -m $CLIENTS -n $MESSAGES -l $BYTES -z $INTERVAL_MS, echoed by turnutils_peer"
echo "threads: ${RELAY_THREADS:-the default of each server}"
echo

start_peer "$PEER_PORT" "$WORK"
for transport in $TRANSPORTS; do
  options=()
  [ "$transport" = tcp ] && options=(-t)
  for server in coturn switchyard; do
    measure "$server" "$transport" "${options[@]}"
  done
done

printf '%-9s %-12s %12s %9s %14s %20s\n' transport server 'messages/s' 'loss %' 'server CPU s' 'messages per CPU s'
for transport in $TRANSPORTS; do
  for server in coturn switchyard; do
    key="$server $transport"
    printf '%-9s %-12s %12s %9s %14s %20s\n' "$transport" "$server" "${RATE[$key]}" \
      "${LOSS[$key]}" "${CPU[$key]}" "${PER_CPU[$key]}"
  done
  printf '%-9s %-12s %12s %9s %14s %20s\n' "$transport" 'ours/coturn' \
    "$(ratio "${RATE[switchyard $transport]}" "${RATE[coturn $transport]}")" - \
    "$(ratio "${CPU[switchyard $transport]}" "${CPU[coturn $transport]}")" \
    "$(ratio "${PER_CPU[switchyard $transport]}" "${PER_CPU[coturn $transport]}")"
done
