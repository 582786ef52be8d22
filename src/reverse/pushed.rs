//! A pushed response, as PushProx clients write it with Go's `Response.Write`: a status line
//! (`HTTP/0.0 500` for a failure on the client's side), headers with `Id` and
//! `X-Prometheus-Scrape-Timeout`, and a body framed by `Content-Length`, chunked, or running to
//! the end of the push. Its header is parsed once whole; its body is read in whatever pieces
//! the push arrives, without being gathered.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};

use super::wire::{ID_HEADER, PUSH_TIMEOUT_HEADER, SCRAPE_TIMEOUT_HEADER};

/// The longest pushed response header read.
pub const MAX_PUSHED_HEAD: usize = 64 * 1024;

/// How the body of a pushed response is framed inside the push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: to the end of the push (an `HTTP/1.0` or `HTTP/0.0` response).
    UntilEnd,
}

/// The header of a pushed response.
#[derive(Debug, Clone)]
pub struct PushedHead {
    /// The exporter's status, or 500 for a failure on the client's side.
    pub status: u16,
    /// The headers for Prometheus: without `Id`, the timeout headers, hop-by-hop ones and
    /// framing.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The scrape this answers.
    pub id: String,
    /// How its body is framed.
    pub framing: Framing,
}

/// Headers of a pushed response that do not go on to Prometheus.
const NOT_RETURNED: [&str; 11] = [
    ID_HEADER,
    PUSH_TIMEOUT_HEADER,
    SCRAPE_TIMEOUT_HEADER,
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Parses the pushed response header at the start of `buf`: `Ok(None)` while it is incomplete,
/// else the header and its length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(PushedHead, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_PUSHED_HEAD {
            Err("a status line".into())
        } else {
            Ok(None)
        };
    };
    let status = status_of(&buf[..line_end])?;
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let rest = &buf[line_end + 2..];
    let (consumed, raw) = match httparse::parse_headers(rest, &mut headers) {
        Ok(httparse::Status::Complete((consumed, raw))) => (consumed, raw),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("response headers ({e})")),
    };
    let mut id = None;
    let mut length = None;
    let mut chunked = false;
    let mut kept = Vec::with_capacity(raw.len());
    for header in raw {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("a valid header name, not {:?}", header.name))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| format!("a valid value of header {name}"))?;
        match name.as_str() {
            ID_HEADER => id = value.to_str().ok().map(str::to_string),
            "content-length" => {
                let n = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or("a numeric Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("one Content-Length".into());
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                chunked = value
                    .to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().trim_end().ends_with("chunked"));
            }
            _ => {}
        }
        if !NOT_RETURNED.contains(&name.as_str()) {
            kept.push((name, value));
        }
    }
    let id = id.ok_or("an Id header naming the scrape")?;
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilEnd,
    };
    Ok(Some((
        PushedHead {
            status,
            headers: kept,
            id,
            framing,
        },
        line_end + 2 + consumed,
    )))
}

/// The status code of a status line `HTTP/x.y NNN reason` (any version: Go writes `HTTP/0.0`
/// for a response it made up).
fn status_of(line: &[u8]) -> Result<u16, String> {
    let line = std::str::from_utf8(line).map_err(|_| "a status line in ASCII")?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let valid_version = version
        .strip_prefix("HTTP/")
        .is_some_and(|v| v.len() == 3 && v.as_bytes()[1] == b'.');
    match code.parse::<u16>() {
        Ok(code) if valid_version && (100..=999).contains(&code) => Ok(code),
        _ => Err(format!(
            "a status line such as \"HTTP/1.1 200 OK\", not {:?}",
            crate::config::error::shown(line)
        )),
    }
}

/// One step of reading a pushed body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyStep {
    /// Body bytes for Prometheus.
    Data(Bytes),
    /// More of the push is needed.
    NeedMore,
    /// The body is complete.
    Done,
}

/// Reads a pushed body in whatever pieces the push arrives, whatever its framing: the bytes
/// for Prometheus, without chunk framing.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    /// Bytes of the push not yet consumed.
    buf: BytesMut,
    /// Body bytes still to come: of the whole body (`Length`) or of the current chunk.
    left: u64,
    chunk: ChunkState,
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data (`left` bytes to go).
    Data,
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// Complete.
    Done,
}

/// The longest chunk-size or trailer line read.
const MAX_LINE: usize = 4096;

