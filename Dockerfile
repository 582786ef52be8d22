# syntax=docker/dockerfile:1
#
# Build:  docker build --build-arg VERSION=0.1.0 --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#           --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t supporttools/prometheus-tunnel:0.1.0 .
# Run:    docker run -p 8080:8080 -p 9182:9182 -e SERVER_IP=192.168.0.3 -e SERVER_PORT=9100 supporttools/prometheus-tunnel:0.1.0
#
# CI builds the binary with the same command (scripts/test.sh: `cargo build --release --locked`).
#
# Reproducible: the base images are pinned by digest, the dependencies by Cargo.lock, the build
# date comes from SOURCE_DATE_EPOCH (the last commit's time) and the commit is passed in, and
# paths are the same in every build; two builds of one commit give the same binary.
#
# Updating a base image: look up the digest its tag points to now,
#   docker buildx imagetools inspect rust:1.95-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
# (the "Digest:" line), replace the sha256 after the tag below, and run scripts/test.sh (the
# Rust version must stay the one CI builds with).

# --- build: the Rust toolchain of this repository's machines, on Debian 12 like the runtime ---
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
# pingora-core's zlib-ng is built with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not when the tunnel's sources do. (Stub sources stand in for them.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/hot_path.rs \
 && cargo build --release --locked \
 && rm -rf src benches target/release/.fingerprint/prometheus-tunnel-*
COPY . .
# Stamped into /version and prometheus_tunnel_build_info by build.rs.
ARG VERSION=""
ARG GIT_COMMIT=""
ARG BUILD_DATE=""
ARG SOURCE_DATE_EPOCH=""
ENV VERSION=${VERSION} GIT_COMMIT=${GIT_COMMIT} BUILD_DATE=${BUILD_DATE} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/prometheus-tunnel /out/prometheus-tunnel

# --- runtime: glibc and libgcc only (what the binary links), no shell, no package manager ---
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
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
