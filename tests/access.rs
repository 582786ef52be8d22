//! Who may scrape through the tunnel: client CIDRs (403), credentials (401), TLS with client
//! certificates on the proxy port. Refusals are counted and never forwarded.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::pki::Pki;
use common::pushprox::read_response;
use common::upstream::Exporter;
use common::{agent, exporter_page, get, request, require_tool, write_file, Tunnel};

#[test]
fn client_cidrs_outside_the_list_get_403() {
    let exporter = Exporter::start(exporter_page(100));
    let denied = Tunnel::start(
        exporter.port,
        &[("CLIENT_ALLOWED_CIDRS", "10.0.0.0/8, fd00::/8")],
    );
    let answer = get(&denied.url("/metrics"));
    assert_eq!(answer.status, 403);
    let m = denied.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "403")]),
        1.0
    );
    assert!(
        exporter.seen().is_empty(),
        "a refused request was forwarded"
    );

    let allowed = Tunnel::start(
        exporter.port,
        &[("CLIENT_ALLOWED_CIDRS", "10.0.0.0/8,127.0.0.0/8")],
    );
    assert_eq!(get(&allowed.url("/metrics")).status, 200);
    assert_eq!(exporter.seen().len(), 1);
}

/// An exporter, and a tunnel in front of it that asks clients for the bearer token
/// `tunnel-secret` (its file in the directory returned).
fn bearer_tunnel() -> (tempfile::TempDir, Exporter, Tunnel) {
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "client-token", "tunnel-secret\n");
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(
        exporter.port,
        &[("CLIENT_BEARER_TOKEN_FILE", token.to_str().unwrap())],
    );
    (dir, exporter, tunnel)
}

#[test]
fn client_bearer_token_is_required_and_not_forwarded() {
    let (_dir, exporter, tunnel) = bearer_tunnel();
    let client = agent();

    let missing = request(&client, "GET", &tunnel.url("/metrics"), &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"prometheus-tunnel\"")
    );
    let wrong = request(
        &client,
        "GET",
        &tunnel.url("/metrics"),
        &[("Authorization", "Bearer tunnel-secreT")],
    );
    assert_eq!(wrong.status, 401);
    assert!(
        exporter.seen().is_empty(),
        "a refused request was forwarded"
    );

    let right = request(
        &client,
        "GET",
        &tunnel.url("/metrics"),
        &[("Authorization", "Bearer tunnel-secret")],
    );
    assert_eq!(right.status, 200);
    let seen = exporter.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the tunnel's credentials reached the exporter"
    );

    let m = tunnel.metrics_after(3);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "401")]),
        2.0
    );
    assert!(
        !tunnel.log().contains("tunnel-secret"),
        "the token reached the log"
    );
}

#[test]
fn every_request_on_a_kept_alive_connection_is_checked_repeated_or_not() {
    // A connection's last request header is used again when the next request is the same
    // bytes (src/listener/last_request.rs): the checks must still run on each.
    let (_dir, exporter, tunnel) = bearer_tunnel();
    let stream = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answers = BufReader::new(&stream);
    let scrape = |token: &str| {
        format!("GET /metrics HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n")
    };
    let mut statuses = Vec::new();
    for token in [
        "wrong",
        "wrong",
        "tunnel-secret",
        "tunnel-secret",
        "wrong",
        "tunnel-secret",
    ] {
        (&stream)
            .write_all(scrape(token).as_bytes())
            .expect("send on the kept connection");
        let answer = read_response(&mut answers, false).expect("an answer");
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [401, 401, 200, 200, 401, 200]);
    assert_eq!(
        exporter.seen().len(),
        3,
        "only the right ones were forwarded"
    );
    let m = tunnel.metrics_after(6);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "401")]),
        3.0
    );
}

