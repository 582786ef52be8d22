//! A PushProx client for the reverse-mode tests, written from PushProx's client
//! (`cmd/client/main.go`, v0.1 and v0.2) and the Go library calls it makes, byte for byte:
//! - it polls with `POST /poll`, its name the body, as Go's `http.Client.Post` writes it;
//! - it reads the poll's answer body as a request (`http.ReadRequest`), whatever the status,
//!   and backs off 1 s, growing by half to 5 s, when it cannot;
//! - it polls again at once after a request, and scrapes in a thread of its own;
//! - a scrape needs `X-Prometheus-Scrape-Timeout-Seconds` and a host equal to its name (else
//!   it pushes a failure), takes `_scheme=https` as the scheme, and goes to the exporter as the
//!   request says; its answer is pushed as Go's `Response.Write` writes it (the framing header
//!   first, the others sorted, `Id` and `X-Prometheus-Scrape-Timeout` among them, a body of
//!   unknown length chunked), a failure as `HTTP/0.0 500 Internal Server Error` with the
//!   message as the body;
//! - the push is `POST /push` with `Content-Length`; its answer is not looked at.
//!
//! The only liberty: names resolve to `resolve_to` (a test has no DNS for `node-a`), as
//! `curl --resolve` would do it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A connection to the tunnel: plain TCP or TLS over it.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// TLS to the poll port: the CA of its certificate, and a client certificate.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Trusts `ca` (PEM) and presents `cert` with `key` (PEM files).
    pub fn new(ca: &str, cert: Option<(&str, &str)>) -> ClientTls {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca).expect("read CA");
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.expect("CA certificate")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some((cert, key)) => {
                let chain = rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client certificate");
                let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
                    .expect("client key")
                    .expect("a key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        ClientTls {
            config: Arc::new(config),
        }
    }
}

/// How the client is set up.
#[derive(Clone)]
pub struct Options {
    /// `--fqdn`.
    pub fqdn: String,
    /// Where `--proxy-url` points: the poll port, or a load balancer in front of it.
    pub proxy: SocketAddr,
    /// TLS to it.
    pub tls: Option<ClientTls>,
    /// Where names resolve to.
    pub resolve_to: IpAddr,
    /// Waits this long after a scrape before pushing it (a slow network).
    pub push_delay: Duration,
}

impl Options {
    /// A client named `fqdn` polling `proxy` in plain HTTP.
    pub fn new(fqdn: &str, proxy: SocketAddr) -> Options {
        Options {
            fqdn: fqdn.to_string(),
            proxy,
            tls: None,
            resolve_to: IpAddr::V4(Ipv4Addr::LOCALHOST),
            push_delay: Duration::ZERO,
        }
    }
}

/// What the client did, for assertions.
#[derive(Default)]
pub struct Counts {
    pub polls: AtomicUsize,
    pub poll_errors: AtomicUsize,
    pub requests: AtomicUsize,
    pub keepalives: AtomicUsize,
    pub scrapes: AtomicUsize,
    pub failed_scrapes: AtomicUsize,
    pub pushes: AtomicUsize,
    /// The statuses of the tunnel's answers to pushes.
    pub push_statuses: Mutex<Vec<u16>>,
}

struct Shared {
    options: Options,
    stop: AtomicBool,
    counts: Counts,
    /// The open poll connection, to cut it when the client is killed.
    poll_socket: Mutex<Option<TcpStream>>,
    /// Scrapes in progress hold off their push while this is set.
    hold_pushes: AtomicBool,
    /// Idle connections to the tunnel for pushes, and to exporters, as Go's transport keeps
    /// them (`MaxIdleConns: 100`).
    idle_pushes: Mutex<Vec<Box<dyn Conn>>>,
    idle_exporters: Mutex<Vec<(SocketAddr, TcpStream)>>,
}

/// Idle connections kept, as Go's `MaxIdleConns`.
const MAX_IDLE: usize = 100;

