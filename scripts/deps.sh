#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine, only when it is missing:
#   cmake                     to build pingora-core's zlib-ng
#   prometheus, promtool      the real Prometheus of the end-to-end test; promtool checks the rules
#   prometheus-node-exporter  the real exporter scraped through the tunnel
#   prometheus-blackbox-exporter  the exporter that reads ?target= itself
#   tinyproxy, microsocks     the real HTTP CONNECT and SOCKS5 proxies of the proxy tests
#   openssl                   makes the certificates of the TLS tests (and the agent bench's)
#   curl                      the TLS client of the proxy-port and agent-port TLS tests
#   haproxy                   the load balancer that cuts idle polls in the reverse-mode test, and
#                             the Service in front of three replicas in the agent-mode test
#   python3-venv              for the chart tests' virtualenv, where python3 lacks venv
#   chromium                  the real browser that renders the status page (tests/status.rs)
# and for the benches (benches/run.sh, benches/instructions.sh, benches/reverse.sh):
#   nginx, haproxy, wrk       the upstream, the proxies compared with, the load generator
#   openssl                   the agent's certificates (benches/reverse.sh)
#   valgrind                  callgrind, which counts instructions per scrape
#   linux-perf                perf, which counts syscalls and wake-ups per scrape (benches/cost.sh)
# and for scripts/run.sh's first run on a machine without an exporter (example):
#   prometheus-node-exporter
# and, from crates.io, for the test suite's dependency checks (test):
#   cargo-deny, cargo-machete  licenses, bans and sources; unused dependencies
# Usage: scripts/deps.sh [build|test|bench|callgrind|profile|example]   (build: cmake only)
# Packages are installed with their services not started (policy-rc.d): the tests and run.sh
# start their own instances where they need them.
set -euo pipefail

want=(cmake)
case "${1:-test}" in
  build) ;;
  test) want+=(prometheus prometheus-node-exporter prometheus-blackbox-exporter tinyproxy microsocks openssl curl haproxy chromium) ;;
  bench) want+=(nginx haproxy wrk openssl) ;;
  callgrind) want+=(nginx valgrind) ;;
  profile) want+=(nginx haproxy wrk linux-perf) ;;
  example) want=(prometheus-node-exporter) ;;
  *)
    echo "usage: scripts/deps.sh [build|test|bench|callgrind|profile|example], not: $1" >&2
    exit 2
    ;;
esac

# Cargo tools of the dependency checks, pinned; built once per machine (about 4 minutes).
if [ "${1:-test}" = test ]; then
  cargo_tools=("cargo-deny@0.20.2 --no-default-features" "cargo-machete@0.9.2")
  for tool in "${cargo_tools[@]}"; do
    name=${tool%%@*}
    version=${tool#*@}
    version=${version%% *}
    if ! "$name" --version 2>/dev/null | grep -qF "$version"; then
      echo "installing $name $version from crates.io" >&2
      # shellcheck disable=SC2086 # the extra flags are words
      cargo install --quiet --locked ${tool/@/ --version }
    fi
  done
fi

missing=()
for pkg in "${want[@]}"; do
  # nginx and haproxy install to /usr/sbin, which is not on every user's PATH; linux-perf's
  # command is perf.
  command=$pkg
  [ "$pkg" = linux-perf ] && command=perf
  if ! command -v "$command" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$command" ]; then
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
# No service of these packages is started (a node_exporter on :9100, an nginx on :80): Debian's
# maintainer scripts ask policy-rc.d, which says no while one of ours is in place.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
