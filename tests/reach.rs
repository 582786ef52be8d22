//! Reaching exporters where they live, against real peers: an HTTPS exporter with a private CA
//! and one that demands a client certificate (certificates by `openssl`), `tinyproxy` as the
//! CONNECT proxy, `microsocks` as the SOCKS5 proxy, and credentials read from rotating files.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::proxies::{microsocks, tinyproxy};
use common::upstream::Exporter;
use common::{
    base_command, exporter_page, free_port, get, require_tool, write_file, Helper, Tunnel,
};

/// Starts the Python HTTPS exporter with `cert`/`key`, serving `page`; with `client_ca` it
/// requires a client certificate. Returns it and its port.
fn https_exporter(pki: &Pki, cert: &str, page: &Path, client_ca: Option<&str>) -> (Helper, u16) {
    let python = require_tool("python3", "python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tls_exporter.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(pki.path(&format!("{cert}.crt")))
        .arg(pki.path(&format!("{cert}.key")))
        .arg(page);
    if let Some(ca) = client_ca {
        cmd.arg(pki.path(ca));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the HTTPS exporter");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("HTTPS exporter port");
    let port: u16 = line.trim().parse().expect("a port number");
    (Helper(child), port)
}

fn page_file(dir: &Path, page: &[u8]) -> std::path::PathBuf {
    let path = dir.join("page.txt");
    std::fs::write(&path, page).unwrap();
    path
}

// === TLS ===

#[test]
fn https_exporter_with_a_private_ca_passes_with_the_ca_and_fails_without() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(60 * 1024);
    let (_exporter, port) = https_exporter(&pki, "server", &page_file(dir.path(), &page), None);

    let ca = pki.path("ca.crt");
    let trusted = Tunnel::start(port, &[("SERVER_SCHEME", "https"), ("TLS_CA_FILE", &ca)]);
    let answer = get(&trusted.url("/metrics"));
    assert_eq!(answer.status, 200, "{}", trusted.log());
    assert!(answer.body == page, "body differs through TLS");

    // By name too: the certificate holds DNS:localhost.
    let by_name = Tunnel::start(
        port,
        &[
            ("SERVER_IP", "localhost"),
            ("SERVER_SCHEME", "https"),
            ("TLS_CA_FILE", &ca),
        ],
    );
    assert_eq!(
        get(&by_name.url("/metrics")).status,
        200,
        "{}",
        by_name.log()
    );

    // Without the CA (system roots only) the handshake fails: 502, counted as tls, logged why.
    let untrusting = Tunnel::start(port, &[("SERVER_SCHEME", "https")]);
    assert_eq!(get(&untrusting.url("/metrics")).status, 502);
    let m = untrusting.metrics_after(1);
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "tls")]),
        1.0
    );
    let log = untrusting.log_with("UnknownIssuer");
    assert!(log.contains("UnknownIssuer"), "log does not say why: {log}");
}

#[test]
fn wrong_name_fails_and_insecure_skip_verify_passes_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(1000);
    let (_exporter, port) = https_exporter(&pki, "server", &page_file(dir.path(), &page), None);
    let ca = pki.path("ca.crt");

    let mismatch = Tunnel::start(
        port,
        &[
            ("SERVER_SCHEME", "https"),
            ("TLS_CA_FILE", &ca),
            ("TLS_SERVER_NAME", "exporter.example.com"),
        ],
    );
    assert_eq!(get(&mismatch.url("/metrics")).status, 502);
    let log = mismatch.log_with("not valid for name");
    assert!(
        log.contains("certificate not valid for name \"exporter.example.com\""),
        "log does not say why: {log}"
    );

    // An untrusted CA, but verification is off: it passes, and the start-up log says so.
    let (_other, other_port) = https_exporter(
        &pki,
        "untrusted-server",
        &page_file(dir.path(), &page),
        None,
    );
    let insecure = Tunnel::start(
        other_port,
        &[
            ("SERVER_SCHEME", "https"),
            ("TLS_INSECURE_SKIP_VERIFY", "true"),
        ],
    );
    let answer = get(&insecure.url("/metrics"));
    assert_eq!(answer.status, 200, "{}", insecure.log());
    assert!(answer.body == page);
    assert!(
        insecure.log().contains("TLS_INSECURE_SKIP_VERIFY"),
        "{}",
        insecure.log()
    );
}