/// A running client; killed when dropped.
pub struct PushProxClient {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl PushProxClient {
    /// Starts polling.
    pub fn start(options: Options) -> PushProxClient {
        let shared = Arc::new(Shared {
            options,
            stop: AtomicBool::new(false),
            counts: Counts::default(),
            poll_socket: Mutex::new(None),
            hold_pushes: AtomicBool::new(false),
            idle_pushes: Mutex::new(Vec::new()),
            idle_exporters: Mutex::new(Vec::new()),
        });
        let loop_shared = Arc::clone(&shared);
        let thread = thread::spawn(move || poll_loop(&loop_shared));
        PushProxClient {
            shared,
            thread: Some(thread),
        }
    }

    /// What it did so far.
    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// Scrapes finish but do not push until [`PushProxClient::release_pushes`].
    pub fn hold_pushes(&self) {
        self.shared.hold_pushes.store(true, Ordering::SeqCst);
    }

    /// Lets held pushes go.
    pub fn release_pushes(&self) {
        self.shared.hold_pushes.store(false, Ordering::SeqCst);
    }

    /// Kills the client as `kill -9` would: its poll connection closes at once, nothing more
    /// is pushed.
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(socket) = self.shared.poll_socket.lock().unwrap().take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Waits until `done` holds of the counts, for at most `limit`.
    pub fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Counts) -> bool) {
        let start = Instant::now();
        while !done(self.counts()) {
            assert!(
                start.elapsed() < limit,
                "the client: {what} not within {limit:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PushProxClient {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connection to the proxy URL, TLS if configured; the TCP socket is kept for shutdown.
fn connect(options: &Options) -> std::io::Result<(Box<dyn Conn>, TcpStream)> {
    let tcp = TcpStream::connect_timeout(&options.proxy, Duration::from_secs(5))?;
    tcp.set_nodelay(true)?;
    let socket = tcp.try_clone()?;
    match &options.tls {
        None => Ok((Box::new(tcp), socket)),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let conn = rustls::ClientConnection::new(Arc::clone(&tls.config), name)
                .map_err(std::io::Error::other)?;
            Ok((Box::new(rustls::StreamOwned::new(conn, tcp)), socket))
        }
    }
}

/// `POST path` as Go's client writes it for `client.Post(url, "", body)` (or with a known
/// `ContentLength`, for the push).
fn post(options: &Options, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\n",
        options.proxy,
        body.len()
    )
    .into_bytes();
    if path == "/poll" {
        out.extend_from_slice(b"Content-Type: \r\n");
    }
    out.extend_from_slice(b"Accept-Encoding: gzip\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// A response as Go's client reads it: status, headers (lower-case names), body, and whether
/// the connection may carry another request.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub reusable: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response: `Content-Length`, chunked, or to the end of the connection.
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> std::io::Result<Response> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        // Go's transport skips informational answers.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v): &(String, String)| v.clone())
        };
        let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = Vec::new();
        let mut reusable = !close;
        if head_only || status == 204 || status == 304 {
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if n == 0 {
                    let mut end = String::new();
                    reader.read_line(&mut end)?;
                    break;
                }
                let mut chunk = vec![0; n];
                reader.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk);
                let mut crlf = [0; 2];
                reader.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
            reusable = false;
        }
        return Ok(Response {
            status,
            headers,
            body,
            reusable,
        });
    }
}

/// A request as `http.ReadRequest` parses it.
pub struct ScrapeRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl ScrapeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a poll answer's body as a request, or says why not.
pub fn parse_request(body: &[u8]) -> Result<ScrapeRequest, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (Some(method), Some(url), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed HTTP request {first:?}"));
    };
    if !proto.starts_with("HTTP/1.") || method.is_empty() {
        return Err(format!("malformed HTTP request {first:?}"));
    }
    let mut headers = Vec::new();
    let mut ended = false;
    for line in lines {
        if line.is_empty() {
            ended = true;
            break;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed MIME header line {line:?}"))?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    if !ended {
        return Err("unexpected EOF".into());
    }
    Ok(ScrapeRequest {
        method: method.to_string(),
        url: url.to_string(),
        headers,
    })
}

