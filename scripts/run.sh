#!/usr/bin/env bash
# Builds the tunnel as the Dockerfile does and runs it with the example conf (conf/tunnel.yaml:
# exporter 127.0.0.1:9100, proxy port 8080, metrics port 9182). Extra arguments and env
# (SERVER_IP=..., --listen-port ...) override the conf.
#
# So that the first scrape shows the tunnel working: when the exporter is to be on this machine
# and nothing answers there (a fresh machine), a real prometheus-node-exporter (Debian's package,
# installed when missing) is started at that address and stopped with the tunnel. An exporter
# that already answers there is used as it is, never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
cargo build --release --locked

# Where scrapes go and where the tunnel listens: the example conf, then env, then flags.
exporter_host=${SERVER_IP:-127.0.0.1}
exporter_port=${SERVER_PORT:-9100}
listen_port=${LISTEN_PORT:-8080}
metrics_port=${METRICS_PORT:-9182}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  arg=${args[i]}
  value=${args[i + 1]:-}
  case "$arg" in
    --server-ip=*) exporter_host=${arg#*=} ;;
    --server-ip) exporter_host=$value ;;
    --server-port=*) exporter_port=${arg#*=} ;;
    --server-port) exporter_port=$value ;;
    --listen-port=*) listen_port=${arg#*=} ;;
    --listen-port) listen_port=$value ;;
    --metrics-port=*) metrics_port=${arg#*=} ;;
    --metrics-port) metrics_port=$value ;;
  esac
done

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

node_exporter=""
tunnel=""
stop() {
  [ -n "$tunnel" ] && kill -TERM "$tunnel" 2>/dev/null && wait "$tunnel" 2>/dev/null
  [ -n "$node_exporter" ] && kill -TERM "$node_exporter" 2>/dev/null && wait "$node_exporter" 2>/dev/null
  return 0
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case "$exporter_host" in
  127.0.0.1 | localhost | ::1)
    if answers "$exporter_host" "$exporter_port"; then
      echo "run.sh: an exporter already answers at $exporter_host:$exporter_port; the tunnel forwards to it" >&2
    else
      scripts/deps.sh example
      prometheus-node-exporter --web.listen-address="127.0.0.1:$exporter_port" >/dev/null 2>&1 &
      node_exporter=$!
      for _ in $(seq 1 100); do
        answers 127.0.0.1 "$exporter_port" && break
        kill -0 "$node_exporter" 2>/dev/null || { echo "run.sh: prometheus-node-exporter did not start on port $exporter_port" >&2; exit 1; }
        sleep 0.1
      done
      echo "run.sh: nothing answered at $exporter_host:$exporter_port, so prometheus-node-exporter runs there until the tunnel stops" >&2
    fi
    ;;
esac
echo "run.sh: scrape through the tunnel:  curl http://127.0.0.1:$listen_port/metrics" >&2
echo "run.sh: the tunnel's own metrics:  curl http://127.0.0.1:$metrics_port/metrics  (and /healthz, /readyz, /version, /targets)" >&2

target/release/prometheus-tunnel -c conf/tunnel.yaml "$@" &
tunnel=$!
# `wait` returns at once on a signal, so the traps above stop both children.
status=0
wait "$tunnel" || status=$?
tunnel=""
exit "$status"
