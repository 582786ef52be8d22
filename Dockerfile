# syntax=docker/dockerfile:1
#
# Build:  docker build --build-arg VERSION=0.1.0 --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#           --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t supporttools/prometheus-tunnel:0.1.0 .
# Run:    docker run -p 8080:8080 -p 9182:9182 -e SERVER_IP=192.168.0.3 -e SERVER_PORT=9100 supporttools/prometheus-tunnel:0.1.0
#
# CI builds the binary with the same command (scripts/test.sh: `cargo build --release --locked`).

# --- build: the Rust toolchain of this repository's machines, on Debian 12 like the runtime ---
FROM rust:1.95-bookworm AS build
# pingora-core's zlib-ng is built with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Stamped into /version and prometheus_tunnel_build_info by build.rs.
ARG VERSION=""
ARG GIT_COMMIT=""
ARG BUILD_DATE=""
ENV VERSION=${VERSION} GIT_COMMIT=${GIT_COMMIT} BUILD_DATE=${BUILD_DATE}
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/prometheus-tunnel /out/prometheus-tunnel

# --- runtime: glibc and libgcc only (what the binary links), no shell, no package manager ---
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=""
ARG GIT_COMMIT=""
ARG BUILD_DATE=""
LABEL org.opencontainers.image.title="prometheus-tunnel" \
      org.opencontainers.image.description="Lets Prometheus scrape exporters it cannot reach directly" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/supporttools/prometheus-tunnel" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.created="${BUILD_DATE}"
COPY --from=build /out/prometheus-tunnel /usr/local/bin/prometheus-tunnel
COPY conf/tunnel.yaml /etc/prometheus-tunnel/tunnel.yaml
# distroless' "nonroot" user.
USER 65532:65532
# LISTEN_PORT (scraped by Prometheus) and METRICS_PORT (the tunnel's own metrics and probes).
EXPOSE 8080 9182
ENTRYPOINT ["/usr/local/bin/prometheus-tunnel"]
