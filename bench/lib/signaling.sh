# Helpers shared by bench/signaling-fanout.sh and bench/ws-memory.sh: the network namespace,
# starting Switchyard and the Node.js reference (with its Redis) on loopback, and reading the
# load generator's `key=value` output. Sourced, not run.

SWITCHYARD_BIN=${SWITCHYARD_BIN:-target/release/switchyard}
WSBENCH_BIN=${WSBENCH_BIN:-target/release/switchyard-wsbench}
SWITCHYARD_PORT=8080
MEDIA_PORT=40000
REFERENCE_PORT=8090
REDIS_PORT=6379
# Attempts, 100 ms apart, to wait for a server's port.
PORT_WAIT_TRIES=100

STARTED_PIDS=()

# Re-runs the calling script in a new network namespace whose only interface is loopback,
# unless it already runs in one. Usage: enter_namespace "$0" "$@"
enter_namespace() {
  if [ -n "${BENCH_IN_NAMESPACE:-}" ]; then
    return
  fi
  exec unshare -n env BENCH_IN_NAMESPACE=1 sh -c 'ip link set lo up && exec "$@"' sh bash "$@"
}

# Raises the limits that many connections need and sets OPEN_FILES to the open file limit
# in force. The port range is the namespace's own, so the host's setting does not change.
# Raising the hard open file limit needs CAP_SYS_RESOURCE; without it the hard limit stays
# and the callers measure fewer connections.
raise_limits() {
  ulimit -Hn 1048576 2>/dev/null || true
  ulimit -n "$(ulimit -Hn)"
  OPEN_FILES=$(ulimit -n)
  sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
  sysctl -q -w net.core.somaxconn=65535 2>/dev/null || true
}

# Prints COUNT, or fewer when a process cannot open that many files, with a warning.
# Usage: fit_open_files COUNT
fit_open_files() {
  local count=$1
  # Files that a server or the load generator opens besides its connections.
  local spare=200
  if [ "$count" -gt $((OPEN_FILES - spare)) ]; then
    echo "warning: the open file limit is $OPEN_FILES and cannot be raised here, so" \
      "$((OPEN_FILES - spare)) connections are used instead of $count" >&2
    count=$((OPEN_FILES - spare))
  fi
  echo "$count"
}

# Fails unless the binaries, node with the reference's packages, and redis-server are there.
require_tools() {
  local missing=()
  [ -x "$SWITCHYARD_BIN" ] || missing+=("$SWITCHYARD_BIN")
  [ -x "$WSBENCH_BIN" ] || missing+=("$WSBENCH_BIN")
  command -v node >/dev/null || missing+=(node)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "missing: ${missing[*]}" >&2
    echo "build with: cargo build --release -p switchyard -p switchyard-wsbench" >&2
    echo "install with: apt-get install nodejs npm redis-server" >&2
    return 1
  fi
  if [ ! -d bench/reference/node_modules ]; then
    echo "missing: bench/reference/node_modules; run (cd bench/reference && npm ci) with network access" >&2
    return 1
  fi
}

# Installs the reference server's npm packages when they are missing. Runs before the script
# enters its namespace, which has no network to reach the npm registry.
install_reference_packages() {
  if [ -z "${BENCH_IN_NAMESPACE:-}" ] && [ ! -d bench/reference/node_modules ]; then
    (cd bench/reference && npm ci --no-audit --no-fund)
  fi
}

# Waits until something accepts TCP connections on 127.0.0.1:PORT. Usage: wait_port PORT PID
wait_port() {
  local port=$1 pid=$2 try
  for ((try = 0; try < PORT_WAIT_TRIES; try++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited before listening on port $port" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "nothing listens on port $port after $((PORT_WAIT_TRIES / 10)) s" >&2
  return 1
}

# Starts `switchyard serve` with the limits raised for one room of any size, and sets
# SWITCHYARD_PID. Usage: start_switchyard LOG [EXTRA_FLAG...]
start_switchyard() {
  local log=$1
  shift
  RUST_LOG=${BENCH_RUST_LOG:-warn} "$SWITCHYARD_BIN" serve \
    --http "127.0.0.1:$SWITCHYARD_PORT" --media "127.0.0.1:$MEDIA_PORT" --no-turn \
    --max-participants-per-room 1000000 --max-rooms 1000000 \
    --max-messages-per-second 1000000 "$@" >"$log" 2>&1 &
  SWITCHYARD_PID=$!
  STARTED_PIDS+=("$SWITCHYARD_PID")
  wait_port "$SWITCHYARD_PORT" "$SWITCHYARD_PID"
}

# Starts redis-server and the Node.js reference server, and sets REDIS_PID and NODE_PID.
# Usage: start_reference LOG_PREFIX
start_reference() {
  local prefix=$1
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --maxclients 10000 >"$prefix-redis.log" 2>&1 &
  REDIS_PID=$!
  STARTED_PIDS+=("$REDIS_PID")
  wait_port "$REDIS_PORT" "$REDIS_PID"
  HOST=127.0.0.1 PORT=$REFERENCE_PORT REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    node bench/reference/server.js >"$prefix-node.log" 2>&1 &
  NODE_PID=$!
  STARTED_PIDS+=("$NODE_PID")
  wait_port "$REFERENCE_PORT" "$NODE_PID"
}

# Stops one started process and waits for it.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops every process this script started.
stop_all() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    stop_pid "$pid"
  done
  STARTED_PIDS=()
}

# Prints the value of KEY in a `key=value` line. Usage: field LINE KEY
field() {
  local line=$1 key=$2 pair
  for pair in $line; do
    if [ "${pair%%=*}" = "$key" ]; then
      echo "${pair#*=}"
      return
    fi
  done
  echo "-"
}

# Prints A / B with DIGITS decimals, or "-" when either is missing or B is 0.
ratio() {
  local a=$1 b=$2 digits=${3:-2}
  awk -v a="$a" -v b="$b" -v d="$digits" \
    'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.*f\n", d, a / b }'
}

# Prints the median of its arguments, which are numbers.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ value[NR] = $1 }
    END { if (NR % 2) print value[(NR + 1) / 2]; else printf "%.2f\n", (value[NR / 2] + value[NR / 2 + 1]) / 2 }'
}

# Prints the number of source addresses for COUNT connections, at most 30,000 per address.
sources_for() {
  echo $(($1 / 30000 + 1))
}
