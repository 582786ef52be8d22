//! Helpers shared by the integration tests: run the built tunnel on free loopback ports, talk
//! HTTP to it, and read its `/metrics` the way Prometheus does.

#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod pki;
pub mod prometheus;
pub mod proxies;
pub mod pushprox;
pub mod upstream;

use std::collections::HashMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The release build of this tree (what ships; `scripts/test.sh` builds it before the tests), or
/// another build named by `PROMETHEUS_TUNNEL_BIN`: for measurements that only mean something
/// for an optimised build, such as memory per connection.
pub fn release_bin() -> PathBuf {
    if let Some(other) = std::env::var_os("PROMETHEUS_TUNNEL_BIN") {
        return PathBuf::from(other);
    }
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/prometheus-tunnel");
    assert!(
        release.is_file(),
        "{} is missing: build it with `cargo build --release --locked` (scripts/test.sh does)",
        release.display()
    );
    release
}

/// The binary under test: this build's, or another build named by `PROMETHEUS_TUNNEL_BIN`
/// (to show that a test fails on the build before a fix).
pub fn bin() -> PathBuf {
    std::env::var_os("PROMETHEUS_TUNNEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_prometheus-tunnel")))
}

/// A port that was free a moment ago on 127.0.0.1, and not given out before by this test
/// process. The kernel may hand a port just released to the next bind: a test that asks for
/// two ports in a row (a `POLL_PORT`, then the tunnel's own) was seen given the same one twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A port on 127.0.0.1 where nothing listens, for an exporter that refuses. Not a port that
/// was free a moment ago: a test running in parallel may listen there by the time it is used
/// (a tunnel forwarding to another test's tunnel was seen doing that). Port 1 (tcpmux) is
/// outside the range free ports come from; the check says so if something listens there.
pub fn closed_port() -> u16 {
    let port = 1;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on 127.0.0.1:{port}; the tests need a port that refuses"
    );
    port
}

/// Waits until something accepts connections on `port`, or panics after `limit`.
pub fn wait_for_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "nothing listened on port {port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command that must be installed for a test; the test fails (never skips) without it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: run scripts/test.sh, or `apt-get install {package}`")
    })
}

/// A helper process (a proxy, an exporter) killed when the test ends, however it ends.
pub struct Helper(pub Child);

