//! The request as it goes to the exporter (`ScrapeRequest`): `Host` set to the exporter, the
//! `target` parameter removed, credentials applied, hop-by-hop headers (`Connection` and what it names,
//! `Keep-Alive`, `Upgrade`, `TE`, ...) left with the client. Everything else, path, query,
//! `Accept`, `Accept-Encoding`, Prometheus' own headers, passes unchanged.

use std::time::Instant;

use bytes::{BufMut, BytesMut};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::Version;
use pingora_error::Result;
use pingora_http::{HeaderNameVariant, RequestHeader};

pub use crate::listener::headers::strip_hop_by_hop;
use crate::listener::headers::{connection_named, is_hop_by_hop};
use crate::targets::Target;
use crate::upstream::http1::{write_request_line, ExporterRequest};

/// A scrape's request for the exporter, written from the client's request straight into the
/// exchange's buffer, without first copying the client's header map and editing the copy:
/// HTTP/1.1, `Host` first, the client's fields in their order and spelling but for hop-by-hop
/// ones, `hop_fields` and (when replaced or meant for the tunnel) `Authorization`, then the
/// exporter's credentials. The tunnel's scrapes and an agent's use it alike.
pub struct ScrapeRequest<'a> {
    /// The target the scrape goes to.
    pub target: &'a Target,
    /// The path and query without `target`, when the request had that parameter.
    pub forwarded_path: Option<&'a str>,
    /// Now, for credentials read from a file that may have changed.
    pub now: Instant,
    /// Whether the client's `Authorization` was the tunnel's own (client credentials).
    pub strip_client_auth: bool,
    /// Fields meant only for the hop the request came over (the agent link's target header).
    pub hop_fields: &'a [HeaderName],
}

impl ExporterRequest for ScrapeRequest<'_> {
    fn write(&self, client: &RequestHeader, buf: &mut BytesMut) -> Result<()> {
        let path = match self.forwarded_path {
            Some(path) => path.as_bytes(),
            None if client.raw_path().starts_with(b"/") => client.raw_path(),
            // An absolute-form target (`GET http://other/x`) goes on as its path and query,
            // so the request line cannot name another host.
            None => client
                .uri
                .path_and_query()
                .map_or(b"/".as_slice(), |pq| pq.as_str().as_bytes()),
        };
        write_request_line(buf, &client.method, path, Version::HTTP_11)?;
        write_field(buf, b"Host", &self.target.host_header);
        let credentials = self.target.upstream.authorization(self.now);
        let drop_authorization = credentials.is_some() || self.strip_client_auth;
        let named = connection_named(client);
        client.map(|name, value| {
            let name = match name {
                HeaderNameVariant::Case(name) => name.as_slice(),
                HeaderNameVariant::Titled(name) => name.as_bytes(),
            };
            let stays_behind = name.eq_ignore_ascii_case(HOST.as_str().as_bytes())
                || (drop_authorization
                    && name.eq_ignore_ascii_case(AUTHORIZATION.as_str().as_bytes()))
                || is_hop_by_hop(name, &named)
                || self
                    .hop_fields
                    .iter()
                    .any(|hop| name.eq_ignore_ascii_case(hop.as_str().as_bytes()));
            if !stays_behind {
                write_field(buf, name, value);
            }
            Ok(())
        })?;
        if let Some(value) = credentials {
            write_field(buf, b"Authorization", &value);
        }
        buf.put_slice(b"\r\n");
        Ok(())
    }
}

