#!/usr/bin/env bash
# The fleet bench, in one command: installs nginx, haproxy and openssl when missing, builds the
# tunnel as the Dockerfile does, then runs benches/fleet.py (as root: it makes a network
# namespace). Arguments go to fleet.py (--targets N --interval SECONDS --duration SECONDS
# --rounds N --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
cargo build --release --locked
exec python3 benches/fleet.py "$@"
