#!/usr/bin/env bash
# Instructions per scrape under valgrind's callgrind, in one command: installs valgrind and
# nginx when missing, builds the tunnel as the Dockerfile does (release builds keep their
# symbol names, which is all callgrind needs), then runs benches/instructions.py. Arguments go
# to instructions.py (--scrapes N --gzip).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
scripts/deps.sh build
cargo build --release --locked
exec python3 benches/instructions.py "$@"
