#!/usr/bin/env bash
# The side-by-side load bench, in one command: installs nginx, haproxy and wrk (and matplotlib
# for the chart) when missing, builds the tunnel as the Dockerfile does, then runs
# benches/load.py. Arguments go to load.py (--rounds N --duration SECONDS --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
cargo build --release --locked
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check matplotlib==3.11.2
exec .venv/bin/python benches/load.py "$@"