/// Writes one header field and its line end.
fn write_field(buf: &mut BytesMut, name: &[u8], value: &HeaderValue) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value.as_bytes());
    buf.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    use clap::Parser;

    use crate::config::cli::Cli;
    use crate::targets::TargetTable;

    /// The target of a tunnel configured by `env`.
    fn target(env: &[(&str, &str)]) -> Arc<Target> {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        let cli = Cli::parse_from(["prometheus-tunnel"]);
        let (loaded, material) = crate::material::load(&cli, &env).expect("configuration");
        let table = TargetTable::build(&loaded.tunnel, material.exporters).expect("targets");
        Arc::clone(table.default_target().expect("one target"))
    }

    /// A request as the exporter would parse it: its line, and its fields lower-cased, sorted.
    fn parsed(wire: &[u8]) -> (String, Vec<(String, String)>) {
        let text = String::from_utf8_lossy(wire);
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let mut fields: Vec<(String, String)> = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        fields.sort();
        (line, fields)
    }

    /// The rules stated with Pingora's header API, as an oracle: the client's header copied,
    /// hop-by-hop fields and `hop_fields` out, `Host`, path and credentials set.
    fn built(client: &RequestHeader, direct: &ScrapeRequest<'_>) -> Result<Box<RequestHeader>> {
        let mut req = Box::new(client.clone());
        req.set_version(Version::HTTP_11);
        strip_hop_by_hop(&mut req);
        for name in direct.hop_fields {
            req.remove_header(name);
        }
        req.insert_header(HOST, direct.target.host_header.clone())?;
        if let Some(path) = direct.forwarded_path {
            req.set_uri(path.parse().expect("a path"));
        } else if !req.raw_path().starts_with(b"/") {
            let path_only = req.uri.clone();
            req.set_uri(path_only);
        }
        if let Some(value) = direct.target.upstream.authorization(direct.now) {
            req.insert_header(AUTHORIZATION, value)?;
        } else if direct.strip_client_auth {
            req.remove_header(&AUTHORIZATION);
        }
        Ok(req)
    }

    #[test]
    fn the_direct_writer_sends_what_the_built_request_would() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("token file");
        let token = token.to_str().expect("utf-8 path");
        let plain = target(&[("SERVER_IP", "10.0.0.7"), ("SERVER_PORT", "9100")]);
        let with_token = target(&[
            ("SERVER_IP", "10.0.0.7"),
            ("SERVER_PORT", "9100"),
            ("BEARER_TOKEN_FILE", token),
        ]);
        let clients = [
            request(&[("Accept", "text/plain"), ("Accept-Encoding", "gzip")]),
            request(&[
                ("Host", "tunnel:8080"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("TE", "trailers"),
                ("Authorization", "Basic cHJvbTpz"),
                ("X-Prometheus-Scrape-Timeout-Seconds", "10"),
                ("Prometheus-Tunnel-Target", "vm-1"),
            ]),
        ];
        let agent_hop = [HeaderName::from_static("prometheus-tunnel-target")];
        let absolute =
            RequestHeader::build("GET", b"http://other:9100/x?y=1", None).expect("request");
        let clients = [clients[0].clone(), clients[1].clone(), absolute];
        let now = Instant::now();
        for target in [&plain, &with_token] {
            for client in &clients {
                for (forwarded_path, strip_client_auth, hop_fields) in [
                    (None, false, &[][..]),
                    (None, true, &[][..]),
                    (Some("/metrics?x=1"), false, &[][..]),
                    (Some("/metrics?x=1"), false, &agent_hop[..]),
                ] {
                    let direct = ScrapeRequest {
                        target,
                        forwarded_path,
                        now,
                        strip_client_auth,
                        hop_fields,
                    };
                    let built = |c: &RequestHeader| built(c, &direct);
                    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                    built.write(client, &mut a).expect("built");
                    direct.write(client, &mut b).expect("direct");
                    assert_eq!(
                        parsed(&a),
                        parsed(&b),
                        "{forwarded_path:?} {strip_client_auth}"
                    );
                    assert!(b.ends_with(b"\r\n\r\n"));
                }
            }
        }
        // And what they both send, once spelled out.
        let mut wire = BytesMut::new();
        let direct = ScrapeRequest {
            target: &with_token,
            forwarded_path: None,
            now,
            strip_client_auth: false,
            hop_fields: &agent_hop,
        };
        direct.write(&clients[1], &mut wire).expect("direct");
        let text = String::from_utf8_lossy(&wire);
        assert!(text.contains("\r\nHost: 10.0.0.7:9100\r\n"), "{text}");
        let (line, fields) = parsed(&wire);
        assert_eq!(line, "GET /metrics HTTP/1.1");
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "host",
                "x-prometheus-scrape-timeout-seconds"
            ]
        );
        assert_eq!(fields[0].1, "Bearer s3cret");
        assert_eq!(fields[1].1, "10.0.0.7:9100");
    }

    fn request(headers: &[(&'static str, &'static str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/metrics", None).expect("request");
        for (name, value) in headers {
            req.append_header(*name, *value).expect("header");
        }
        req
    }

    fn names(req: &RequestHeader) -> Vec<String> {
        req.headers.keys().map(|n| n.as_str().to_string()).collect()
    }

    #[test]
    fn a_scrapes_headers_pass_and_hop_by_hop_ones_stay_behind() {
        let scrape = [
            ("Accept", "application/openmetrics-text"),
            ("Accept-Encoding", "gzip"),
            ("X-Prometheus-Scrape-Timeout-Seconds", "10"),
        ];
        let mut req = request(&scrape);
        strip_hop_by_hop(&mut req);
        assert_eq!(
            names(&req),
            [
                "accept",
                "accept-encoding",
                "x-prometheus-scrape-timeout-seconds"
            ]
        );

        // Without `Connection`, each standard one is still found.
        for hop in [
            "Keep-Alive",
            "TE",
            "Upgrade",
            "Proxy-Authorization",
            "Trailer",
        ] {
            let mut req = request(&[("Accept", "text/plain"), (hop, "x")]);
            strip_hop_by_hop(&mut req);
            assert_eq!(names(&req), ["accept"], "{hop}");
        }

        // With it, what it names goes too.
        let mut req = request(&[
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Accept", "text/plain"),
        ]);
        strip_hop_by_hop(&mut req);
        assert_eq!(names(&req), ["accept"]);
    }
}