#[test]
fn expired_exporter_certificate_is_502_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let (_exporter, port) = https_exporter(
        &pki,
        "expired-server",
        &page_file(dir.path(), b"x 1\n"),
        None,
    );
    let tunnel = Tunnel::start(
        port,
        &[
            ("SERVER_SCHEME", "https"),
            ("TLS_CA_FILE", &pki.path("ca.crt")),
        ],
    );
    assert_eq!(get(&tunnel.url("/metrics")).status, 502);
    let log = tunnel.log_with("invalid peer certificate: Expired");
    assert!(
        log.contains("invalid peer certificate: Expired"),
        "log does not say why: {log}"
    );
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "tls")]),
        1.0
    );
}

#[test]
fn mutual_tls_passes_with_the_client_certificate_and_fails_without() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(5000);
    let (_exporter, port) = https_exporter(
        &pki,
        "server",
        &page_file(dir.path(), &page),
        Some("client-ca.crt"),
    );
    let ca = pki.path("ca.crt");
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));

    let with_cert = Tunnel::start(
        port,
        &[
            ("SERVER_SCHEME", "https"),
            ("TLS_CA_FILE", &ca),
            ("TLS_CERT_FILE", &cert),
            ("TLS_KEY_FILE", &key),
        ],
    );
    let answer = get(&with_cert.url("/metrics"));
    assert_eq!(answer.status, 200, "{}", with_cert.log());
    assert!(answer.body == page);

    let without = Tunnel::start(port, &[("SERVER_SCHEME", "https"), ("TLS_CA_FILE", &ca)]);
    assert_eq!(get(&without.url("/metrics")).status, 502);
}

// === forward proxies ===

#[test]
fn connect_proxy_carries_the_scrape_and_its_loss_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let page = exporter_page(60 * 1024);
    let exporter = Exporter::start(page.clone());
    let (mut proxy, proxy_port) = tinyproxy(dir.path(), None);
    let url = format!("http://127.0.0.1:{proxy_port}");
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_PROXY", &url)]);

    let answer = get(&tunnel.url("/metrics?x=1"));
    assert_eq!(answer.status, 200, "{}", tunnel.log());
    assert!(
        answer.body == page,
        "body differs through the CONNECT proxy"
    );
    assert_eq!(exporter.seen()[0].target, "/metrics?x=1");
    // Later scrapes reuse the tunnel through the proxy (Pingora checks a pooled connection's
    // peer address before reuse, which through a proxy is the proxy's).
    for _ in 0..4 {
        assert_eq!(get(&tunnel.url("/metrics")).status, 200);
    }
    assert_eq!(
        exporter.connections(),
        1,
        "each scrape opened a new tunnel through the proxy"
    );

    proxy.stop();
    assert_eq!(
        get(&tunnel.url("/metrics")).status,
        502,
        "the scrape did not go through the proxy"
    );
    let m = tunnel.metrics_after(6);
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "proxy")]),
        1.0
    );
    let log = tunnel.log_with("cannot connect to the proxy");
    assert!(log.contains("cannot connect to the proxy"), "{log}");
}

#[test]
fn https_exporter_through_the_connect_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(20_000);
    let (_exporter, port) = https_exporter(&pki, "server", &page_file(dir.path(), &page), None);
    let (mut proxy, proxy_port) = tinyproxy(dir.path(), None);
    // The proxy by name: the tunnel resolves it and dials what it resolved.
    let url = format!("http://localhost:{proxy_port}");
    let tunnel = Tunnel::start(
        port,
        &[
            ("SERVER_IP", "localhost"),
            ("SERVER_SCHEME", "https"),
            ("TLS_CA_FILE", &pki.path("ca.crt")),
            ("UPSTREAM_PROXY", &url),
        ],
    );
    let answer = get(&tunnel.url("/metrics"));
    assert_eq!(answer.status, 200, "{}", tunnel.log());
    assert!(answer.body == page, "body differs through TLS over CONNECT");
    proxy.stop();
    assert_eq!(get(&tunnel.url("/metrics")).status, 502);
}

#[test]
fn connect_proxy_credentials_accepted_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(exporter_page(1000));
    let (_proxy, proxy_port) = tinyproxy(dir.path(), Some(("scraper", "s3cr3t")));

    let good = format!("http://scraper:s3cr3t@127.0.0.1:{proxy_port}");
    let accepted = Tunnel::start(exporter.port, &[("UPSTREAM_PROXY", &good)]);
    assert_eq!(
        get(&accepted.url("/metrics")).status,
        200,
        "{}",
        accepted.log()
    );

    let bad = format!("http://scraper:wrong@127.0.0.1:{proxy_port}");
    let refused = Tunnel::start(exporter.port, &[("UPSTREAM_PROXY", &bad)]);
    assert_eq!(get(&refused.url("/metrics")).status, 502);
    // tinyproxy answers 401 (not 407) to bad credentials; the log quotes whatever it said.
    let log = refused.log_with("to CONNECT");
    assert!(
        log.contains("it answered \"HTTP/1.0 401 Unauthorized\" to CONNECT"),
        "log does not name the proxy's answer: {log}"
    );
    assert!(
        !log.contains("wrong"),
        "the proxy password reached the log: {log}"
    );
    assert_eq!(
        exporter.seen().len(),
        1,
        "the refused scrape reached the exporter"
    );
}

