//! Property tests of everything that parses user input: configuration values, durations,
//! ports, hosts, proxy URLs, `no_proxy` lists, CIDR ranges, conf files, credentials; and of
//! what the network sends: an exporter's answer, read by the tunnel's HTTP/1 client. For any
//! input they never panic, and for generated valid input they give back what went in. They run
//! a few hundred cases each with every `cargo test` (`PROPTEST_CASES` runs more).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_http::RequestHeader;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use prometheus_tunnel::config::forward_proxy::{self, ForwardProxy};
use prometheus_tunnel::config::{self, file, parse, ExporterHost, Setting};
use prometheus_tunnel::http1::body::BodyState;
use prometheus_tunnel::http1::head::ExporterHead;
use prometheus_tunnel::ip_range::IpRange;
use prometheus_tunnel::listener::request;
use prometheus_tunnel::material::secret::authorization;
use prometheus_tunnel::material::{self, Material};
use prometheus_tunnel::upstream::http1::ExporterExchange;

/// Strings with the characters that matter to these parsers, and arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-zA-Z:/@.%\\[\\]_,* -]{0,40}",
        any::<String>(),
        "(http|socks5|socks5h|https|ftp)://[a-z0-9:@%.\\[\\]]{0,30}(:[0-9]{0,6})?",
        "[0-9]{1,3}(\\.[0-9]{1,3}){3}(/[0-9]{1,3})?",
    ]
}

