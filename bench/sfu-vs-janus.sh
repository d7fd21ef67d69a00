#!/usr/bin/env bash
# Runs the same SFU scenarios against Switchyard and against Janus 1.1's VideoRoom, one server
# at a time, and prints both results and the ratios Switchyard/Janus.
#
# Scenarios: one publisher to 50 subscribers, one publisher to 200 subscribers, and a meeting
# of 10 participants who all publish and subscribe to each other. Every publisher sends Opus-like
# audio (50 packets/s) and video at BENCH_VIDEO_KBPS in 1,100-byte packets.
#
# Method: for each scenario and server, start a fresh server pinned to CPU 0 by default (taskset), run
# switchyard-loadgen pinned to CPU 1 by default with --server-pid, and stop the server. The load generator
# reads the server's CPU time (utime + stime in /proc/<pid>/stat) at the start and end of the
# measurement window and counts the distinct probes sent in the window that reached each
# subscriber. See crates/switchyard-loadgen for the details.
#
# Network: re-runs itself in a new network namespace (unshare -n) with loopback and a veth pair
# whose end sy0 has the test address 10.200.0.1/24. Janus gathers no candidates on loopback
# alone, so its clients and its media use 10.200.0.1; Switchyard's use 127.0.0.1. Both
# addresses exist only inside the namespace, so no packet leaves it.
#
# Needs root. Installs what is missing with apt-get (janus, jq, iproute2, util-linux) and
# builds the release binaries of switchyard and switchyard-loadgen. Logs and JSON results go to
# bench/artifacts/sfu-vs-janus/.
#
# Usage: bench/sfu-vs-janus.sh
# Settings (environment): BENCH_DURATION window seconds (default 20), BENCH_WARMUP seconds
# (default 3), BENCH_VIDEO_KBPS (default 1000), BENCH_SCENARIOS (default
# "fanout:50 fanout:200 meeting:10"), BENCH_SERVERS (default "switchyard janus"),
# BENCH_NO_BUILD=1 to use the release binaries already in target/release, SWITCHYARD_BIN
# to test another build of the server, BENCH_SERVER_CPUS and BENCH_LOADGEN_CPUS for the CPU
# lists given to taskset (default 0 and 1). Switchyard runs one SFU task per CPU it may use,
# and reads its other settings from SWITCHYARD_* variables, such as
# SWITCHYARD_ROOM_SPREAD_AFTER.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-20}
WARMUP=${BENCH_WARMUP:-3}
VIDEO_KBPS=${BENCH_VIDEO_KBPS:-1000}
SCENARIOS=${BENCH_SCENARIOS:-fanout:50 fanout:200 meeting:10}
SERVERS=${BENCH_SERVERS:-switchyard janus}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
LOADGEN_CPUS=${BENCH_LOADGEN_CPUS:-1}

TEST_IP=10.200.0.1
HTTP_PORT=18080
MEDIA_PORT=40000
JANUS_WS_PORT=18188
JANUS_ROOM=1234
SWITCHYARD_BIN=${SWITCHYARD_BIN:-target/release/switchyard}
LOADGEN_BIN=target/release/switchyard-loadgen
WORK=bench/artifacts/sfu-vs-janus

# Installs the missing Debian packages. Janus's package would start its service, so services
# may not start during the install (policy-rc.d exit status 101); an existing policy is kept.
install_requirements() {
  local missing=()
  command -v janus >/dev/null || missing+=(janus)
  command -v jq >/dev/null || missing+=(jq)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v taskset >/dev/null || missing+=(util-linux)
  if [ "${#missing[@]}" -eq 0 ]; then
    return
  fi
  echo "installing missing packages: ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d added_policy=false status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by bench/sfu-vs-janus.sh for one apt-get install.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=true
  fi
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}"; } || status=$?
  if [ "$added_policy" = true ]; then
    rm -f "$policy"
  fi
  if [ "$status" -ne 0 ]; then
    echo "error: installing ${missing[*]} failed (apt-get status $status)" >&2
    exit 1
  fi
}