#[test]
fn socks5_proxy_carries_the_scrape_and_its_loss_fails_it() {
    let page = exporter_page(60 * 1024);
    let exporter = Exporter::start(page.clone());
    for scheme in ["socks5", "socks5h"] {
        let (mut proxy, proxy_port) = microsocks(None);
        let url = format!("{scheme}://127.0.0.1:{proxy_port}");
        // By name, so socks5h really hands the name to the proxy.
        let tunnel = Tunnel::start(
            exporter.port,
            &[("SERVER_IP", "localhost"), ("UPSTREAM_PROXY", &url)],
        );
        let connections_before = exporter.connections();
        let answer = get(&tunnel.url("/metrics"));
        assert_eq!(answer.status, 200, "{scheme}: {}", tunnel.log());
        assert!(answer.body == page, "{scheme}: body differs through SOCKS5");
        for _ in 0..4 {
            assert_eq!(get(&tunnel.url("/metrics")).status, 200);
        }
        assert_eq!(
            exporter.connections() - connections_before,
            1,
            "{scheme}: each scrape opened a new tunnel through the proxy"
        );
        proxy.stop();
        assert_eq!(
            get(&tunnel.url("/metrics")).status,
            502,
            "{scheme}: scrape bypassed the proxy"
        );
    }
}

#[test]
fn socks5_credentials_accepted_and_refused() {
    let exporter = Exporter::start(exporter_page(1000));
    let (_proxy, proxy_port) = microsocks(Some(("scraper", "s3cr3t")));
    let good = format!("socks5://scraper:s3cr3t@127.0.0.1:{proxy_port}");
    let accepted = Tunnel::start(exporter.port, &[("UPSTREAM_PROXY", &good)]);
    assert_eq!(
        get(&accepted.url("/metrics")).status,
        200,
        "{}",
        accepted.log()
    );

    let bad = format!("socks5://scraper:wrong@127.0.0.1:{proxy_port}");
    let refused = Tunnel::start(exporter.port, &[("UPSTREAM_PROXY", &bad)]);
    assert_eq!(get(&refused.url("/metrics")).status, 502);
    let log = refused.log_with("SOCKS5 answered");
    assert!(log.contains("SOCKS5 answered"), "{log}");
    assert!(
        !log.contains("wrong"),
        "the proxy password reached the log: {log}"
    );
}

#[test]
fn names_that_do_not_resolve_are_502_counted_as_dns_and_named_in_the_log() {
    // `.invalid` never resolves (RFC 2606).
    let cases = [
        (
            ("SERVER_IP", "no-such-exporter.invalid"),
            "exporter host no-such-exporter.invalid did not resolve",
        ),
        (
            ("UPSTREAM_PROXY", "http://no-such-proxy.invalid:3128"),
            "proxy host no-such-proxy.invalid did not resolve",
        ),
    ];
    for (setting, logged) in cases {
        let tunnel = Tunnel::start(common::closed_port(), &[setting]);
        assert_eq!(get(&tunnel.url("/metrics")).status, 502, "{setting:?}");
        let m = tunnel.metrics_after(1);
        assert_eq!(
            m.value("proxy_upstream_errors_total", &[("kind", "dns")]),
            1.0,
            "{setting:?}"
        );
        let log = tunnel.log_with("did not resolve");
        assert!(log.contains(logged), "{log}");
    }
}

#[test]
fn proxy_variables_are_honoured_as_curl_does() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(exporter_page(1000));
    let (mut proxy, proxy_port) = tinyproxy(dir.path(), None);
    let url = format!("http://127.0.0.1:{proxy_port}");

    let via_env = Tunnel::start(exporter.port, &[("http_proxy", &url)]);
    let exempt = Tunnel::start(
        exporter.port,
        &[("HTTP_PROXY", &url), ("NO_PROXY", "10.0.0.0/8,127.0.0.1")],
    );
    let direct = Tunnel::start(
        exporter.port,
        &[("ALL_PROXY", &url), ("UPSTREAM_PROXY", "")],
    );
    for t in [&via_env, &exempt, &direct] {
        assert_eq!(get(&t.url("/metrics")).status, 200, "{}", t.log());
    }
    proxy.stop();
    assert_eq!(
        get(&via_env.url("/metrics")).status,
        502,
        "http_proxy was not used"
    );
    assert_eq!(
        get(&exempt.url("/metrics")).status,
        200,
        "NO_PROXY was not honoured"
    );
    assert_eq!(
        get(&direct.url("/metrics")).status,
        200,
        "UPSTREAM_PROXY=\"\" did not disable the variables"
    );
}

