#!/usr/bin/env bash
# The silent-connections bench, in one command: installs nginx and haproxy when missing, builds
# the tunnel as the Dockerfile does, then runs benches/idle.py (--connections N --fd-limit N).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
cargo build --release --locked
exec python3 benches/idle.py "$@"
