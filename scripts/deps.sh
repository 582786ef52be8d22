#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine, only when it is missing:
#   cmake                     to build pingora-core's zlib-ng
#   prometheus, promtool      the real Prometheus of the end-to-end test; promtool checks the rules
#   prometheus-node-exporter  the real exporter scraped through the tunnel
#   prometheus-blackbox-exporter  the exporter that reads ?target= itself
#   tinyproxy, microsocks     the real HTTP CONNECT and SOCKS5 proxies of the proxy tests
#   openssl                   makes the certificates of the TLS tests
#   curl                      the TLS client (with a client certificate) of the proxy-port TLS test
#   python3-venv              for the chart tests' virtualenv, where python3 lacks venv
# and for the benches (benches/run.sh, benches/instructions.sh):
#   nginx, haproxy, wrk       the upstream, the proxies compared with, the load generator
#   valgrind                  callgrind, which counts instructions per scrape
# Usage: scripts/deps.sh [build|test|bench|callgrind]   (build: cmake only)
set -euo pipefail

want=(cmake)
case "${1:-test}" in
  build) ;;
  test) want+=(prometheus prometheus-node-exporter prometheus-blackbox-exporter tinyproxy microsocks openssl curl) ;;
  bench) want+=(nginx haproxy wrk) ;;
  callgrind) want+=(nginx valgrind) ;;
  *)
    echo "usage: scripts/deps.sh [build|test|bench|callgrind], not: $1" >&2
    exit 2
    ;;
esac

missing=()
for pkg in "${want[@]}"; do
  # nginx and haproxy install to /usr/sbin, which is not on every user's PATH.
  if ! command -v "$pkg" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$pkg" ]; then
    missing+=("$pkg")
  fi
done
# The chart tests and the bench's chart run in a virtualenv.
if { [ "${1:-test}" = test ] || [ "${1:-test}" = bench ]; } && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The tests start their own instances on free ports, so services the packages may start do not
# get in their way.
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
