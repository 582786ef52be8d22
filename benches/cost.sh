#!/usr/bin/env bash
# Where a scrape's CPU goes (user and kernel time, system calls, wake-ups), tunnel against
# HAProxy and nginx, in one command: installs nginx, haproxy, wrk and perf when missing, builds
# the tunnel as the Dockerfile does, then runs benches/cost.py (--page P --rounds N --duration S).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh profile
cargo build --release --locked
exec python3 benches/cost.py "$@"
