use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn file_value(setting: Setting, text: &str) -> RawValue {
    RawValue {
        setting,
        origin: Origin::File(PathBuf::from("t.yaml")),
        text: text.into(),
    }
}

fn cli_value(setting: Setting, text: &str) -> RawValue {
    RawValue {
        setting,
        origin: Origin::Cli,
        text: text.into(),
    }
}

fn lines(refused: Refused) -> Vec<String> {
    refused.errors.iter().map(ToString::to_string).collect()
}

#[test]
fn defaults_fill_everything_but_the_exporter() {
    let env = HashMap::from([("SERVER_IP", "10.0.0.7")]);
    let c = merge(FileLayer::default(), &env, vec![]).expect("valid");
    assert_eq!(
        c.targets[0].exporter.host,
        ExporterHost::Ip("10.0.0.7".parse().unwrap())
    );
    assert_eq!(c.targets[0].exporter.port.get(), DEFAULT_SERVER_PORT);
    assert_eq!(c.targets[0].exporter.scheme, Scheme::Http);
    assert_eq!(c.targets[0].exporter.timeout, DEFAULT_UPSTREAM_TIMEOUT);
    assert_eq!(c.listen.proxy_addr().to_string(), "0.0.0.0:8080");
    assert_eq!(c.listen.metrics_addr().to_string(), "0.0.0.0:9182");
    assert!(!c.debug);
}

#[test]
fn later_layers_win() {
    let file = vec![
        file_value(Setting::ServerIp, "file-host"),
        file_value(Setting::ServerPort, "1000"),
        file_value(Setting::ListenPort, "2000"),
    ];
    let env = HashMap::from([("SERVER_PORT", "1001"), ("LISTEN_PORT", "2001")]);
    let cli = vec![cli_value(Setting::ListenPort, "2002")];
    let c = merge(
        FileLayer {
            values: file,
            ..FileLayer::default()
        },
        &env,
        cli,
    )
    .expect("valid");
    assert_eq!(
        c.targets[0].exporter.host,
        ExporterHost::Name("file-host".into())
    );
    assert_eq!(c.targets[0].exporter.port.get(), 1001);
    assert_eq!(c.listen.proxy_port.get(), 2002);
}

#[test]
fn every_problem_is_reported_with_its_source() {
    let file = vec![file_value(Setting::UpstreamTimeout, "soon")];
    let env = HashMap::from([
        ("SERVER_IP", ""),
        ("SERVER_PORT", "abc"),
        ("DEBUG", "maybe"),
    ]);
    let cli = vec![cli_value(Setting::ListenPort, "70000")];
    let errors = lines(
        merge(
            FileLayer {
                values: file,
                ..FileLayer::default()
            },
            &env,
            cli,
        )
        .unwrap_err(),
    );
    assert_eq!(errors.len(), 5, "{errors:#?}");
    // The listeners' settings first, then the exporter's.
    assert_eq!(
        errors[0],
        "--listen-port=\"70000\": expected a port 1-65535"
    );
    assert_eq!(errors[1], "DEBUG=\"maybe\": expected true, false, 1 or 0");
    assert!(errors[2].starts_with("SERVER_IP=\"\": expected an IPv4 address"));
    assert_eq!(errors[3], "SERVER_PORT=\"abc\": expected a port 1-65535");
    assert!(
        errors[4].starts_with("tunnel.upstream_timeout in t.yaml=\"soon\": expected a duration")
    );
}

#[test]
fn missing_exporter_is_refused() {
    let errors = lines(merge(FileLayer::default(), &HashMap::new(), vec![]).unwrap_err());
    assert_eq!(
        errors,
        ["SERVER_IP is not set: expected the exporter's host in SERVER_IP, --server-ip or tunnel.server_ip, a list of exporters in tunnel.targets, or (on a tunnel) POLL_PORT for clients that poll or AGENT_PORT for agents"]
    );
}

#[test]
fn shared_port_is_refused() {
    let env = HashMap::from([
        ("SERVER_IP", "h"),
        ("LISTEN_PORT", "9000"),
        ("METRICS_PORT", "9000"),
    ]);
    let errors = lines(merge(FileLayer::default(), &env, vec![]).unwrap_err());
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .starts_with("METRICS_PORT=\"9000\": expected a port other than LISTEN_PORT (9000)"));
}

#[test]
fn forwarding_to_itself_is_refused() {
    let env = HashMap::from([("SERVER_IP", "127.0.0.1"), ("SERVER_PORT", "8080")]);
    let errors = lines(merge(FileLayer::default(), &env, vec![]).unwrap_err());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("would forward to itself"), "{errors:?}");
}