impl BodyReader {
    /// A reader of a body framed as `framing`, starting with `leftover`: the bytes of the push
    /// that followed the header.
    pub fn new(framing: Framing, leftover: &[u8]) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        BodyReader {
            framing,
            buf: BytesMut::from(leftover),
            left,
            chunk: ChunkState::Size,
        }
    }

    /// Adds the next piece of the push.
    pub fn feed(&mut self, piece: &[u8]) {
        self.buf.extend_from_slice(piece);
    }

    /// The next step; call until it returns `NeedMore` (then feed) or `Done`.
    pub fn step(&mut self) -> Result<BodyStep, String> {
        match self.framing {
            Framing::Length(_) => {
                if self.left == 0 {
                    return Ok(BodyStep::Done);
                }
                if self.buf.is_empty() {
                    return Ok(BodyStep::NeedMore);
                }
                let take = (self.left.min(self.buf.len() as u64)) as usize;
                self.left -= take as u64;
                Ok(BodyStep::Data(self.buf.split_to(take).freeze()))
            }
            Framing::UntilEnd => {
                if self.buf.is_empty() {
                    Ok(BodyStep::NeedMore)
                } else {
                    Ok(BodyStep::Data(self.buf.split().freeze()))
                }
            }
            Framing::Chunked => self.chunked_step(),
        }
    }

    /// Whether the push may end here: only a body running to the end of the push ends with it.
    pub fn ends_with_push(&self) -> bool {
        self.framing == Framing::UntilEnd
    }

    fn chunked_step(&mut self) -> Result<BodyStep, String> {
        loop {
            match self.chunk {
                ChunkState::Done => return Ok(BodyStep::Done),
                ChunkState::Size => {
                    let Some(line) = self.line()? else {
                        return Ok(BodyStep::NeedMore);
                    };
                    let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
                    let size = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                        .ok_or("a chunk size in hex")?;
                    if size == 0 {
                        self.chunk = ChunkState::Trailers;
                    } else {
                        self.left = size;
                        self.chunk = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    if self.buf.is_empty() {
                        return Ok(BodyStep::NeedMore);
                    }
                    let take = (self.left.min(self.buf.len() as u64)) as usize;
                    self.left -= take as u64;
                    if self.left == 0 {
                        self.chunk = ChunkState::DataEnd;
                    }
                    return Ok(BodyStep::Data(self.buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(BodyStep::NeedMore);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err("CRLF after a chunk's data".into());
                    }
                    self.buf.advance(2);
                    self.chunk = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = self.line()? else {
                        return Ok(BodyStep::NeedMore);
                    };
                    if line.is_empty() {
                        self.chunk = ChunkState::Done;
                    }
                }
            }
        }
    }

    /// The next CRLF-terminated line, consumed without its CRLF.
    fn line(&mut self) -> Result<Option<Bytes>, String> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                let line = self.buf.split_to(end).freeze();
                self.buf.advance(2);
                Ok(Some(line))
            }
            None if self.buf.len() > MAX_LINE => Err("a chunk-size line of sensible length".into()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reader: &mut BodyReader) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            match reader.step().expect("valid body") {
                BodyStep::Data(d) => out.extend_from_slice(&d),
                BodyStep::NeedMore => return (out, false),
                BodyStep::Done => return (out, true),
            }
        }
    }

    #[test]
    fn pushed_heads_of_every_kind() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nId: a1\r\nX-Prometheus-Scrape-Timeout: 9.99\r\n\r\nhello";
        let (head, len) = parse_head(ok).unwrap().unwrap();
        assert_eq!((head.status, head.id.as_str()), (200, "a1"));
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(head.headers.len(), 1, "{:?}", head.headers);
        assert_eq!(&ok[len..], b"hello");

        let failed = b"HTTP/0.0 500 Internal Server Error\r\nId: a2\r\nX-Prometheus-Scrape-Timeout: 1\r\n\r\nconnection refused";
        let (head, _) = parse_head(failed).unwrap().unwrap();
        assert_eq!((head.status, head.framing), (500, Framing::UntilEnd));

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nId: a3\r\n\r\n";
        assert_eq!(
            parse_head(chunked).unwrap().unwrap().0.framing,
            Framing::Chunked
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nId: a").unwrap().is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no Id");
        assert!(parse_head(b"hello there\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies_in_any_pieces() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 0..wire.len() {
            let mut reader = BodyReader::new(Framing::Chunked, &wire[..split]);
            let (mut body, done) = drain(&mut reader);
            assert!(!done || split == wire.len());
            reader.feed(&wire[split..]);
            let (rest, done) = drain(&mut reader);
            body.extend(rest);
            assert!(done, "split at {split}");
            assert_eq!(body, b"hello world");
        }
        let mut bad = BodyReader::new(Framing::Chunked, b"zz\r\n");
        assert!(bad.step().is_err());
    }

    #[test]
    fn length_and_until_end_bodies() {
        let mut reader = BodyReader::new(Framing::Length(4), b"ab");
        assert_eq!(drain(&mut reader), (b"ab".to_vec(), false));
        reader.feed(b"cdEXTRA");
        assert_eq!(drain(&mut reader), (b"cd".to_vec(), true));
        let mut reader = BodyReader::new(Framing::UntilEnd, b"x");
        assert!(reader.ends_with_push());
        assert_eq!(drain(&mut reader), (b"x".to_vec(), false));
    }
}