impl Helper {
    /// Stops it now (to prove traffic went through it).
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tunnel binary, started with a clean environment plus what the test sets.
pub struct Tunnel {
    child: Child,
    pub proxy_port: u16,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Tunnel {
    /// Starts the tunnel in front of the exporter at 127.0.0.1:`exporter_port` and waits for
    /// its metrics port (which opens after the proxy port).
    pub fn start(exporter_port: u16, env: &[(&str, &str)]) -> Tunnel {
        Self::start_with(exporter_port, env, &[])
    }

    /// As [`Tunnel::start`], with extra command-line arguments.
    pub fn start_with(exporter_port: u16, env: &[(&str, &str)], args: &[&str]) -> Tunnel {
        Self::launch(&bin(), Some(exporter_port), env, args)
    }

    /// As [`Tunnel::start`], through `binary` (a wrapper that sets limits, say).
    pub fn start_with_binary(binary: &Path, exporter_port: u16, env: &[(&str, &str)]) -> Tunnel {
        Self::launch(binary, Some(exporter_port), env, &[])
    }

    /// A tunnel without SERVER_IP: its exporters come from the conf file in `args`.
    pub fn start_without_exporter(env: &[(&str, &str)], args: &[&str]) -> Tunnel {
        Self::launch(&bin(), None, env, args)
    }

    fn launch(
        binary: &Path,
        exporter_port: Option<u16>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Tunnel {
        // Free ports are picked by binding and releasing them, so a test running in parallel
        // can pick the same one; the tunnel then refuses to start ("cannot listen") and is
        // started again on other ports.
        for _ in 0..5 {
            if let Some(tunnel) = Self::try_launch(binary, exporter_port, env, args) {
                return tunnel;
            }
        }
        panic!("the tunnel found its ports taken five times in a row");
    }

    /// Starts the tunnel and waits until it listens; `None` if its ports were taken.
    fn try_launch(
        binary: &Path,
        exporter_port: Option<u16>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Option<Tunnel> {
        let proxy_port = free_port();
        let metrics_port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("tunnel.log");
        let mut cmd = command(binary);
        if let Some(port) = exporter_port {
            cmd.env("SERVER_IP", "127.0.0.1")
                .env("SERVER_PORT", port.to_string());
        }
        cmd.env("LISTEN_ADDRESS", "127.0.0.1")
            .env("LISTEN_PORT", proxy_port.to_string())
            .env("METRICS_PORT", metrics_port.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the tunnel");
        let mut tunnel = Tunnel {
            child,
            proxy_port,
            metrics_port,
            dir,
            log,
        };
        let start = Instant::now();
        // Listening means: this process got past its port check (it logs "forwarding" after
        // it), it is still running, and its /readyz says the proxy port is bound (the metrics
        // port may open first).
        loop {
            if let Ok(Some(status)) = tunnel.child.try_wait() {
                let log = tunnel.log();
                if log.contains("cannot listen on") {
                    return None;
                }
                panic!("the tunnel exited with {status} before listening:\n{log}");
            }
            if tunnel.log().contains("forwarding ") && is_ready(metrics_port) {
                return Some(tunnel);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the tunnel did not listen within 20 s:\n{}",
                tunnel.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<proxy port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy_port)
    }

    /// `http://127.0.0.1:<metrics port><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.metrics_port)
    }

    /// The tunnel's `/metrics`, parsed.
    pub fn metrics(&self) -> Metrics {
        let body = get(&self.admin_url("/metrics")).body_string();
        Metrics::parse(&body)
    }

    /// The tunnel's `/metrics` once `proxy_total_requests` has reached `requests`. A request is
    /// counted just after its answer is sent, so a client can see the answer a moment before
    /// the count; this waits up to 15 s for it (a fresh-clone CI run on a machine also busy
    /// building saw the last of 20,000 requests still uncounted after 5 s), then returns anyway
    /// for the caller's exact assertions to fail with the values seen.
    pub fn metrics_after(&self, requests: u64) -> Metrics {
        self.metrics_once(Duration::from_secs(15), |m| {
            m.value("proxy_total_requests", &[]) >= requests as f64
        })
    }

    /// The tunnel's `/metrics` once `done` holds of them, waiting up to `limit`; after that, the
    /// last read, for the caller's assertions to fail with the values seen.
    ///
    /// Once `done` holds, `/metrics` is read once more: one read gathers the families in name
    /// order, `proxy_in_flight_requests` and `proxy_response_status_total` before
    /// `proxy_total_requests`, so it can see a request counted but not yet its status (seen
    /// twice in CI); a read that starts after the count was seen sees everything recorded
    /// before it.
    pub fn metrics_once(&self, limit: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
        let start = Instant::now();
        loop {
            let m = self.metrics();
            if done(&m) {
                return self.metrics();
            }
            if start.elapsed() > limit {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the tunnel logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 5 s for the log to contain `needle` (it is written after the answer is sent)
    /// and returns the log; the caller asserts on it.
    pub fn log_with(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) || start.elapsed() > Duration::from_secs(5) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM") to the tunnel.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "tunnel did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // A tunnel that died during a test explains the test's failure: say how it ended.
        if let Ok(Some(status)) = self.child.try_wait() {
            if !status.success() && status.code() != Some(2) {
                eprintln!(
                    "the tunnel had exited with {status}; its log:\n{}",
                    self.log()
                );
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tunnel binary with an environment holding nothing the tunnel reads.
pub fn base_command() -> Command {
    command(&bin())
}

/// `binary` with an environment holding nothing the tunnel reads.
fn command(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    cmd
}

/// An HTTP answer: status, headers and the whole body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request with `agent`; any status is an answer, only transport failures panic.
pub fn request(agent: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|k| {
            let v = resp.header(&k).unwrap_or_default().to_string();
            (k, v)
        })
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("read body");
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends raw `bytes` to 127.0.0.1:`port` and reads until the peer closes or `limit` passes;
/// returns what was read (for malformed requests and cut bodies, which clients hide).
pub fn raw_exchange(port: u16, bytes: &[u8], limit: Duration) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(limit)).unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// The status code of a raw HTTP answer, if it starts with a status line.
pub fn raw_status(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// Whether the tunnel with this metrics port answers `/readyz` with 200.
fn is_ready(metrics_port: u16) -> bool {
    let url = format!("http://127.0.0.1:{metrics_port}/readyz");
    matches!(
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build()
            .get(&url)
            .call(),
        Ok(resp) if resp.status() == 200
    )
}

/// A keep-alive client with a generous timeout.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

/// A one-off GET.
pub fn get(url: &str) -> Answer {
    request(&agent(), "GET", url, &[])
}

/// Samples of a Prometheus text exposition, by name and labels.
#[derive(Debug, Default)]
pub struct Metrics {
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses the text format (no escapes inside label values are needed for our metrics).
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), HashMap::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// The value of the series `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    /// As [`Metrics::get`], treating a missing series as 0 (Prometheus' view of an unseen status).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

/// A page shaped like node_exporter's, exactly `size` bytes long.
pub fn exporter_page(size: usize) -> Vec<u8> {
    let mut page = Vec::with_capacity(size + 64);
    let mut i = 0u64;
    while page.len() < size {
        page.extend_from_slice(
            format!(
                "node_test_series{{cpu=\"{}\",mode=\"idle\"}} {}.{}\n",
                i % 64,
                i * 7919,
                i % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    page.truncate(size);
    page
}

/// Writes `text` to `name` inside `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A real `prometheus-node-exporter` on a free loopback port, stopped when the helper drops.
pub fn start_node_exporter() -> (Helper, u16) {
    let node_exporter = require_tool("prometheus-node-exporter", "prometheus-node-exporter");
    let port = free_port();
    let helper = Helper(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter"),
    );
    wait_for_port(port, Duration::from_secs(10));
    (helper, port)
}

/// Sends `request` on a new connection to `port`, reads the answer's header and exactly its
/// `Content-Length` bytes of body, and hangs up at once, as a client that has all it asked for
/// does; the status.
pub fn fetch_and_hang_up(port: u16, request: &[u8]) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).expect("send");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("the whole body");
    status
}

/// [`fetch_and_hang_up`] from `threads` threads, `each` times in each, all answered 200.
pub fn hang_up_in_parallel(port: u16, request: &[u8], threads: usize, each: usize) {
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let request = request.to_vec();
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert_eq!(fetch_and_hang_up(port, &request), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread");
    }
}