fn poll_loop(shared: &Arc<Shared>) {
    let options = &shared.options;
    let mut backoff = Duration::from_secs(1);
    let mut kept: Option<(Box<dyn Conn>, TcpStream)> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let result = (|| -> Result<ScrapeRequest, String> {
            let (mut conn, socket) = match kept.take() {
                Some(kept) => kept,
                None => connect(options).map_err(|e| format!("error polling: {e}"))?,
            };
            *shared.poll_socket.lock().unwrap() =
                Some(socket.try_clone().map_err(|e| e.to_string())?);
            shared.counts.polls.fetch_add(1, Ordering::SeqCst);
            conn.write_all(&post(options, "/poll", options.fqdn.as_bytes()))
                .map_err(|e| format!("error polling: {e}"))?;
            let mut reader = BufReader::new(conn);
            let response =
                read_response(&mut reader, false).map_err(|e| format!("error polling: {e}"))?;
            if response.reusable && reader.buffer().is_empty() {
                kept = Some((reader.into_inner(), socket));
            }
            // The status is not looked at: the body is read as a request.
            parse_request(&response.body).map_err(|e| format!("error reading request: {e}"))
        })();
        match result {
            Ok(request) => {
                backoff = Duration::from_secs(1);
                shared.counts.requests.fetch_add(1, Ordering::SeqCst);
                let scrape_shared = Arc::clone(shared);
                thread::spawn(move || scrape(&scrape_shared, request));
            }
            Err(_) => {
                shared.counts.poll_errors.fetch_add(1, Ordering::SeqCst);
                kept = None;
                let until = Instant::now() + backoff;
                while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff.mul_f64(1.5)).min(Duration::from_secs(5));
            }
        }
    }
}

