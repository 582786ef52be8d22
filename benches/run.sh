#!/usr/bin/env bash
# The side-by-side load bench, in one command: installs nginx, haproxy and wrk (and matplotlib
# for the chart) when missing, builds the tunnel as the Dockerfile does, then runs
# benches/load.py. Arguments go to load.py (--rounds N --duration SECONDS --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
scripts/deps.sh build
cargo build --release --locked
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check matplotlib==3.11.2
exec .venv/bin/python benches/load.py "$@"
