//! Debian's headless Chromium for the status page's tests: run once for a rendered DOM or a
//! screenshot, or kept running and driven over the DevTools protocol (clicks, typing).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::require_tool;

/// Flags for Chromium as root on a closed network: no sandbox, no background connections.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Runs Chromium once with `args` (`--dump-dom URL`, `--screenshot=F URL`); its standard output.
pub fn run(profile: &Path, args: &[&str]) -> String {
    let output = Command::new(require_tool("chromium", "chromium"))
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A page open in a running Chromium, driven over the DevTools protocol.
pub struct Page {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Opens `url` in a new headless Chromium with its profile in `profile`.
    pub fn open(profile: &Path, url: &str) -> Page {
        let mut child = Command::new(require_tool("chromium", "chromium"))
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--remote-debugging-port=0")
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().expect("chromium's stderr");
        let port = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let rest = line.split("DevTools listening on ws://127.0.0.1:").nth(1)?;
                rest.split('/').next()?.parse::<u16>().ok()
            })
            .expect("chromium's DevTools port");
        let start = Instant::now();
        let page_url = loop {
            let list: Value = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|body| serde_json::from_str(&body).ok())
                .unwrap_or(Value::Null);
            let found = list.as_array().and_then(|pages| {
                pages
                    .iter()
                    .find(|p| p["type"] == "page")
                    .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_string))
            });
            if let Some(found) = found {
                break found;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no page in {list}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(page_url.as_str()).expect("DevTools socket");
        Page {
            child,
            socket,
            next_id: 0,
        }
    }

    /// The value of the JavaScript `expression` in the page, promises awaited.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": true, "returnByValue": true},
        });
        self.socket
            .send(Message::text(call.to_string()))
            .expect("send to DevTools");
        loop {
            let message = self.socket.read().expect("read from DevTools");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if answer["id"] == id {
                assert!(
                    answer["result"]["exceptionDetails"].is_null(),
                    "{expression}: {answer}"
                );
                return answer["result"]["result"]["value"].clone();
            }
        }
    }

    /// Waits until the page's document, fetched over HTTP (not the blank page a new tab starts
    /// with), has loaded.
    pub fn wait_loaded(&mut self) {
        let start = Instant::now();
        let loaded = "location.protocol === 'http:' && document.readyState === 'complete'";
        while self.eval(loaded) != true {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the page did not load"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
