#!/usr/bin/env bash
# Runs every check of the repository: formatting, lints, builds, the Rust tests and the browser
# end-to-end tests. Works on a fresh Debian machine and on one where everything is installed.
#
# Needs root: it installs missing Debian packages with apt-get and runs the tests in network
# namespaces (unshare -n) where only loopback exists. Stops at the first failing step and ends
# with a summary of the steps.
set -euo pipefail

cd "$(dirname "$0")/.."

# Node.js major version that playwright-core and `node --test --test-concurrency` need.
MIN_NODE_MAJOR=20

RESULTS=()
CURRENT_STEP=""
STEP_START=0

# Prints one line per finished step and a final verdict, on success and on failure.
print_summary() {
  local status=$?
  echo
  echo "==> Summary"
  local line
  for line in "${RESULTS[@]}"; do
    echo "  $line"
  done
  if [ "$status" -eq 0 ]; then
    echo "tests/run.sh: PASSED, ${#RESULTS[@]} steps in ${SECONDS} s"
  else
    echo "  FAILED  ${CURRENT_STEP} (exit status ${status})"
    echo "tests/run.sh: FAILED at step \"${CURRENT_STEP}\" after ${SECONDS} s"
  fi
  exit "$status"
}
trap print_summary EXIT

# Runs one named step. A failing command ends the script through `set -e`.
run_step() {
  CURRENT_STEP=$1
  shift
  echo
  echo "==> ${CURRENT_STEP}"
  STEP_START=$SECONDS
  "$@"
  RESULTS+=("ok      ${CURRENT_STEP} ($((SECONDS - STEP_START)) s)")
  CURRENT_STEP=""
}

# Installs the Debian packages whose commands are missing; runs `apt-get update` only then.
install_packages() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v turnserver >/dev/null || missing+=(coturn)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v docker-compose >/dev/null || missing+=(docker-compose)

  if [ "${#missing[@]}" -eq 0 ]; then
    echo "all required packages are installed"
    return
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive

  # coturn's and prometheus's packages enable system services, which would listen on ports
  # 3478 and 9090 of every interface. The checks run these programs themselves, so services
  # may not start during this install: Debian's invoke-rc.d and deb-systemd-invoke obey
  # policy-rc.d's exit status 101. An existing policy-rc.d is left as it is.
  local policy=/usr/sbin/policy-rc.d added_policy=false status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by tests/run.sh for one apt-get install: start no services.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=true
  fi
  { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } || status=$?
  if [ "$added_policy" = true ]; then
    rm -f "$policy"
  fi
  return "$status"
}

check_requirements() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh must run as root: it installs packages and creates network namespaces" >&2
    return 1
  fi
  local node_major
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" -lt "$MIN_NODE_MAJOR" ]; then
    echo "Node.js $(node --version) is too old; the browser tests need ${MIN_NODE_MAJOR} or later" >&2
    return 1
  fi
  cargo --version
  node --version
  /usr/bin/chromium --version
}

install_node_modules() {
  (cd tests/browser && npm ci --no-audit --no-fund)
}

# Builds the cargo-fuzz targets on the stable toolchain and runs each once over its seed corpus.
# Stable builds lack coverage instrumentation, so this proves that the targets compile and that
# no seed crashes; coverage-guided fuzzing needs nightly (fuzz/README.md).
build_fuzz_targets() {
  cargo build --manifest-path fuzz/Cargo.toml
  local target
  for target in stun_message channel_data turn_core websocket_frames; do
    fuzz/target/debug/"$target" -runs=0 fuzz/corpus/"$target"
  done
}

# Validates the deployment files: the compose file with docker-compose (no container engine
# runs here, so nothing is started) and the Prometheus scrape config with promtool.
check_deploy_files() {
  docker-compose -f docker-compose.yml config --quiet
  promtool check config deploy/prometheus/prometheus.yml
}

# Runs the signaling benchmarks at a tiny size, so that they keep working. Their numbers are
# printed, never checked: this machine is shared and its speed varies. Each script makes its
# own loopback-only namespace.
bench_smoke() {
  BENCH_CLIENTS=20 BENCH_DELIVERIES=2000 BENCH_ROUNDS=1 bench/signaling-fanout.sh
  BENCH_CONNECTIONS=200 bench/ws-memory.sh
}

# Runs a command in a new network namespace whose only interface is loopback.
in_loopback_namespace() {
  unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
}

run_step "requirements: packages" install_packages
run_step "requirements: versions" check_requirements
run_step "npm ci (tests/browser)" install_node_modules
run_step "deployment files" check_deploy_files
run_step "cargo fmt" cargo fmt --all --check
run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
run_step "cargo build --release" cargo build --release --workspace
run_step "cargo test --no-run" cargo test --workspace --no-run
run_step "cargo test (loopback only)" in_loopback_namespace cargo test --workspace --offline
# The end-to-end scenarios again, with every room spread over two SFU workers. They are named
# one by one beside --workspace, so that cargo reuses the build above: `-p switchyard-e2e`
# alone would resolve other features and rebuild tokio and the crates above it.
E2E_TARGETS=()
for scenario in tests/tests/*.rs; do
  E2E_TARGETS+=(--test "$(basename "$scenario" .rs)")
done
run_step "SFU end-to-end tests with every room across two workers (loopback only)" \
  in_loopback_namespace env E2E_MEDIA_WORKERS=2 E2E_ROOM_SPREAD_AFTER=1 \
  cargo test --workspace --offline "${E2E_TARGETS[@]}"
run_step "fuzz targets: build and replay seeds" build_fuzz_targets
run_step "TURN interop with coturn (loopback only)" in_loopback_namespace tests/turn/interop.sh
run_step "signaling benchmarks, smoke run (loopback only)" bench_smoke
run_step "browser tests (loopback only)" tests/browser/run.sh
