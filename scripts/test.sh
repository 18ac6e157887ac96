#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs what it needs,
# then formatting, lints, unit, integration and simulation tests. Exits non-zero on the
# first failure. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- set-up -----------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup first" >&2
  exit 1
fi
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The real Kafka broker the integration and conformance tests start (jars from Maven
# Central, reused when already fetched).
log "fetching Kafka"
scripts/kafka/kafka.sh fetch

# --- checks -----------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The deployed `weir` must hold neither a way to plant bugs nor tokio's test-util (the
# simulation's paused clock): both live only in the weir-sim binary.
log "the deployed weir carries no planted bugs and no test-util"
deployed_features=$(cargo tree --locked -p weir-api -e normal,build,features --prefix none)
if grep -E 'feature "(planted-bugs|test-util)"' <<<"$deployed_features"; then
  echo "the weir binary's dependencies turn on a feature it must not have (above)" >&2
  exit 1
fi
if grep -E '^weir-broker-conformance ' <<<"$deployed_features"; then
  echo "the weir binary links the broker conformance suite, a test dependency only" >&2
  exit 1
fi

log "production files and functions within their size limits"
scripts/size-limits.sh

log "cargo test (unit, integration across processes, simulation)"
cargo test --workspace --locked

# The simulation's seed sweep (500 whole-cluster seeds, a determinism double run among the
# debug tests above) and the planted-bug tests run many seeds: they are #[ignore]d in the
# debug build and run here, optimised.
log "simulation: 500-seed sweep and planted bugs (release)"
cargo test --release --locked -p weir-simulation --test sweep --test planted_bugs -- --ignored

# Planted bugs the worker's own tests catch (the feature is the worker's, off above).
log "planted bugs caught by the worker's tests"
cargo test --locked -p weir-worker --features planted-bugs --test stage_cut --test supervisor_trouble
cargo test --locked -p weir-worker --features planted-bugs --lib join_state_left_out
cargo test --locked -p weir-worker --features planted-bugs --lib the_planted_bugs_of_the_temporal_join
cargo test --locked -p weir-worker --features planted-bugs --test join

log "all tests passed"