/// doScrape: the request to the exporter, its answer pushed.
fn scrape(shared: &Shared, request: ScrapeRequest) {
    let options = &shared.options;
    let id = request.header("id").unwrap_or("").to_string();
    let timeout = match request
        .header("X-Prometheus-Scrape-Timeout-Seconds")
        .map(|v| v.parse::<f64>())
    {
        Some(Ok(secs)) => Duration::from_secs_f64(secs.max(0.0)),
        _ => {
            let msg = "strconv.ParseFloat: parsing \"\": invalid syntax".to_string();
            return push_failure(shared, &id, Instant::now(), &msg);
        }
    };
    let deadline = Instant::now() + timeout;
    let (mut scheme, rest) = request
        .url
        .split_once("://")
        .unwrap_or(("http", &request.url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut path = path.to_string();
    if path.contains("_scheme=https") {
        scheme = "https";
        path = path
            .replace("&_scheme=https", "")
            .replace("_scheme=https&", "")
            .replace("?_scheme=https", "");
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if host != options.fqdn {
        if host == "keepalive.prometheus-tunnel.invalid" {
            shared.counts.keepalives.fetch_add(1, Ordering::SeqCst);
        }
        return push_failure(
            shared,
            &id,
            deadline,
            "scrape target doesn't match client fqdn",
        );
    }
    if scheme != "http" {
        return push_failure(
            shared,
            &id,
            deadline,
            "https is not supported by the test client",
        );
    }
    let port: u16 = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80);
    let exporter = SocketAddr::new(options.resolve_to, port);
    let reused = std::cell::Cell::new(false);
    let attempt = |reuse: bool| -> std::io::Result<Response> {
        let idle = reuse
            .then(|| {
                let mut idle = shared.idle_exporters.lock().unwrap();
                idle.iter()
                    .position(|(addr, _)| *addr == exporter)
                    .map(|i| idle.swap_remove(i).1)
            })
            .flatten();
        reused.set(idle.is_some());
        let mut tcp = match idle {
            Some(tcp) => tcp,
            None => TcpStream::connect_timeout(&exporter, timeout)?,
        };
        tcp.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut out = format!(
            "{} {path} HTTP/1.1\r\nHost: {authority}\r\n",
            request.method
        );
        for (n, v) in &request.headers {
            if !n.eq_ignore_ascii_case("host") {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        out.push_str("\r\n");
        tcp.write_all(out.as_bytes())?;
        let mut reader = BufReader::new(tcp);
        let response = read_response(&mut reader, request.method == "HEAD")?;
        if response.reusable && reader.buffer().is_empty() {
            let mut idle = shared.idle_exporters.lock().unwrap();
            if idle.len() < MAX_IDLE {
                idle.push((exporter, reader.into_inner()));
            }
        }
        Ok(response)
    };
    // A kept-alive connection the exporter closed while it was idle fails before any answer:
    // Go's transport, which PushProx's client uses, tries such a request again on a new one.
    let answer = match attempt(true) {
        Err(_) if reused.get() => attempt(false),
        answer => answer,
    };
    match answer {
        Ok(response) => {
            shared.counts.scrapes.fetch_add(1, Ordering::SeqCst);
            let wire = response_write(&response, &id, deadline);
            push(shared, &wire);
        }
        Err(e) => {
            let msg = format!("failed to scrape {}: {e}", request.url);
            push_failure(shared, &id, deadline, &msg);
        }
    }
}

/// Canonical header key, as Go's `textproto.CanonicalMIMEHeaderKey` writes it.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// `resp.Write`: the status line, the framing header, the other headers sorted, the body
/// (chunked when its length is unknown).
fn response_write(response: &Response, id: &str, deadline: Instant) -> Vec<u8> {
    let reason = match response.status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", response.status).into_bytes();
    let known_length = response.header("content-length").is_some();
    if known_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", response.body.len()).as_bytes());
    } else {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "content-length" | "transfer-encoding" | "trailer"
            )
        })
        .map(|(n, v)| (canonical(n), v.clone()))
        .collect();
    headers.push(("Id".into(), id.to_string()));
    headers.push(("X-Prometheus-Scrape-Timeout".into(), format!("{left:.6}")));
    headers.sort();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if known_length {
        out.extend_from_slice(&response.body);
    } else {
        // Go copies the body in 32 KiB pieces, each a chunk.
        for chunk in response.body.chunks(32 * 1024) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

/// handleErr: a made-up `HTTP/0.0 500` response with the message as its body.
fn push_failure(shared: &Shared, id: &str, deadline: Instant, message: &str) {
    shared.counts.failed_scrapes.fetch_add(1, Ordering::SeqCst);
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    let wire = format!(
        "HTTP/0.0 500 Internal Server Error\r\nId: {id}\r\nX-Prometheus-Scrape-Timeout: {left:.6}\r\n\r\n{message}"
    );
    push(shared, wire.as_bytes());
}

/// doPush: `POST /push`, the answer's status kept for the tests.
fn push(shared: &Shared, wire: &[u8]) {
    let options = &shared.options;
    if !options.push_delay.is_zero() {
        thread::sleep(options.push_delay);
    }
    while shared.hold_pushes.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(10));
    }
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    let status = (|| -> std::io::Result<u16> {
        let kept = shared.idle_pushes.lock().unwrap().pop();
        let (mut conn, reused) = match kept {
            Some(conn) => (conn, true),
            None => (connect(options)?.0, false),
        };
        let request = post(options, "/push", wire);
        // A kept connection the tunnel closed meanwhile fails before any answer: Go's
        // transport then retries on a new one.
        let answered = conn.write_all(&request).and_then(|()| {
            let mut reader = BufReader::new(conn);
            let response = read_response(&mut reader, false)?;
            Ok((response, reader))
        });
        let (response, reader) = match answered {
            Ok(answered) => answered,
            Err(_) if reused => {
                let (mut conn, _) = connect(options)?;
                conn.write_all(&request)?;
                let mut reader = BufReader::new(conn);
                let response = read_response(&mut reader, false)?;
                (response, reader)
            }
            Err(e) => return Err(e),
        };
        if response.reusable && reader.buffer().is_empty() {
            let mut idle = shared.idle_pushes.lock().unwrap();
            if idle.len() < MAX_IDLE {
                idle.push(reader.into_inner());
            }
        }
        Ok(response.status)
    })();
    shared.counts.pushes.fetch_add(1, Ordering::SeqCst);
    shared
        .counts
        .push_statuses
        .lock()
        .unwrap()
        .push(status.unwrap_or(0));
}