#[test]
fn client_basic_auth_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let password = write_file(dir.path(), "client-password", "hunter2\n");
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(
        exporter.port,
        &[
            ("CLIENT_BASIC_AUTH_USERNAME", "prometheus"),
            (
                "CLIENT_BASIC_AUTH_PASSWORD_FILE",
                password.to_str().unwrap(),
            ),
        ],
    );
    let client = agent();
    assert_eq!(
        request(&client, "GET", &tunnel.url("/metrics"), &[]).status,
        401
    );
    // base64("prometheus:hunter2")
    let good = [("Authorization", "Basic cHJvbWV0aGV1czpodW50ZXIy")];
    assert_eq!(
        request(&client, "GET", &tunnel.url("/metrics"), &good).status,
        200
    );
    let bad = [("Authorization", "Basic cHJvbWV0aGV1czpodW50ZXIz")];
    assert_eq!(
        request(&client, "GET", &tunnel.url("/metrics"), &bad).status,
        401
    );
    assert_eq!(exporter.seen().len(), 1);
}

#[test]
fn tls_on_the_proxy_port_with_client_certificates() {
    let curl = require_tool("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(30_000);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(
        exporter.port,
        &[
            ("LISTEN_TLS_CERT_FILE", &pki.path("server.crt")),
            ("LISTEN_TLS_KEY_FILE", &pki.path("server.key")),
            ("LISTEN_TLS_CLIENT_CA_FILE", &pki.path("client-ca.crt")),
        ],
    );
    let url = format!("https://localhost:{}/metrics", tunnel.proxy_port);
    let out_file = dir.path().join("body");
    let with_cert = Command::new(&curl)
        .args([
            "-sS",
            "--fail",
            "--resolve",
            &format!("localhost:{}:127.0.0.1", tunnel.proxy_port),
        ])
        .args([
            "--cacert",
            &pki.path("ca.crt"),
            "--cert",
            &pki.path("client.crt"),
            "--key",
            &pki.path("client.key"),
        ])
        .args(["-o", out_file.to_str().unwrap(), &url])
        .output()
        .expect("run curl");
    assert!(
        with_cert.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&with_cert.stderr),
        tunnel.log()
    );
    assert!(
        std::fs::read(&out_file).unwrap() == page,
        "body differs over TLS"
    );

    let without_cert = Command::new(&curl)
        .args([
            "-sS",
            "--fail",
            "--resolve",
            &format!("localhost:{}:127.0.0.1", tunnel.proxy_port),
        ])
        .args(["--cacert", &pki.path("ca.crt"), "-o", "/dev/null", &url])
        .output()
        .expect("run curl");
    assert!(
        !without_cert.status.success(),
        "a client without a certificate was served"
    );

    // Plain HTTP on the TLS port is not served either.
    let plain = ureq::get(&format!("http://127.0.0.1:{}/metrics", tunnel.proxy_port))
        .timeout(std::time::Duration::from_secs(3))
        .call();
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port");
    assert_eq!(
        exporter.seen().len(),
        1,
        "only the client with a certificate reached the exporter"
    );
}

#[test]
fn no_log_level_writes_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let client_password = write_file(dir.path(), "client-password", "client-pass-7q\n");
    let exporter_token = write_file(dir.path(), "exporter-token", "exporter-token-9z\n");
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(
        exporter.port,
        &[
            ("RUST_LOG", "trace"),
            ("CLIENT_BASIC_AUTH_USERNAME", "prometheus"),
            (
                "CLIENT_BASIC_AUTH_PASSWORD_FILE",
                client_password.to_str().unwrap(),
            ),
            ("BEARER_TOKEN_FILE", exporter_token.to_str().unwrap()),
        ],
    );
    // "prometheus:client-pass-7q" in base64.
    let client_basic = "cHJvbWV0aGV1czpjbGllbnQtcGFzcy03cQ==";
    let client = agent();
    let answer = request(
        &client,
        "GET",
        &tunnel.url("/metrics"),
        &[
            ("Authorization", &format!("Basic {client_basic}")),
            ("Cookie", "session=cookie-secret-4k"),
        ],
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        exporter.seen()[0].header("authorization"),
        Some("Bearer exporter-token-9z"),
        "the exporter got its credentials"
    );
    let log = tunnel.log_with("Writing request header");
    assert!(
        log.contains("Writing request header"),
        "trace lines were written: {log}"
    );
    for secret in [
        "client-pass-7q",
        client_basic,
        "exporter-token-9z",
        "cookie-secret-4k",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    assert!(log.contains("uthorization: ***"), "{log}");
}
