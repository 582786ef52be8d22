#!/usr/bin/env bash
# Reverse mode against forward mode, in one command: installs nginx and wrk when missing,
# builds the tunnel and the bench's PushProx client in release, then runs benches/reverse.py.
# Arguments go to reverse.py (--rounds N --duration SECONDS --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
cargo build --release --locked
cargo build --release --locked --example pushprox_client
exec python3 benches/reverse.py "$@"
