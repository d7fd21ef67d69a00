#!/usr/bin/env bash
# Fans chat messages out to many WebSocket clients in one room. It runs Switchyard and then
# the Node.js reference server (bench/reference: ws, relaying through Redis Pub/Sub), and it
# prints for each the deliveries per second, the p99 delivery latency, the servers' CPU time
# and the deliveries per CPU second, then the ratio ours/reference.
#
# Method: for each room size, run BENCH_ROUNDS rounds, each of them Switchyard first and then
# the reference. For each run start a fresh server, join that many clients to one room with
# switchyard-wsbench, wait until no frame has arrived for 1 s, then let one client
# send chat messages and every client receive them. Without BENCH_RATE the sender keeps
# BENCH_WINDOW messages in flight, so the run measures the servers at saturation. A delivery
# is one chat message arriving at one client, the sender included. CPU time is utime + stime
# from /proc/<pid>/stat before the first message and after the last delivery; for the
# reference it is Node's and Redis's added together. The load generator runs on the same
# machine and its CPU time is not counted.
#
# Needs root: it re-runs itself in a new network namespace with only loopback (unshare -n),
# raises the open file limit and the namespace's ephemeral port range. Needs the release
# builds of switchyard and switchyard-wsbench, node (20 or later), npm and redis-server.
# Logs go to bench/artifacts/.
#
# Usage: bench/signaling-fanout.sh
# Settings (environment): BENCH_CLIENTS, the room sizes (default "1000 10000");
# BENCH_DELIVERIES per run (default 2000000, so 2,000 messages to 1,000 clients);
# BENCH_WINDOW messages in flight (default 16); BENCH_RATE messages per second instead of the
# window (default 0, unset); BENCH_TEXT_BYTES per chat text (default 100); BENCH_ROUNDS of
# both servers per room size (default 3). The last line per room size is the median of the
# rounds' ratios, which moves less with the machine's load than the ratio of one pair of runs.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib/signaling.sh
install_reference_packages
enter_namespace "$0" "$@"

CLIENT_COUNTS=${BENCH_CLIENTS:-1000 10000}
DELIVERIES=${BENCH_DELIVERIES:-2000000}
WINDOW=${BENCH_WINDOW:-16}
RATE=${BENCH_RATE:-0}
TEXT_BYTES=${BENCH_TEXT_BYTES:-100}
ROUNDS=${BENCH_ROUNDS:-3}
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
  echo "$(basename "$0"): invalid BENCH_ROUNDS \"$ROUNDS\": expected a whole number of at least 1" >&2
  exit 2
fi

WORK=bench/artifacts
mkdir -p "$WORK"
trap stop_all EXIT

raise_limits
require_tools
counts=()
for clients in $CLIENT_COUNTS; do
  counts+=("$(fit_open_files "$clients")")
done
CLIENT_COUNTS=${counts[*]}

# Results by "server clients": the load generator's output line.
declare -A RESULT

# Runs the load generator against the server on PORT. Usage: run_fanout KEY CLIENTS PORT PID...
run_fanout() {
  local key=$1 clients=$2 port=$3
  shift 3
  local messages=$((DELIVERIES / clients))
  [ "$messages" -ge 1 ] || messages=1
  local pid_flags=() pid
  for pid in "$@"; do
    pid_flags+=(--pid "$pid")
  done
  local line
  if line=$("$WSBENCH_BIN" fanout --server "127.0.0.1:$port" --clients "$clients" \
    --sources "$(sources_for "$clients")" --messages "$messages" --window "$WINDOW" \
    --rate "$RATE" --text-bytes "$TEXT_BYTES" "${pid_flags[@]}" 2>"$WORK/wsbench-$key.log"); then
    echo "$key: $line"
    RESULT[$key]=$line
  else
    echo "$key: switchyard-wsbench failed; see $WORK/wsbench-$key.log" >&2
    RESULT[$key]=""
  fi
}

for clients in $CLIENT_COUNTS; do
  for ((round = 1; round <= ROUNDS; round++)); do
    key="switchyard-$clients-$round"
    # A room of 10,000 gets 10,000 participant_joined messages per client while it fills up,
    # more than the default outbound queue of 256 if a client falls behind.
    start_switchyard "$WORK/$key.log" --outbound-queue 100000
    run_fanout "$key" "$clients" "$SWITCHYARD_PORT" "switchyard=$SWITCHYARD_PID"
    stop_all

    key="reference-$clients-$round"
    start_reference "$WORK/$key"
    run_fanout "$key" "$clients" "$REFERENCE_PORT" "node=$NODE_PID" "redis=$REDIS_PID"
    stop_all
  done
done

echo
printf '%-8s %-6s %-11s %14s %8s %22s %18s\n' clients round server deliveries/s "p99 ms" "CPU s" \
  "deliveries/CPU s"
for clients in $CLIENT_COUNTS; do
  ratios=()
  for ((round = 1; round <= ROUNDS; round++)); do
    for server in switchyard reference; do
      line=${RESULT[$server-$clients-$round]}
      if [ -z "$line" ]; then
        printf '%-8s %-6s %-11s %14s\n' "$clients" "$round" "$server" failed
        continue
      fi
      cpu=$(field "$line" cpu_total)
      if [ "$server" = reference ]; then
        cpu="$cpu ($(field "$line" cpu_node) node + $(field "$line" cpu_redis) redis)"
      fi
      printf '%-8s %-6s %-11s %14s %8s %22s %18s\n' "$clients" "$round" "$server" \
        "$(field "$line" deliveries_per_second)" "$(field "$line" p99_ms)" "$cpu" \
        "$(field "$line" deliveries_per_cpu_second)"
    done
    ours=${RESULT[switchyard-$clients-$round]}
    theirs=${RESULT[reference-$clients-$round]}
    per_cpu=$(ratio "$(field "$ours" deliveries_per_cpu_second)" \
      "$(field "$theirs" deliveries_per_cpu_second)")
    echo "ratio ours/reference at $clients clients, round $round: deliveries per CPU second" \
      "$per_cpu, deliveries per second" \
      "$(ratio "$(field "$ours" deliveries_per_second)" "$(field "$theirs" deliveries_per_second)")"
    [ "$per_cpu" = - ] || ratios+=("$per_cpu")
  done
  if [ "${#ratios[@]}" -gt 0 ]; then
    echo "median ratio at $clients clients over ${#ratios[@]} round(s): deliveries per CPU second" \
      "$(median "${ratios[@]}") (each round: ${ratios[*]})"
  fi
done
echo

for line in "${RESULT[@]}"; do
  if [ -z "$line" ]; then
    echo "$(basename "$0"): some runs failed; see $WORK/" >&2
    exit 1
  fi
done