// === credentials ===

/// Replaces `path`'s content the way Kubernetes rotates a mounted Secret: a new file renamed
/// over the old one.
fn rotate(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn rotated_bearer_token_is_picked_up_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "token", "first-token\n");
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(
        exporter.port,
        &[("BEARER_TOKEN_FILE", token.to_str().unwrap())],
    );

    assert_eq!(get(&tunnel.url("/metrics")).status, 200);
    assert_eq!(
        exporter.seen()[0].header("authorization"),
        Some("Bearer first-token")
    );

    rotate(&token, "second-token\n");
    let start = Instant::now();
    loop {
        assert_eq!(get(&tunnel.url("/metrics")).status, 200);
        let last = exporter
            .seen()
            .last()
            .and_then(|s| s.header("authorization").map(str::to_string));
        if last.as_deref() == Some("Bearer second-token") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "rotation not picked up: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !tunnel.log().contains("second-token"),
        "the token reached the log"
    );
}

#[test]
fn basic_auth_from_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let password = write_file(dir.path(), "password", "pa55\n");
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(
        exporter.port,
        &[
            ("BASIC_AUTH_USERNAME", "prom"),
            ("BASIC_AUTH_PASSWORD_FILE", password.to_str().unwrap()),
        ],
    );
    assert_eq!(get(&tunnel.url("/metrics")).status, 200);
    // base64("prom:pa55")
    assert_eq!(
        exporter.seen()[0].header("authorization"),
        Some("Basic cHJvbTpwYTU1")
    );
}

// === refusals at start-up ===

#[test]
fn bad_tls_proxy_and_credential_settings_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let not_pem = write_file(dir.path(), "not.pem", "hello\n");
    let empty = write_file(dir.path(), "empty", "");
    let (ca_crt, ca_key) = (pki.path("ca.crt"), pki.path("ca.key"));
    let client_crt = pki.path("client.crt");
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (
            vec![("SERVER_SCHEME", "https"), ("TLS_CA_FILE", missing)],
            format!("TLS_CA_FILE={missing:?}: expected a readable PEM file"),
        ),
        (
            vec![
                ("SERVER_SCHEME", "https"),
                ("TLS_CA_FILE", not_pem.to_str().unwrap()),
            ],
            "expected a PEM file with at least one CERTIFICATE block".into(),
        ),
        (
            vec![("SERVER_SCHEME", "https"), ("TLS_CERT_FILE", &client_crt)],
            "TLS_CERT_FILE=".to_string(),
        ),
        (
            vec![
                ("SERVER_SCHEME", "https"),
                ("TLS_CERT_FILE", &client_crt),
                ("TLS_KEY_FILE", &ca_key),
            ],
            "TLS_KEY_FILE=".to_string(),
        ),
        (
            vec![("TLS_CA_FILE", &ca_crt)],
            "expected SERVER_SCHEME=https".into(),
        ),
        (
            vec![("UPSTREAM_PROXY", "ftp://proxy:21")],
            "UPSTREAM_PROXY=\"ftp://proxy:21\": expected a proxy URL".into(),
        ),
        (
            vec![("HTTP_PROXY", "proxy.corp:3128")],
            "HTTP_PROXY=\"proxy.corp:3128\": expected a proxy URL".into(),
        ),
        (
            vec![("BEARER_TOKEN_FILE", missing)],
            format!("BEARER_TOKEN_FILE={missing:?}: expected a readable file"),
        ),
        (
            vec![("BEARER_TOKEN_FILE", empty.to_str().unwrap())],
            "expected a file holding a non-empty secret".into(),
        ),
        (
            vec![("BASIC_AUTH_USERNAME", "prom")],
            "BASIC_AUTH_USERNAME=\"prom\": expected BASIC_AUTH_PASSWORD_FILE".into(),
        ),
    ];
    for (env, expected) in cases {
        let out = base_command()
            .env("SERVER_IP", "127.0.0.1")
            .env("SERVER_PORT", "9100")
            .env("LISTEN_PORT", free_port().to_string())
            .env("METRICS_PORT", free_port().to_string())
            .envs(env.iter().copied())
            .output()
            .expect("run the tunnel");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{env:?}: no {expected:?} in {stderr}"
        );
    }
}
