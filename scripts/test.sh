#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests against
# real servers (the built binary, a real exporter, a real Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
