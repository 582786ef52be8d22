#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine, only when it is missing:
#   cmake                     to build pingora-core's zlib-ng
#   prometheus, promtool      the real Prometheus of the end-to-end test; promtool checks the rules
#   prometheus-node-exporter  the real exporter scraped through the tunnel
#   tinyproxy, microsocks     the real HTTP CONNECT and SOCKS5 proxies of the proxy tests
#   openssl                   makes the certificates of the TLS tests
#   curl                      the TLS client (with a client certificate) of the proxy-port TLS test
#   python3-venv              for the chart tests' virtualenv, where python3 lacks venv
# Usage: scripts/deps.sh [build|test]   (build: cmake only)
set -euo pipefail

want=(cmake)
if [ "${1:-test}" = test ]; then
  want+=(prometheus prometheus-node-exporter tinyproxy microsocks openssl curl)
fi

missing=()
for pkg in "${want[@]}"; do
  if ! command -v "$pkg" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
if [ "${1:-test}" = test ] && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
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