if [ -z "${BENCH_IN_NAMESPACE:-}" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: bench/sfu-vs-janus.sh must run as root (apt-get, network namespaces)" >&2
    exit 1
  fi
  install_requirements
  if [ -z "${BENCH_NO_BUILD:-}" ]; then
    cargo build --release -p switchyard -p switchyard-loadgen
  fi
  for binary in "$SWITCHYARD_BIN" "$LOADGEN_BIN"; do
    [ -x "$binary" ] || { echo "error: $binary is missing; build it with cargo build --release --workspace" >&2; exit 1; }
  done
  exec unshare -n env BENCH_IN_NAMESPACE=1 bash "$0" "$@"
fi

# Inside the namespace from here on.
ip link set lo up
ip link add sy0 type veth peer name sy1
ip addr add "$TEST_IP/24" dev sy0
ip link set sy0 up
ip link set sy1 up

mkdir -p "$WORK"
rm -f "$WORK"/*.log "$WORK"/*.json
JANUS_DIR=$(mktemp -d)
SERVER_PID=""

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  stop_server
  rm -rf "$JANUS_DIR"
}
trap cleanup EXIT

# Waits up to 10 s for a TCP port to accept connections.
wait_for_port() {
  local host=$1 port=$2
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: nothing listens on $host:$port after 10 s" >&2
  return 1
}

# Writes Janus's configuration: only the VideoRoom plugin and the WebSocket transport, no
# session timeout, media on the test address, and room $JANUS_ROOM for Opus and VP8 without a
# bitrate cap or periodic keyframe requests.
write_janus_config() {
  local lib=/usr/lib/x86_64-linux-gnu/janus
  [ -d "$lib" ] || lib=$(dirname "$(dirname "$(find /usr/lib -name 'libjanus_videoroom.so' | head -1)")")
  local disabled_plugins disabled_transports
  disabled_plugins=$(cd "$lib/plugins" && ls ./*.so | sed 's|^\./||' | grep -v videoroom | paste -sd, -)
  disabled_transports=$(cd "$lib/transports" && ls ./*.so | sed 's|^\./||' | grep -v websockets | paste -sd, -)
  cat >"$JANUS_DIR/janus.jcfg" <<EOF
general: {
  configs_folder = "$JANUS_DIR"
  plugins_folder = "$lib/plugins"
  transports_folder = "$lib/transports"
  events_folder = "$lib/events"
  loggers_folder = "$lib/loggers"
  debug_level = 3
  session_timeout = 0
}
media: {
  rtp_port_range = "20000-39999"
}
nat: {
  ice_enforce_list = "sy0"
}
plugins: {
  disable = "$disabled_plugins"
}
transports: {
  disable = "$disabled_transports"
}
events: {
  broadcast = false
}
EOF
  cat >"$JANUS_DIR/janus.transport.websockets.jcfg" <<EOF
general: {
  json = "plain"
  ws = true
  ws_port = $JANUS_WS_PORT
  ws_ip = "$TEST_IP"
  wss = false
}
admin: {
  admin_ws = false
  admin_wss = false
}
EOF
  cat >"$JANUS_DIR/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
room-$JANUS_ROOM: {
  description = "switchyard-loadgen"
  publishers = 100
  bitrate = 0
  fir_freq = 0
  audiocodec = "opus"
  videocodec = "vp8"
  record = false
}
EOF
}

start_server() {
  local server=$1 label=$2
  if [ "$server" = switchyard ]; then
    taskset -c "$SERVER_CPUS" "$SWITCHYARD_BIN" --http "127.0.0.1:$HTTP_PORT" --media "127.0.0.1:$MEDIA_PORT" \
      --max-participants-per-room 500 >"$WORK/$label-server.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port 127.0.0.1 "$HTTP_PORT"
  else
    taskset -c "$SERVER_CPUS" janus --configs-folder="$JANUS_DIR" --config="$JANUS_DIR/janus.jcfg" \
      >"$WORK/$label-server.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$TEST_IP" "$JANUS_WS_PORT"
  fi
}

# Runs one scenario against one server and stores its JSON line in $WORK/$label.json.
measure() {
  local server=$1 scenario=$2 count=$3
  local label="$server-$scenario-$count"
  local shape=(--scenario "$scenario")
  if [ "$scenario" = fanout ]; then
    shape+=(--subscribers "$count")
  else
    shape+=(--participants "$count")
  fi
  local target=(--target "127.0.0.1:$HTTP_PORT" --client-ip 127.0.0.1)
  if [ "$server" = janus ]; then
    target=(--server janus --target "ws://$TEST_IP:$JANUS_WS_PORT/" --room "$JANUS_ROOM"
      --client-ip "$TEST_IP")
  fi

  echo
  echo "==> $server, $scenario $count (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
  start_server "$server" "$label"
  local status=0
  taskset -c "$LOADGEN_CPUS" "$LOADGEN_BIN" "${target[@]}" "${shape[@]}" --server-pid "$SERVER_PID" \
    --duration "$DURATION" --warmup "$WARMUP" --video-kbps "$VIDEO_KBPS" --json \
    >"$WORK/$label.out" 2>"$WORK/$label-loadgen.log" || status=$?
  stop_server
  grep -v '^{' "$WORK/$label.out" || true
  if [ "$status" -ne 0 ]; then
    echo "$label: switchyard-loadgen failed with status $status; see $WORK/$label-loadgen.log" >&2
    tail -5 "$WORK/$label-loadgen.log" >&2
    return
  fi
  grep '^{' "$WORK/$label.out" >"$WORK/$label.json"
}

# Prints one row per scenario with both servers' values and the ratio switchyard/janus.
print_comparison() {
  local field=$1 title=$2
  echo
  echo "$title"
  printf '  %-12s %14s %14s %10s\n' scenario switchyard janus ratio
  local entry scenario count ours theirs
  for entry in $SCENARIOS; do
    scenario=${entry%%:*} count=${entry##*:}
    ours=$(value "switchyard-$scenario-$count" "$field")
    theirs=$(value "janus-$scenario-$count" "$field")
    printf '  %-12s %14s %14s %10s\n' "$scenario:$count" "$ours" "$theirs" "$(ratio "$ours" "$theirs")"
  done
}

value() {
  local file="$WORK/$1.json"
  if [ -s "$file" ]; then
    jq -r "$2 // \"-\" | if type == \"number\" then (. * 100 | round / 100) else . end" "$file"
  else
    echo failed
  fi
}

ratio() {
  case "$1$2" in
    *failed* | *-*) echo - ;;
    *) jq -rn --argjson a "$1" --argjson b "$2" 'if $b == 0 then "-" else ($a / $b * 100 | round / 100) end' ;;
  esac
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "switchyard: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), janus: $(janus --version 2>/dev/null | head -1)"
write_janus_config
for entry in $SCENARIOS; do
  for server in $SERVERS; do
    measure "$server" "${entry%%:*}" "${entry##*:}"
  done
done

print_comparison .forwarded_per_server_cpu_s "Forwarded packets per server CPU second (higher is better)"
print_comparison .server_cpu_us_per_packet "Server CPU microseconds per forwarded packet (lower is better)"
print_comparison .offered_per_s "Offered packets per second (sent times receivers)"
print_comparison .forwarded_per_s "Forwarded packets per second"
print_comparison .loss_percent "Loss, percent"
print_comparison .latency.p50_us "Latency p50, microseconds (publisher write to subscriber read)"
print_comparison .latency.p99_us "Latency p99, microseconds"
print_comparison .sfu_delay.p50_us_at_most "Time in the SFU p50, at most, microseconds (Switchyard's own histogram)"
print_comparison .sfu_delay.p99_us_at_most "Time in the SFU p99, at most, microseconds"
print_comparison .loadgen_cpu_s "Load generator CPU seconds in the window"
