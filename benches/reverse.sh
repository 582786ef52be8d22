#!/usr/bin/env bash
# The dial-out modes (agent mode, PushProx polling) against forward mode, in one command:
# installs nginx, wrk and openssl (the agent's certificates) when missing, builds the tunnel
# and the bench's PushProx client in release, then runs benches/reverse.py.
# Arguments go to reverse.py (--rounds N --duration SECONDS --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
cargo build --release --locked
cargo build --release --locked --example pushprox_client
exec python3 benches/reverse.py "$@"
