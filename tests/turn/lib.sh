# Shared by tests/turn/interop.sh and bench/turn-vs-coturn.sh: starts our relay and coturn's
# turnserver on loopback with equivalent settings, runs coturn's turnutils_uclient against them
# and reads its summary. Source it from bash after `set -euo pipefail`.
#
# Every process is started here and stopped by its PID. Every wait is bounded.

# Credentials of the one static user that both servers accept.
TURN_USER=interop
TURN_PASSWORD=interop-password
TURN_REALM=switchyard

# Seconds a server gets to respond to its first STUN Binding request after start.
SERVER_READY_TIMEOUT=10
# Seconds a process gets to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT=5

# PIDs started through this file, stopped by stop_all.
STARTED_PIDS=()

# Prints the switchyard binary: SWITCHYARD_BIN when set, else the release build.
switchyard_binary() {
  local binary=${SWITCHYARD_BIN:-${CARGO_TARGET_DIR:-target}/release/switchyard}
  if [ ! -x "$binary" ]; then
    echo "switchyard binary not found at $binary; run \`cargo build --release -p switchyard\` or set SWITCHYARD_BIN" >&2
    return 1
  fi
  echo "$binary"
}

# Fails unless coturn's server and tools are installed.
require_coturn() {
  local tool
  for tool in turnserver turnutils_uclient turnutils_peer turnutils_stunclient; do
    if ! command -v "$tool" >/dev/null; then
      echo "$tool not found; install the Debian package coturn (apt-get install -y coturn)" >&2
      return 1
    fi
  done
}

# Prints coturn's version, such as 4.6.1.
coturn_version() {
  turnserver --version 2>/dev/null | head -n 1
}

# Fails unless this process's network namespace has no interface but loopback.
require_loopback_only() {
  local interfaces
  interfaces=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort -u | tr '\n' ' ')
  if [ "$interfaces" != "lo " ]; then
    echo "run this inside a loopback-only network namespace (unshare -n); found interfaces: $interfaces" >&2
    return 1
  fi
}

# Waits until a STUN server responds to a Binding request on 127.0.0.1:PORT over UDP.
wait_for_stun() {
  local port=$1 attempt
  for ((attempt = 0; attempt < SERVER_READY_TIMEOUT * 10; attempt++)); do
    if timeout 1 turnutils_stunclient -p "$port" 127.0.0.1 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "no STUN response on 127.0.0.1:$port within ${SERVER_READY_TIMEOUT} s" >&2
  return 1
}

# Starts our relay alone (`switchyard turn`) on 127.0.0.1:PORT over UDP and TCP, with relay
# ports MIN_PORT-MAX_PORT, loopback peers allowed and no allocation quota per user, which is
# coturn's default. With RELAY_THREADS set, it runs that many worker threads. Sets OUR_PID.
# Usage: start_our_relay PORT MIN_PORT MAX_PORT WORK_DIR
start_our_relay() {
  local port=$1 min_port=$2 max_port=$3 work=$4 binary
  binary=$(switchyard_binary)
  cat >"$work/switchyard-turn.toml" <<CONFIG
realm = "$TURN_REALM"
listen-udp = ["127.0.0.1:$port"]
listen-tcp = ["127.0.0.1:$port"]
relay-ip = "127.0.0.1"
min-port = $min_port
max-port = $max_port
allowed-peer-ranges = ["127.0.0.0/8"]
users = [{ name = "$TURN_USER", password = "$TURN_PASSWORD" }]
user-quota = 0
CONFIG
  RUST_LOG=${RUST_LOG:-info} "$binary" turn --config "$work/switchyard-turn.toml" \
    ${RELAY_THREADS:+--worker-threads "$RELAY_THREADS"} >"$work/switchyard-turn.log" 2>&1 &
  OUR_PID=$!
  STARTED_PIDS+=("$OUR_PID")
  wait_for_stun "$port" || { tail -n 20 "$work/switchyard-turn.log" >&2; return 1; }
}

