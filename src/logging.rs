//! Logging through `log` + `env_logger`: info by default, debug with `DEBUG=true`, and
//! `RUST_LOG`, when set, wins over both. At no level does a line carry a credential: Pingora's
//! trace lines print whole request headers (the client's `Authorization`, and the one the
//! tunnel sends the exporter), so every line is checked for credential-bearing headers and
//! their values replaced by `***` before it is written.

use std::borrow::Cow;

use log::{Log, Metadata, Record};

/// Headers whose values are credentials, in lower case.
const SECRET_HEADERS: [&str; 3] = ["proxy-authorization", "authorization", "cookie"];

/// Installs the logger; call once, after the configuration is known.
pub fn init(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .format_timestamp_millis()
            .build();
    let max_level = inner.filter();
    if log::set_boxed_logger(Box::new(Redacting { inner })).is_ok() {
        log::set_max_level(max_level);
    }
}

/// env_logger's logger, with credentials taken out of each line.
struct Redacting {
    inner: env_logger::Logger,
}

impl Log for Redacting {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.matches(record) {
            return;
        }
        // Lines are rare off the scrape path's errors, so formatting twice costs nothing that
        // matters; a credential written once cannot be taken back.
        let line = record.args().to_string();
        match redact(&line) {
            Cow::Borrowed(_) => self.inner.log(record),
            Cow::Owned(clean) => self.inner.log(
                &Record::builder()
                    .args(format_args!("{clean}"))
                    .level(record.level())
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// `line` with the value of every credential-bearing header replaced by `***`, however the
/// header is printed (`Authorization: Bearer x\r\n` on the wire, `"authorization": "Bearer x"`
/// in a map, `\r\n` escaped inside a quoted buffer).
pub fn redact(line: &str) -> Cow<'_, str> {
    let lower = line.to_ascii_lowercase();
    if !SECRET_HEADERS.iter().any(|h| lower.contains(h)) {
        return Cow::Borrowed(line);
    }
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some((start, name)) = next_secret_header(&lower, at) {
        // The separator: `: `, `": "`, `=`; without one, the name is just mentioned.
        let mut value = start + name.len();
        while value < bytes.len() && matches!(bytes[value], b'"' | b'\'') {
            value += 1;
        }
        if value >= bytes.len() || !matches!(bytes[value], b':' | b'=') {
            at = start + name.len();
            continue;
        }
        while value < bytes.len() && matches!(bytes[value], b'"' | b':' | b' ' | b'=' | b'\'') {
            value += 1;
        }
        let mut end = value;
        while end < bytes.len()
            && !matches!(bytes[end], b'"' | b'\\' | b'\r' | b'\n' | b'\'' | b',')
        {
            end += 1;
        }
        if end > value {
            out.push_str(&line[copied..value]);
            out.push_str("***");
            copied = end;
        }
        at = end.max(start + name.len());
    }
    out.push_str(&line[copied..]);
    Cow::Owned(out)
}

/// The next credential-bearing header name in `lower` from `from`, not inside a longer name.
fn next_secret_header(lower: &str, from: usize) -> Option<(usize, &'static str)> {
    SECRET_HEADERS
        .iter()
        .filter_map(|name| {
            let mut search = from;
            while let Some(i) = lower[search..].find(name) {
                let start = search + i;
                if starts_a_name(lower.as_bytes(), start) {
                    return Some((start, *name));
                }
                search = start + name.len();
            }
            None
        })
        .min_by_key(|(start, _)| *start)
}

/// Whether a header name found at `start` begins there: at the start of the line, after a
/// separator, or after an escaped line end (`\r\n` printed inside a quoted buffer), but not
/// inside a longer name (`authorization` inside `proxy-authorization`).
fn starts_a_name(line: &[u8], start: usize) -> bool {
    let Some(before) = start.checked_sub(1).map(|i| line[i]) else {
        return true;
    };
    let escaped = matches!(before, b'n' | b'r' | b't') && start >= 2 && line[start - 2] == b'\\';
    escaped || !(before.is_ascii_alphanumeric() || before == b'-')
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_taken_out_however_printed() {
        let wire = r#"Writing request header: b"GET /metrics HTTP/1.1\r\nHost: e:9100\r\nAuthorization: Bearer s3cret\r\nAccept: */*\r\n\r\n""#;
        assert_eq!(
            redact(wire),
            r#"Writing request header: b"GET /metrics HTTP/1.1\r\nHost: e:9100\r\nAuthorization: ***\r\nAccept: */*\r\n\r\n""#
        );
        let map = r#"headers: {"authorization": "Basic dXNlcjpwYXNz", "proxy-authorization": "Basic cHJveHk6cA==", "accept": "*/*"}"#;
        assert_eq!(
            redact(map),
            r#"headers: {"authorization": "***", "proxy-authorization": "***", "accept": "*/*"}"#
        );
        assert_eq!(redact("Cookie: a=b\r\n"), "Cookie: ***\r\n");
        let escaped = r#"b"Accept: */*\r\nauthorization: Bearer t0k\r\nCookie: s=1\r\n""#;
        assert_eq!(
            redact(escaped),
            r#"b"Accept: */*\r\nauthorization: ***\r\nCookie: ***\r\n""#
        );
        let plain = "Fail to proxy: Upstream ConnectRefused, status: 502";
        assert!(matches!(redact(plain), std::borrow::Cow::Borrowed(_)));
        // A mention without a value stays as it is.
        assert_eq!(
            redact("the Authorization header was missing"),
            "the Authorization header was missing"
        );
    }
}