#[test]
fn conf_file_sections() {
    let path = Path::new("t.yaml");
    let conf = file::parse(
        "version: 1\nthreads: 2\ngrace_period_seconds: 1\ntunnel:\n  server_ip: 10.1.1.1\n  server_port: 9100\n  debug: true\n",
        path,
    )
    .expect("valid");
    assert_eq!(conf.server.threads, 2);
    assert_eq!(conf.server.grace_period_seconds, Some(1));
    let texts: Vec<_> = conf
        .values
        .iter()
        .map(|v| (v.setting, v.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            (Setting::Debug, "true"),
            (Setting::ServerIp, "10.1.1.1"),
            (Setting::ServerPort, "9100"),
        ]
    );

    let unknown = file::parse("tunnel:\n  server_ipp: x\n", path)
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown key `server_ipp`"), "{unknown}");
    assert!(
        unknown.contains("expected only these keys: server_ip,"),
        "{unknown}"
    );

    let top = file::parse("treads: 4\n", path).unwrap_err().to_string();
    assert!(top.starts_with("unknown top-level key \"treads\""), "{top}");

    let typed = file::parse("threads: many\n", path)
        .unwrap_err()
        .to_string();
    assert!(typed.contains("Pingora server settings"), "{typed}");

    assert!(file::parse("", path)
        .expect("empty is valid")
        .values
        .is_empty());
}

fn specs(yaml: &str) -> Vec<TargetSpec> {
    file::parse(yaml, Path::new("t.yaml"))
        .expect("valid")
        .targets
}

#[test]
fn targets_fall_back_to_the_top_level_settings() {
    let targets = specs(
        "tunnel:\n  targets:\n  - name: web-1\n    address: 10.0.0.1:9100\n    labels: {env: prod}\n  - name: db.1\n    address: db-1.internal\n    scheme: https\n    timeout: 3s\n",
    );
    let env = HashMap::from([("SERVER_PORT", "9182"), ("UPSTREAM_TIMEOUT", "7s")]);
    let layer = FileLayer {
        targets: &targets,
        path: Some(Path::new("t.yaml")),
        ..FileLayer::default()
    };
    let c = merge(layer, &env, vec![]).expect("valid");
    assert!(c.multi_target);
    let names: Vec<_> = c.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["web-1", "db.1"]);
    let (web, db) = (&c.targets[0].exporter, &c.targets[1].exporter);
    assert_eq!(
        (web.port.get(), web.timeout),
        (9100, Duration::from_secs(7))
    );
    assert_eq!(web.scheme, Scheme::Http);
    assert_eq!((db.port.get(), db.timeout), (9182, Duration::from_secs(3)));
    assert_eq!(db.scheme, Scheme::Https);
    assert_eq!(
        c.targets[0].labels.get("env").map(String::as_str),
        Some("prod")
    );
    // Two targets and no SERVER_IP: a request must name one.
    assert_eq!(c.default_target, None);
}

#[test]
fn server_ip_is_the_default_target_among_others() {
    let targets = specs("tunnel:\n  targets:\n  - {name: a, address: 10.0.0.1}\n");
    let env = HashMap::from([("SERVER_IP", "10.9.9.9")]);
    let layer = FileLayer {
        targets: &targets,
        ..FileLayer::default()
    };
    let c = merge(layer, &env, vec![]).expect("valid");
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.default_target.as_deref(), Some(DEFAULT_TARGET_NAME));

    let env = HashMap::from([("DEFAULT_TARGET", "a")]);
    let layer = FileLayer {
        targets: &targets,
        ..FileLayer::default()
    };
    assert_eq!(
        merge(layer, &env, vec![])
            .unwrap()
            .default_target
            .as_deref(),
        Some("a")
    );
}

#[test]
fn bad_targets_are_each_refused() {
    let targets = specs(
        "tunnel:\n  targets:\n  - {name: a, address: 10.0.0.1:9100}\n  - {name: a, address: 10.0.0.2:9100}\n  - {name: 'bad name', address: x}\n  - {name: b, address: '10.0.0.3:99999'}\n  - {name: c, address: h, labels: {__address__: x}}\n",
    );
    let env = HashMap::from([("DEFAULT_TARGET", "zzz")]);
    let layer = FileLayer {
        targets: &targets,
        path: Some(Path::new("t.yaml")),
        ..FileLayer::default()
    };
    let errors = lines(merge(layer, &env, vec![]).unwrap_err());
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].starts_with("targets[a] in t.yaml: expected a name no other target has"));
    assert!(errors[1].starts_with("target name \"bad name\""));
    assert_eq!(
        errors[2],
        "targets[b].address in t.yaml=\"99999\": expected a port 1-65535"
    );
    assert!(errors[3].starts_with("label \"__address__\" of targets[c]"));
    assert!(errors[4].starts_with("DEFAULT_TARGET=\"zzz\": expected the name of a target (a"));
}

#[test]
fn unknown_target_fields_are_refused() {
    let e = file::parse(
        "tunnel:\n  targets:\n  - {name: a, address: h, sheme: https}\n",
        Path::new("t.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `sheme`"), "{e}");
}