# Starts coturn's turnserver with the settings of start_our_relay: one listener on
# 127.0.0.1:PORT for UDP and TCP, no TLS, DTLS, CLI or RFC 5780, long-term credentials for the
# same user, and loopback peers allowed. With RELAY_THREADS set, it runs that many relay
# threads. Sets COTURN_PID.
# Usage: start_coturn PORT MIN_PORT MAX_PORT WORK_DIR
start_coturn() {
  local port=$1 min_port=$2 max_port=$3 work=$4
  turnserver -n --listening-ip=127.0.0.1 --listening-port="$port" --relay-ip=127.0.0.1 \
    --min-port="$min_port" --max-port="$max_port" --realm="$TURN_REALM" --lt-cred-mech \
    --user="$TURN_USER:$TURN_PASSWORD" --allow-loopback-peers --no-cli --no-tls --no-dtls \
    --no-rfc5780 --no-software-attribute --log-file=stdout --simple-log \
    ${RELAY_THREADS:+--relay-threads="$RELAY_THREADS"} \
    --pidfile="$work/coturn.pid" >"$work/coturn.log" 2>&1 &
  COTURN_PID=$!
  STARTED_PIDS+=("$COTURN_PID")
  wait_for_stun "$port" || { tail -n 20 "$work/coturn.log" >&2; return 1; }
}

# Starts turnutils_peer, which echoes every UDP datagram, on 127.0.0.1:PORT. Sets PEER_PID.
start_peer() {
  local port=$1 work=$2
  turnutils_peer -L 127.0.0.1 -p "$port" >"$work/peer.log" 2>&1 &
  PEER_PID=$!
  STARTED_PIDS+=("$PEER_PID")
}

# Sends SIGTERM to PID, waits up to STOP_TIMEOUT seconds, then sends SIGKILL.
stop_pid() {
  local pid=$1 attempt
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((attempt = 0; attempt < STOP_TIMEOUT * 10; attempt++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops every process started through this file, newest first.
stop_all() {
  local index
  for ((index = ${#STARTED_PIDS[@]} - 1; index >= 0; index--)); do
    stop_pid "${STARTED_PIDS[index]}"
  done
  STARTED_PIDS=()
}

# Runs turnutils_uclient against 127.0.0.1:PORT with the static user and the peer on
# 127.0.0.1:PEER_PORT, killed after TIMEOUT seconds. Its output goes to LOG. Returns its exit
# status, 124 on timeout. Usage: run_uclient LOG TIMEOUT PORT PEER_PORT [UCLIENT_OPTION...]
run_uclient() {
  local log=$1 limit=$2 port=$3 peer_port=$4
  shift 4
  local status=0
  # Line-buffered, so a run killed on timeout still leaves its progress in the log.
  timeout "$limit" stdbuf -oL turnutils_uclient -p "$port" -u "$TURN_USER" -w "$TURN_PASSWORD" \
    -e 127.0.0.1 -r "$peer_port" "$@" 127.0.0.1 >"$log" 2>&1 || status=$?
  return "$status"
}

# Prints "SENT RECEIVED LOST" from the summary at the end of a turnutils_uclient log: the
# lines `start_mclient: tot_send_msgs=S, tot_recv_msgs=R` and `Total lost packets L (P%)`.
# Fails when either line is missing.
uclient_summary() {
  local log=$1 totals lost
  totals=$(grep -E 'start_mclient: tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+' "$log" | tail -n 1) || true
  lost=$(grep -E 'Total lost packets [0-9]+' "$log" | tail -n 1) || true
  if [ -z "$totals" ] || [ -z "$lost" ]; then
    echo "no summary in $log" >&2
    return 1
  fi
  local sent received lost_count
  sent=$(sed -E 's/.*tot_send_msgs=([0-9]+).*/\1/' <<<"$totals")
  received=$(sed -E 's/.*tot_recv_msgs=([0-9]+).*/\1/' <<<"$totals")
  lost_count=$(sed -E 's/.*Total lost packets ([0-9]+).*/\1/' <<<"$lost")
  echo "$sent $received $lost_count"
}

# Prints the CPU time of PID in clock ticks: user plus system time, fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may contain spaces.
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  local fields=(${stat##*) })
  # After the name, field 3 (state) is index 0, so fields 14 and 15 are indexes 11 and 12.
  echo $((fields[11] + fields[12]))
}
