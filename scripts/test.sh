#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. formatting, lints and docs of the Rust code; licenses, sources and unused dependencies,
#   2. the release binary, built exactly as the Dockerfile builds it, checked on the example conf,
#   3. unit and integration tests against real servers (the built binary, a real exporter,
#      a real Prometheus scraping a real node_exporter),
#   4. the Helm chart with real Helm, kubernetes-validate and promtool; the Dockerfile by reading;
#      the README's run command (scripts/run.sh) as a newcomer runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

echo "== fmt, clippy, docs and dependency checks"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet
# Licenses, bans and sources (deny.toml); advisories need GitHub, which CI cannot reach.
cargo deny --log-level error check licenses bans sources
cargo machete

echo "== release build (as in the Dockerfile)"
cargo build --release --locked
target/release/prometheus-tunnel --version
target/release/prometheus-tunnel -t -c conf/tunnel.yaml

echo "== cargo tests"
cargo test --locked

echo "== chart, image and run-command tests"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
# -p no:cloudcoil: the CRD models ship a pytest plugin for clusters, which these tests do not use.
.venv/bin/python -m pytest -q -p no:cloudcoil tests/chart tests/scripts
