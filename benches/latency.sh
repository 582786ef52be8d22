#!/usr/bin/env bash
# Latency at one connection with the proxy alone on one core and its peers on the other, tunnel
# against HAProxy and nginx, in one command: installs nginx, haproxy and wrk when missing, builds
# the tunnel as the Dockerfile does, then runs benches/latency.py (--page P --rounds N).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
cargo build --release --locked
exec python3 benches/latency.py "$@"
