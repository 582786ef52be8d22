//! Bad settings are refused before any port is bound: exit 2 within a second, one line naming
//! the setting, the value and what is expected.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{base_command, free_port, write_file};

/// Runs the binary with `env` and `args`, requiring it to end within a second.
fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let started = Instant::now();
    let output = base_command()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run the tunnel");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?} to refuse",
        started.elapsed()
    );
    output
}

fn refused(env: &[(&str, &str)], args: &[&str], expected_line: &str) {
    let out = run(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.lines().any(|l| l.contains(expected_line)),
        "no line containing {expected_line:?} in:\n{stderr}"
    );
}

#[test]
fn bad_values_exit_2_naming_them() {
    // Ports that are surely free, so only the bad value can be the reason.
    let (lp, mp) = (free_port().to_string(), free_port().to_string());
    let base = [("LISTEN_PORT", lp.as_str()), ("METRICS_PORT", mp.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        env.extend_from_slice(extra);
        env
    };
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("SERVER_PORT", "abc")]),
        &[],
        "SERVER_PORT=\"abc\": expected a port 1-65535",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("SERVER_PORT", "70000")]),
        &[],
        "SERVER_PORT=\"70000\": expected a port 1-65535",
    );
    refused(
        &with(&[("SERVER_IP", "")]),
        &[],
        "SERVER_IP=\"\": expected an IPv4 address, an IPv6 address or a DNS name",
    );
    refused(
        &[
            ("SERVER_IP", "10.0.0.1"),
            ("LISTEN_PORT", &lp),
            ("METRICS_PORT", &lp),
        ],
        &[],
        &format!("METRICS_PORT=\"{lp}\": expected a port other than LISTEN_PORT ({lp})"),
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("UPSTREAM_TIMEOUT", "forever")]),
        &[],
        "UPSTREAM_TIMEOUT=\"forever\": expected a duration",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1")]),
        &["--server-scheme", "gopher"],
        "--server-scheme=\"gopher\": expected http or https",
    );
    refused(&base, &[], "SERVER_IP is not set");
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("TARGET_PARAM", "exporter")]),
        &[],
        "TARGET_PARAM=\"exporter\": expected tunnel.targets with it",
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = write_file(
        dir.path(),
        "multi.yaml",
        "tunnel:\n  targets:\n  - name: a\n    address: 10.0.0.1:9100\n",
    );
    refused(
        &with(&[("TARGET_PARAM", "ex porter")]),
        &["-c", conf.to_str().unwrap()],
        "TARGET_PARAM=\"ex porter\": expected a query parameter name",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let out = run(
        &[("SERVER_IP", ""), ("SERVER_PORT", "x"), ("DEBUG", "maybe")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn refused_files_are_reported_with_refused_settings() {
    // A refused setting and an unreadable certificate: both in one run, though the files are
    // read only after the settings are checked.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent-ca.pem");
    let out = run(
        &[
            ("SERVER_IP", "10.0.0.1"),
            ("SERVER_SCHEME", "https"),
            ("SERVER_PORT", "x"),
            ("TLS_CA_FILE", missing.to_str().unwrap()),
            ("BEARER_TOKEN_FILE", ""),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    assert!(
        stderr.contains("SERVER_PORT=\"x\": expected a port"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TLS_CA_FILE=") && stderr.contains("expected a readable PEM file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("BEARER_TOKEN_FILE=\"\": expected a readable file"),
        "{stderr}"
    );
}

#[test]
fn conf_file_problems_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = write_file(
        dir.path(),
        "unknown.yaml",
        "tunnel:\n  server_ip: 10.0.0.1\n  sever_port: 9100\n",
    );
    refused(
        &[],
        &["-c", unknown.to_str().unwrap()],
        "unknown key `sever_port`",
    );

    let top = write_file(dir.path(), "top.yaml", "version: 1\ntreads: 2\n");
    refused(
        &[],
        &["-c", top.to_str().unwrap()],
        "unknown top-level key \"treads\"",
    );

    let bad_value = write_file(
        dir.path(),
        "value.yaml",
        "tunnel:\n  server_ip: 10.0.0.1\n  server_port: 0\n",
    );
    refused(
        &[],
        &["-c", bad_value.to_str().unwrap()],
        &format!(
            "tunnel.server_port in {}=\"0\": expected a port 1-65535",
            bad_value.display()
        ),
    );

    let missing = dir.path().join("missing.yaml");
    refused(
        &[],
        &["-c", missing.to_str().unwrap()],
        &format!("conf file {:?}", missing.display().to_string()),
    );
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_file(
        dir.path(),
        "c.yaml",
        "tunnel:\n  server_ip: 10.0.0.1\n  server_port: abc\n",
    );
    // The file's bad port is overridden by a good env value: the conf checks out.
    let out = run(
        &[("SERVER_PORT", "9100")],
        &["-t", "-c", conf.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    // A bad flag beats a good env value, and is named as the flag.
    refused(
        &[("SERVER_PORT", "9100")],
        &["-t", "-c", conf.to_str().unwrap(), "--server-port", "99999"],
        "--server-port=\"99999\": expected a port 1-65535",
    );
}

#[test]
fn the_example_conf_checks_out() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tunnel.yaml");
    let out = run(&[], &["-t", "-c", conf]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_documents_every_setting() {
    let out = run(&[], &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for setting in prometheus_tunnel::config::Setting::ALL {
        let line = format!(
            "[env: {}] [conf: tunnel.{}] [default: {}]",
            setting.env(),
            setting.key(),
            setting.default_text().replace('`', "")
        );
        assert!(
            help.contains(&setting.flag()),
            "--help has no {}:\n{help}",
            setting.flag()
        );
        assert!(help.contains(&line), "--help lacks {line:?}:\n{help}");
    }
    for pingora in ["--conf", "--test", "--daemon", "--upgrade"] {
        assert!(help.contains(pingora), "--help has no {pingora}:\n{help}");
    }
}

#[test]
fn a_port_in_use_is_refused_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mp = free_port().to_string();
    refused(
        &[
            ("SERVER_IP", "10.0.0.1"),
            ("LISTEN_ADDRESS", "127.0.0.1"),
            ("LISTEN_PORT", &port),
            ("METRICS_PORT", &mp),
        ],
        &[],
        &format!("cannot listen on 127.0.0.1:{port}"),
    );
}

#[test]
fn reverse_mode_settings_are_checked() {
    let (lp, mp, pp) = (
        free_port().to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let base = [("LISTEN_PORT", lp.as_str()), ("METRICS_PORT", mp.as_str())];
    let with = |extra: &[(&'static str, &str)]| {
        let mut env: Vec<(&str, String)> = base.iter().map(|(k, v)| (*k, v.to_string())).collect();
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    };
    let run_with = |extra: &[(&'static str, &str)], expected: &str| {
        let env = with(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        refused(&env, &[], expected);
    };
    run_with(
        &[("SERVER_IP", "10.0.0.1"), ("POLL_KEEPALIVE", "5s")],
        "POLL_KEEPALIVE=\"5s\": expected POLL_PORT with it",
    );
    run_with(
        &[("POLL_PORT", lp.as_str())],
        "expected a port other than LISTEN_PORT",
    );
    run_with(
        &[("POLL_PORT", pp.as_str()), ("POLL_BIND_NAMES", "true")],
        "POLL_BIND_NAMES=\"true\": expected POLL_TLS_CLIENT_CA_FILE with it",
    );
    run_with(
        &[("POLL_PORT", pp.as_str()), ("POLL_MAX_PUSH_SIZE", "10")],
        "POLL_MAX_PUSH_SIZE=\"10\": expected a size from 1KiB to 16GiB",
    );
    run_with(
        &[("POLL_PORT", pp.as_str()), ("POLL_MAX_POLLS_PER_NAME", "0")],
        "POLL_MAX_POLLS_PER_NAME=\"0\": expected a whole number",
    );
    // Reverse mode alone needs no exporter.
    let env = with(&[("POLL_PORT", pp.as_str())]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(&env, &["-t"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn agent_mode_settings_are_checked_in_both_roles() {
    let (lp, mp, ap) = (
        free_port().to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let ports = [("LISTEN_PORT", lp.as_str()), ("METRICS_PORT", mp.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = ports.to_vec();
        env.extend_from_slice(extra);
        env
    };
    // The tunnel: an agent port needs mutual TLS, its own port, and agent settings need it.
    refused(
        &[
            ("AGENT_PORT", ap.as_str()),
            ("LISTEN_PORT", lp.as_str()),
            ("METRICS_PORT", mp.as_str()),
        ],
        &[],
        "expected AGENT_TLS_CERT_FILE, AGENT_TLS_KEY_FILE and AGENT_TLS_CLIENT_CA_FILE with it",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("AGENT_MAX_STREAMS", "5")]),
        &[],
        "AGENT_MAX_STREAMS=\"5\": expected AGENT_PORT with it",
    );
    refused(
        &[
            ("AGENT_PORT", lp.as_str()),
            ("LISTEN_PORT", lp.as_str()),
            ("METRICS_PORT", mp.as_str()),
        ],
        &[],
        "expected a port other than LISTEN_PORT",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("TUNNEL_ADDRESS", "tunnel:9443")]),
        &[],
        "TUNNEL_ADDRESS=\"tunnel:9443\": expected `prometheus-tunnel agent` with it",
    );
    refused(
        &with(&[("AGENT_PORT", "9999"), ("PEERS", "x")]),
        &[],
        "PEERS=\"x\": expected HOST:PORT entries",
    );
    // The agent: it must know where the tunnel is and who it is, and listens on nothing.
    refused(
        &with(&[("SERVER_IP", "10.0.0.1")]),
        &["agent"],
        "TUNNEL_ADDRESS is not set",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("TUNNEL_ADDRESS", "tunnel:9443")]),
        &["agent"],
        "TUNNEL_CLIENT_CERT_FILE is not set",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("TUNNEL_ADDRESS", "tunnel")]),
        &["agent"],
        "TUNNEL_ADDRESS=\"tunnel\": expected HOST:PORT",
    );
    refused(
        &with(&[("SERVER_IP", "10.0.0.1"), ("POLL_PORT", "9999")]),
        &["agent"],
        "POLL_PORT=\"9999\": expected the tunnel's role",
    );
    refused(&with(&[]), &["agent"], "SERVER_IP is not set");
}
