//! Micro-benches of the work the tunnel adds to each scrape, on top of Pingora's own: choosing
//! the target, rewriting the request for the exporter, recording the metrics. Run with
//! `cargo bench --bench hot_path`; `benches/run.sh` runs the side-by-side load bench.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Uri;
use pingora_http::RequestHeader;

use prometheus_tunnel::config::{self, file, FileLayer};
use prometheus_tunnel::material::Material;
use prometheus_tunnel::metrics::scrape_log::ScrapeEnd;
use prometheus_tunnel::metrics::UpstreamErrorKind;
use prometheus_tunnel::proxy::rewrite::ScrapeRequest;
use prometheus_tunnel::proxy::route::{route, Route};
use prometheus_tunnel::targets::TargetTable;
use prometheus_tunnel::upstream::http1::ExporterRequest;

/// A table of `n` targets named `vm-00000`...
fn table(n: usize) -> TargetTable {
    let mut yaml = String::from("tunnel:\n  targets:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{name: vm-{i:05}, address: 10.0.{}.{}:9100}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let conf = file::parse(&yaml, Path::new("bench.yaml")).expect("bench conf");
    let env: HashMap<&str, &str> = HashMap::new();
    let layer = FileLayer {
        values: conf.values,
        targets: &conf.targets,
        path: None,
    };
    let tunnel = config::merge(layer, &env, Vec::new()).expect("bench config");
    let material = Material::load(&tunnel).expect("bench material");
    TargetTable::build(&tunnel, material.exporters).expect("bench table")
}

fn scrape_request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/metrics", None).unwrap();
    req.insert_header("host", "tunnel.monitoring.svc:8080")
        .unwrap();
    req.insert_header("user-agent", "Prometheus/2.53.0")
        .unwrap();
    req.insert_header(
        "accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .unwrap();
    req.insert_header("accept-encoding", "gzip").unwrap();
    req.insert_header("x-prometheus-scrape-timeout-seconds", "10")
        .unwrap();
    req
}

fn bench(c: &mut Criterion) {
    let fleet = table(10_000);
    let one = table(1);
    let plain: Uri = "/metrics".parse().unwrap();
    let named: Uri = "/metrics?target=vm-07777&collect%5B%5D=cpu"
        .parse()
        .unwrap();

    c.bench_function("route: single target, no parameter", |b| {
        b.iter(|| black_box(matches!(route(&one, black_box(&plain)), Route::To(..))))
    });
    c.bench_function("route: ?target= among 10,000", |b| {
        b.iter(|| black_box(matches!(route(&fleet, black_box(&named)), Route::To(..))))
    });

    let target = one.iter().next().expect("a target").clone();
    let template = scrape_request();
    // The exporter's request written from the client's header (hop-by-hop fields left out,
    // Host and credentials set): all a scrape's request costs the tunnel before it is sent.
    let mut wire = BytesMut::with_capacity(1024);
    c.bench_function("rewrite: request for the exporter", |b| {
        b.iter(|| {
            wire.clear();
            let request = ScrapeRequest {
                target: &target,
                forwarded_path: None,
                now: Instant::now(),
                strip_client_auth: false,
                hop_fields: &[],
            };
            request
                .write(black_box(&template), &mut wire)
                .expect("request written");
            black_box(wire.len())
        })
    });

    c.bench_function("metrics: record a 200", |b| {
        b.iter(|| {
            target.metrics.record(
                black_box(ScrapeEnd {
                    status: 200,
                    duration: Duration::from_micros(2100),
                    bytes: 59_000,
                    failure: None,
                }),
                None,
                true,
            )
        })
    });
    c.bench_function("metrics: record a 502 (refused)", |b| {
        b.iter(|| {
            target.metrics.record(
                black_box(ScrapeEnd {
                    status: 502,
                    duration: Duration::from_micros(400),
                    bytes: 60,
                    failure: Some(2),
                }),
                Some(UpstreamErrorKind::Refused),
                true,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
