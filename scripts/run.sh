#!/usr/bin/env bash
# Builds the tunnel as the Dockerfile does and runs it with the example conf.
# Extra arguments and env (SERVER_IP=... and so on) override the conf.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
cargo build --release --locked
exec target/release/prometheus-tunnel -c conf/tunnel.yaml "$@"
