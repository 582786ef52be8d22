use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

#[test]
fn hosts() {
    assert_eq!(
        exporter_host("192.168.0.3"),
        Ok(ExporterHost::Ip(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 3))))
    );
    assert_eq!(
        exporter_host("[::1]"),
        Ok(ExporterHost::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
    );
    assert_eq!(
        exporter_host("Node-1.example.com"),
        Ok(ExporterHost::Name("node-1.example.com".into()))
    );
    for bad in [
        "",
        "  ",
        "http://x",
        "10.0.0.1:9100",
        "a..b",
        "-a.b",
        "a b",
        "ä.com",
    ] {
        assert!(exporter_host(bad).is_err(), "{bad:?} accepted");
    }
    assert!(exporter_host("10.0.0.1:9100")
        .unwrap_err()
        .contains("SERVER_PORT"));
}

#[test]
fn ports() {
    assert_eq!(port("9100").map(|p| p.get()), Ok(9100));
    assert_eq!(port("65535").map(|p| p.get()), Ok(65535));
    for bad in ["0", "65536", "70000", "-1", "abc", "", "80.5"] {
        assert_eq!(port(bad), Err("a port 1-65535".into()), "{bad:?}");
    }
}

#[test]
fn schemes_bools_addresses() {
    assert_eq!(scheme("HTTPS"), Ok(Scheme::Https));
    assert!(scheme("ftp").is_err());
    assert_eq!(boolean("TRUE"), Ok(true));
    assert_eq!(boolean("0"), Ok(false));
    assert!(boolean("maybe").is_err());
    assert_eq!(
        listen_address("[::]"),
        Ok(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    );
    assert!(listen_address("localhost").is_err());
}

#[test]
fn timeouts() {
    assert_eq!(timeout("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(timeout("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(timeout("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(timeout("2.5"), Ok(Duration::from_millis(2500)));
    assert_eq!(timeout("3600"), Ok(MAX_TIMEOUT));
    for bad in ["0", "0s", "-1", "NaN", "inf", "2h", "10 parsecs", ""] {
        assert!(timeout(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn sizes_counts_and_optional_durations() {
    assert_eq!(byte_size("64MiB"), Ok(64 << 20));
    assert_eq!(byte_size("512 KiB"), Ok(512 << 10));
    assert_eq!(byte_size("2g"), Ok(2 << 30));
    assert_eq!(byte_size("1048576"), Ok(1 << 20));
    for bad in [
        "",
        "10",
        "1023",
        "17GiB",
        "64 parsecs",
        "-1MiB",
        "1.5MiB",
        "MiB",
    ] {
        assert!(byte_size(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(count("1"), Ok(1));
    assert!(count("0").is_err());
    assert_eq!(optional_duration("0"), Ok(None));
    assert_eq!(optional_duration("0s"), Ok(None));
    assert_eq!(optional_duration("25s"), Ok(Some(Duration::from_secs(25))));
    assert!(optional_duration("soon").is_err());
}