#[test]
fn tunnel_defaults_for_pingora_apply_unless_the_file_sets_them() {
    use clap::Parser;
    let env = HashMap::from([("SERVER_IP", "10.0.0.1")]);
    let no_file = cli::Cli::try_parse_from(["prometheus-tunnel"]).unwrap();
    let loaded = load(&no_file, &env).expect("valid");
    assert_eq!(
        loaded.server.fast_timeout_to_tokio_threshold_seconds,
        Some(0)
    );
    assert_eq!(
        loaded.server.grace_period_seconds,
        Some(DEFAULT_GRACE_PERIOD_SECONDS)
    );
    assert!(!loaded.server.work_stealing, "one thread: nothing to steal");

    let dir = std::env::temp_dir().join(format!("tunnel-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.yaml");
    std::fs::write(
        &path,
        "fast_timeout_to_tokio_threshold_seconds: 900\ngrace_period_seconds: 1\nwork_stealing: true\n",
    )
    .unwrap();
    let with_file =
        cli::Cli::try_parse_from(["prometheus-tunnel", "-c", path.to_str().unwrap()]).unwrap();
    let loaded = load(&with_file, &env).expect("valid");
    assert_eq!(
        loaded.server.fast_timeout_to_tokio_threshold_seconds,
        Some(900)
    );
    assert_eq!(loaded.server.grace_period_seconds, Some(1));
    assert!(loaded.server.work_stealing, "as the file says");

    std::fs::write(&path, "threads: 1\nwork_stealing: true\n").unwrap();
    let loaded = load(&with_file, &env).expect("valid");
    assert!(
        loaded.server.work_stealing,
        "as the file says, with one thread too"
    );
    std::fs::write(&path, "threads: 4\n").unwrap();
    let loaded = load(&with_file, &env).expect("valid");
    assert!(
        loaded.server.work_stealing,
        "Pingora's default with several threads"
    );
    std::fs::write(&path, "threads: 1\n").unwrap();
    let loaded = load(&with_file, &env).expect("valid");
    assert!(!loaded.server.work_stealing, "one thread named in the file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_port_is_not_compared_as_its_default() {
    // LISTEN_PORT is refused; METRICS_PORT=8080 (LISTEN_PORT's default) is not a second
    // problem, and neither is an exporter on this machine at port 8080.
    let env = HashMap::from([
        ("SERVER_IP", "127.0.0.1"),
        ("SERVER_PORT", "8080"),
        ("LISTEN_PORT", "0"),
        ("METRICS_PORT", "8080"),
    ]);
    let errors = lines(merge(FileLayer::default(), &env, vec![]).unwrap_err());
    assert_eq!(errors, ["LISTEN_PORT=\"0\": expected a port 1-65535"]);
}

#[test]
fn a_refused_scheme_does_not_refuse_its_tls_settings() {
    let env = HashMap::from([
        ("SERVER_IP", "10.0.0.1"),
        ("SERVER_SCHEME", "htps"),
        ("TLS_SERVER_NAME", "exporter.local"),
    ]);
    let errors = lines(merge(FileLayer::default(), &env, vec![]).unwrap_err());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("SERVER_SCHEME=\"htps\""),
        "{errors:?}"
    );
}

#[test]
fn files_of_refused_settings_are_listed_for_checking() {
    let env = HashMap::from([
        ("SERVER_IP", "10.0.0.1"),
        ("SERVER_PORT", "x"),
        ("BEARER_TOKEN_FILE", "/run/secret/token"),
    ]);
    let refused = merge(FileLayer::default(), &env, vec![]).unwrap_err();
    assert_eq!(refused.errors.len(), 1);
    assert!(matches!(
        refused.files.as_slice(),
        [NamedFile::Secret(Credentials::Bearer { token_file })]
            if token_file.path() == Path::new("/run/secret/token")
    ));
}

#[test]
fn each_target_is_checked_in_its_own_scope() {
    // The top level names a token file; target a names basic auth, which replaces it whole;
    // target b inherits it. Nothing of a's scope leaks into b's.
    let targets = specs(
        "tunnel:\n  targets:\n  - {name: a, address: 10.0.0.1:9100, scheme: https, auth: {basic_auth_username: u, basic_auth_password_file: /p}}\n  - {name: b, address: 10.0.0.2:9100}\n",
    );
    let env = HashMap::from([("BEARER_TOKEN_FILE", "/t")]);
    let layer = FileLayer {
        targets: &targets,
        path: Some(Path::new("t.yaml")),
        ..FileLayer::default()
    };
    let c = merge(layer, &env, vec![]).expect("valid");
    assert!(matches!(
        &c.targets[0].exporter.auth,
        Some(Credentials::Basic { username, .. }) if username == "u"
    ));
    assert_eq!(c.targets[0].exporter.scheme, Scheme::Https);
    assert!(matches!(
        &c.targets[1].exporter.auth,
        Some(Credentials::Bearer { token_file }) if token_file.path() == Path::new("/t")
    ));
    assert_eq!(c.targets[1].exporter.scheme, Scheme::Http);
}