proptest! {
    #[test]
    fn value_parsers_never_panic(s in text()) {
        let _ = parse::port(&s);
        let _ = parse::timeout(&s);
        let _ = parse::exporter_host(&s);
        let _ = parse::scheme(&s);
        let _ = parse::boolean(&s);
        let _ = parse::listen_address(&s);
        let _ = parse::cidr_list(&s);
        let _ = parse::connection_limit(&s);
        let _ = ForwardProxy::parse(&s);
        let _ = IpRange::parse(&s);
        let _ = forward_proxy::no_proxy_matches(&s, &ExporterHost::Name("db.example.com".into()));
        let _ = forward_proxy::no_proxy_matches(&s, &ExporterHost::Ip("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn every_valid_port_is_accepted(n in 1u16..) {
        prop_assert_eq!(parse::port(&n.to_string()).map(|p| p.get()), Ok(n));
        prop_assert_eq!(parse::port(&format!(" {n} ")).map(|p| p.get()), Ok(n));
    }

    #[test]
    fn ports_out_of_range_are_refused(n in 65_536u64..u64::MAX) {
        prop_assert!(parse::port(&n.to_string()).is_err());
    }

    #[test]
    fn durations_round_trip(ms in 1u64..=3_600_000) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse::timeout(&format!("{ms}ms")), Ok(d));
        prop_assert_eq!(parse::timeout(&humantime::format_duration(d).to_string()), Ok(d));
    }

    #[test]
    fn ip_hosts_are_addresses(ip in any::<IpAddr>()) {
        prop_assert_eq!(parse::exporter_host(&ip.to_string()), Ok(ExporterHost::Ip(ip)));
    }

    #[test]
    fn every_range_contains_its_own_network(ip in any::<std::net::Ipv4Addr>(), prefix in 0u8..=32) {
        let range = IpRange::parse(&format!("{ip}/{prefix}")).expect("a valid range");
        prop_assert!(range.contains(IpAddr::V4(ip)));
    }

    #[test]
    fn proxy_urls_round_trip(
        scheme in prop_oneof!["http", "socks5", "socks5h"],
        host in "[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9]{0,10}){0,3}",
        port in 1u16..,
        user in "[ -~]{1,12}",
        pass in "[ -~]{0,12}",
    ) {
        // A label that begins `xn--` is punycode, valid only if it decodes (a refused one is
        // tested below); the generator's other labels are plain names.
        prop_assume!(!host.split('.').any(|label| label.starts_with("xn--")));
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let url = format!("{scheme}://{}:{}@{host}:{port}", enc(&user), enc(&pass));
        let proxy = ForwardProxy::parse(&url).expect("a valid proxy URL");
        prop_assert_eq!(&proxy.host, &host);
        prop_assert_eq!(proxy.port, port);
        let credentials = proxy.credentials.clone().expect("credentials");
        prop_assert_eq!(&credentials.username, &user);
        prop_assert_eq!(&credentials.password, &pass);
        // The password never shows when the proxy is printed: it is masked.
        let shown = proxy.to_string();
        prop_assert!(shown.contains(":***@"), "{}", shown);
        prop_assert!(shown.ends_with(&format!("{host}:{port}")), "{}", shown);
    }

    #[test]
    fn any_environment_is_accepted_or_refused_with_reasons(
        values in proptest::collection::vec(text(), Setting::ALL.len()),
        present in proptest::collection::vec(any::<bool>(), Setting::ALL.len()),
    ) {
        let env: HashMap<&str, &str> = Setting::ALL
            .iter()
            .zip(&values)
            .zip(&present)
            .filter(|(_, keep)| **keep)
            .map(|((setting, value), _)| (setting.env(), value.as_str()))
            .collect();
        let errors = match config::merge(config::FileLayer::default(), &env, Vec::new()) {
            Ok(tunnel) => Material::load(&tunnel).err().unwrap_or_default(),
            Err(refused) => {
                prop_assert!(!refused.errors.is_empty());
                let mut errors = refused.errors;
                errors.extend(material::check(&refused.files));
                errors
            }
        };
        {
            for e in errors {
                prop_assert!(e.to_string().contains(": expected "), "{}", e);
            }
        }
    }

    #[test]
    fn any_conf_file_is_parsed_or_refused(yaml in prop_oneof![
        any::<String>(),
        "(version: 1\n)?(threads: [0-9a-z]{1,3}\n)?tunnel:\n(  [a-z_]{1,20}: [ -~]{0,20}\n){0,4}",
    ]) {
        let _ = file::parse(&yaml, Path::new("fuzz.yaml"));
    }

    #[test]
    fn any_credential_file_content_is_handled(content in any::<String>(), user in "[a-z]{1,8}") {
        let file = |text: &str| config::SettingFile::new(config::RawValue {
            setting: Setting::BearerTokenFile,
            origin: config::Origin::Env,
            text: text.into(),
        });
        let bearer = config::Credentials::Bearer { token_file: file("t") };
        let basic = config::Credentials::Basic { username: user, password_file: file("p") };
        if let Ok(value) = authorization(&bearer, &content) {
            prop_assert!(value.is_sensitive());
        }
        let _ = authorization(&basic, &content);
    }

    #[test]
    fn a_well_framed_answer_gives_back_its_body(
        body in prop::collection::vec(any::<u8>(), 0..3000),
        framing in 0..3u8,
        chunk in 1..700usize,
    ) {
        let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n".to_vec();
        match framing {
            0 => answer.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()),
            1 => answer.extend_from_slice(b"Connection: close\r\n\r\n"),
            _ => answer.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
        }
        if framing == 2 {
            for piece in body.chunks(chunk) {
                answer.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                answer.extend_from_slice(piece);
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
        } else {
            answer.extend_from_slice(&body);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let read = runtime.block_on(read_answer(&answer));
        prop_assert!(read.is_some(), "a well-framed answer was refused");
        let (_, got) = read.expect("read");
        prop_assert!(got == body, "the body differs");
    }

    #[test]
    fn any_exporter_answer_is_read_or_refused_and_a_length_is_kept(answer in exporter_answer()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let outcome = read_answer(&answer).await;
            if let Some((header, body)) = outcome {
                let length = header.content_length().flatten().map(|n| n as usize);
                let framed_by_length = !header.transfer_encoding()
                    && !matches!(header.status().as_u16(), 204 | 304);
                // A body read whole is exactly as long as its header said.
                if let (Some(length), true) = (length, framed_by_length) {
                    prop_assert_eq!(body.len(), length);
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #[test]
    fn any_request_header_is_parsed_or_refused_with_a_reason(request in client_request()) {
        // Never a panic; a refusal is the client's fault (400), with what was wrong.
        match request::parse(BytesMut::from(&request[..])) {
            Ok(parsed) => {
                let framed = parsed.header.headers.get(TRANSFER_ENCODING).is_some()
                    || parsed.header.headers.get(CONTENT_LENGTH).is_some();
                prop_assert!(framed || parsed.body == BodyState::Done);
            }
            Err(e) => {
                prop_assert_eq!(e.esource(), &pingora_error::ErrorSource::Downstream);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn a_well_formed_request_keeps_its_target_and_fields(
        target in "/[a-zA-Z0-9_./?=&%-]{0,60}",
        fields in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,40}"), 0..12),
        rest in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let fields: Vec<_> = fields
            .into_iter()
            .filter(|(name, _)| !["host", "content-length", "transfer-encoding"]
                .contains(&name.to_ascii_lowercase().as_str()))
            .map(|(name, value)| (name, value.trim().to_string()))
            .collect();
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: tunnel\r\n");
        for (name, value) in &fields {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&rest);
        let parsed = request::parse(BytesMut::from(&bytes[..])).expect("a well-formed request");
        prop_assert_eq!(parsed.header.raw_path(), target.as_bytes());
        let mut wire = Vec::new();
        parsed.header.header_to_h1_wire(&mut wire);
        // Fields of one name are kept together, at their first place, in their order (the
        // header map's, as with Pingora's session); every spelling and value is kept.
        let mut expected = b"Host: tunnel\r\n".to_vec();
        let mut names: Vec<String> = Vec::new();
        for (name, _) in &fields {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.clone());
            }
        }
        for first in &names {
            for (name, value) in fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(first)) {
                expected.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        prop_assert!(wire == expected, "fields changed: {:?}", String::from_utf8_lossy(&wire));
        prop_assert!(parsed.rest[..] == rest[..], "bytes after the header were not kept");
    }
}

/// Client request headers: arbitrary bytes, and requests shaped like HTTP with the fields that
/// frame a body and name the authority (right, wrong and conflicting), whole as `header.rs`
/// hands them on.
fn client_request() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "Content-Length: [0-9a-z,]{0,6}",
        "Transfer-Encoding: (chunked|gzip|gzip, chunked|chunked, gzip)",
        "Host: [a-z@:\\[\\]0-9.]{0,12}",
        "Connection: (close|keep-alive|upgrade)",
        "[A-Za-z-]{1,12}: [ -~]{0,20}",
        "[ -~]{0,20}",
    ];
    let shaped = (
        "(GET|POST|HEAD|PUT|CONNECT|[A-Z]{1,8}|[ -~]{0,8})",
        "(/[ -~]{0,30}|http://[a-z@:0-9]{0,12}/[a-z]{0,5}|\\*|[ -~]{0,12})",
        "(HTTP/1.1|HTTP/1.0|HTTP/2.0|HTTP/1.x|)",
        prop::collection::vec(field, 0..6),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(method, target, version, fields, rest)| {
            let mut request = format!("{method} {target} {version}\r\n").into_bytes();
            for field in fields {
                request.extend_from_slice(field.as_bytes());
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"\r\n");
            request.extend_from_slice(&rest);
            request
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), shaped]
}

/// Exporter answers: arbitrary bytes, and answers shaped like HTTP with the fields that frame a
/// body (right, wrong and conflicting) and bodies that may or may not be chunked. Reason phrases
/// may hold bytes over 0x7F (a UTF-8 `ü` or `é`), which httparse hands over apart from the
/// buffer.
fn exporter_answer() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "Content-Length: [0-9]{0,4}",
        "Content-Length: [0-9 ,+-]{0,8}",
        "Transfer-Encoding: (chunked|gzip, chunked|identity|[a-z]{0,6})",
        "Connection: (close|keep-alive|[a-zA-Z-]{0,10})",
        "[A-Za-z-]{1,12}: [ -~]{0,16}",
    ];
    let shaped = (
        "HTTP/1\\.[01] (1[0-9][0-9]|[2-5][0-9][0-9]|[0-9]{0,4}) [A-Za-z üé]{0,8}",
        prop::collection::vec(field, 0..6),
        prop_oneof![
            "[ -~\n]{0,40}",
            "([0-9a-fA-F]{1,3}(;[a-z=]{0,5})?\r\n[ -~]{0,20}\r\n){0,4}(0\r\n([A-Za-z-]{1,6}: x\r\n)?\r\n)?",
        ],
    )
        .prop_map(|(line, fields, body)| {
            let mut answer = format!("{line}\r\n");
            for field in fields {
                answer.push_str(&field);
                answer.push_str("\r\n");
            }
            answer.push_str("\r\n");
            answer.push_str(&body);
            answer.into_bytes()
        });
    prop_oneof![any::<Vec<u8>>(), shaped]
}

/// Sends a scrape to an "exporter" that answers `answer` and closes; the header and the whole
/// body when the answer was read to its end, `None` when it was refused.
async fn read_answer(answer: &[u8]) -> Option<(ExporterHead, Vec<u8>)> {
    let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("socket pair");
    let stream = pingora_core::protocols::l4::stream::Stream::from(ours);
    let mut exchange = ExporterExchange::new(Box::new(stream));
    let request = RequestHeader::build("GET", b"/metrics", None).expect("request");
    let as_is = |client: &RequestHeader| Ok(Box::new(client.clone()));
    exchange.prepare(&as_is, &request).expect("prepare");
    exchange.send().await.expect("send");
    // The request is read first, as an exporter does: a socket closed with unread bytes resets
    // the connection instead of ending it.
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if theirs.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        request.push(byte[0]);
    }
    theirs.write_all(answer).await.expect("answer");
    drop(theirs);
    let header = exchange.read_header().await.ok()?;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut body = Vec::new();
    loop {
        match exchange.read_body(until).await {
            Ok(Some(piece)) => body.extend_from_slice(piece),
            Ok(None) => return Some((header, body)),
            Err(_) => return None,
        }
    }
}

/// A host whose `xn--` label is not valid punycode (found by `proxy_urls_round_trip`'s
/// generator) is refused with the reason, and the URL's password stays out of the message.
#[test]
fn a_proxy_url_with_broken_punycode_is_refused_with_its_reason() {
    let e = ForwardProxy::parse("http://a:secret@xn--:1").expect_err("refused");
    let message = e.to_string();
    assert!(message.contains("international domain name"), "{message}");
    assert!(
        message.contains("http://[user:pass@]host:port"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}
