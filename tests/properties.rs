//! Property tests of everything that parses user input: configuration values, durations,
//! ports, hosts, proxy URLs, `no_proxy` lists, CIDR ranges, conf files, credentials. For any
//! input they never panic, and for generated valid input they give back what went in. They run
//! a few hundred cases each with every `cargo test` (`PROPTEST_CASES` runs more).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use prometheus_tunnel::config::forward_proxy::{self, ForwardProxy};
use prometheus_tunnel::config::{self, file, parse, ExporterHost, Setting};
use prometheus_tunnel::ip_range::IpRange;
use prometheus_tunnel::material::secret::authorization;
use prometheus_tunnel::material::{self, Material};

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
}
