#!/usr/bin/env bash
# Instructions per scrape under valgrind's callgrind, in one command: installs valgrind and
# nginx when missing, builds the tunnel as the Dockerfile does (release builds keep their
# symbol names, which is all callgrind needs), then runs benches/instructions.py. Arguments go
# to instructions.py (--scrapes N --gzip).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh callgrind
cargo build --release --locked
exec python3 benches/instructions.py "$@"
