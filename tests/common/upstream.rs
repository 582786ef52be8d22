//! A small real HTTP/1.1 exporter for tests: it serves a page on a free loopback port, keeps
//! connections alive, can be told to answer slowly, and remembers every request it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as the exporter received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The request body (`Content-Length` framed), empty for a scrape.
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the exporter does wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers 200 with the page.
    None,
    /// Answers this status with the page as its body.
    Status(u16),
    /// Declares the page's length, sends half of it, then closes the connection.
    CutMidBody,
    /// Declares the page's length, sends half of it, then holds the connection open and
    /// silent for ten seconds.
    StallMidBody,
    /// Sends a chunked body that never ends, a chunk every 50 ms.
    EndlessBody,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Closes a kept-alive connection when its second request arrives, unanswered, as an
    /// exporter whose idle timeout fired just as the request came does.
    DropReused,
    /// Answers without `Content-Length`, the body ending when the connection closes.
    CloseDelimited,
    /// Sends `100 Continue` before the answer.
    Informational,
    /// Sends its header a line every 200 ms, for ten seconds.
    TrickleHeader,
    /// Answers the page chunked, as Go's net/http (node_exporter's server) does for a page it
    /// did not hold whole: 4 KiB chunks, one with an extension, then a trailer field, each
    /// piece in a write of its own.
    Chunked,
    /// Answers with a reason phrase holding bytes over 0x7F (obs-text, which RFC 9112 allows),
    /// as a server answering in Latin-1 does.
    ObsTextReason,
}

struct State {
    page: Vec<u8>,
    fault: Mutex<Fault>,
    delay: Mutex<Duration>,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    open: AtomicUsize,
    stop: AtomicBool,
}

/// The running exporter; stops accepting when dropped.
pub struct Exporter {
    pub port: u16,
    state: Arc<State>,
}

impl Exporter {
    /// Serves `page` on 127.0.0.1 at a free port.
    pub fn start(page: Vec<u8>) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind exporter");
        let port = listener.local_addr().expect("exporter addr").port();
        let state = Arc::new(State {
            page,
            fault: Mutex::new(Fault::None),
            delay: Mutex::new(Duration::ZERO),
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                accept_state.open.fetch_add(1, Ordering::SeqCst);
                let conn_state = Arc::clone(&accept_state);
                thread::spawn(move || {
                    serve(stream, &conn_state);
                    conn_state.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Exporter { port, state }
    }

    /// Makes every following answer wait `delay` before its header.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Makes every following answer go wrong in this way.
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many TCP connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many TCP connections are open now (closed ones are noticed when read).
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let close = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let fault = *state.fault.lock().unwrap();
        if fault == Fault::DropReused && answered > 0 {
            return;
        }
        answered += 1;
        state.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target,
            headers,
            body,
        });
        let delay = *state.delay.lock().unwrap();
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        let status = match fault {
            Fault::Status(code) => code,
            _ => 200,
        };
        match fault {
            Fault::Garbage => {
                let _ = writer.write_all(b"SSH-2.0-OpenSSH_9.2 definitely not HTTP\r\n\r\n");
                return;
            }
            Fault::EndlessBody => {
                let _ = writer.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                while writer
                    .write_all(b"1a\r\nnode_endless_series 1 000\n\r\n")
                    .is_ok()
                {
                    thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Fault::CloseDelimited => {
                let mut answer =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                        .to_vec();
                answer.extend_from_slice(&state.page);
                let _ = writer.write_all(&answer);
                return;
            }
            Fault::TrickleHeader => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\n");
                for _ in 0..50 {
                    thread::sleep(Duration::from_millis(200));
                    if writer.write_all(b"X-Slow: a\r\n").is_err() {
                        return;
                    }
                }
            }
            Fault::Informational => {
                let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            _ => {}
        }
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
            state.page.len()
        )
        .into_bytes();
        if fault == Fault::ObsTextReason {
            // "X" becomes "Gr\xfc\xdfe" (Latin-1 for "Grüße").
            head.splice(13..14, *b"Gr\xfc\xdfe");
        }
        if fault == Fault::Chunked {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain; version=0.0.4\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            for (i, chunk) in state.page.chunks(4096).enumerate() {
                let size = if i == 1 {
                    format!("{:x};ext=1\r\n", chunk.len())
                } else {
                    format!("{:x}\r\n", chunk.len())
                };
                let mut piece = size.into_bytes();
                piece.extend_from_slice(chunk);
                piece.extend_from_slice(b"\r\n");
                if writer.write_all(&piece).is_err() {
                    return;
                }
            }
            if writer.write_all(b"0\r\nX-Trailer: done\r\n\r\n").is_err() {
                return;
            }
            continue;
        }
        if matches!(fault, Fault::CutMidBody | Fault::StallMidBody) {
            let _ = writer.write_all(&head);
            let _ = writer.write_all(&state.page[..state.page.len() / 2]);
            let _ = writer.flush();
            let silence = if fault == Fault::StallMidBody {
                10_000
            } else {
                50
            };
            thread::sleep(Duration::from_millis(silence));
            return;
        }
        // One write per answer, so Nagle's algorithm never holds back the end of it.
        let mut answer = head;
        if method != "HEAD" {
            answer.extend_from_slice(&state.page);
        }
        if writer.write_all(&answer).is_err() {
            return;
        }
        if close {
            return;
        }
    }
}
