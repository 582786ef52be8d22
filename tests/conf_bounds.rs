//! Configuration that is too large or carries secrets: a conf file is bounded in size and in
//! what its YAML aliases expand to, a refused value is cut short in the error line, and a
//! forward proxy's password never appears in one, at start-up or on a reload.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::upstream::Exporter;
use common::{base_command, exporter_page, free_port, get, write_file, Tunnel};

/// Runs the binary to its end (bounded at 60 s) and returns its output.
fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = base_command()
        .envs(env.iter().copied())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the tunnel");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A conf whose 6,000 targets each reuse one anchored set of 1,000 labels: under 400 KB of
/// YAML that stands for about a gigabyte once aliases are expanded.
fn alias_bomb(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from(
        "tunnel:\n  targets:\n  - name: t0\n    address: 10.0.0.1:9100\n    labels: &l\n",
    );
    for i in 0..1000 {
        text.push_str(&format!("      label_{i}: value_{i}\n"));
    }
    for i in 1..6_000 {
        text.push_str(&format!(
            "  - {{name: t{i}, address: 10.0.0.1:9100, labels: *l}}\n"
        ));
    }
    write_file(dir, "bomb.yaml", &text)
}

#[test]
fn a_conf_file_is_bounded_in_size_and_in_alias_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = alias_bomb(dir.path());
    assert!(std::fs::metadata(&bomb).unwrap().len() < 400_000);
    let out = run(&[], &["-t", "-c", bomb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("more than 32 MiB once its YAML aliases are expanded"),
        "{stderr}"
    );

    let huge = dir.path().join("huge.yaml");
    let mut text = String::from("tunnel:\n  server_ip: 10.0.0.1\n# ");
    text.push_str(&"x".repeat(17 * 1024 * 1024));
    std::fs::write(&huge, text).unwrap();
    let out = run(&[], &["-t", "-c", huge.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
}

#[test]
fn a_long_value_is_cut_short_in_its_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!(
        "tunnel:\n  server_ip: 10.0.0.1\n  server_port: \"{}\"\n",
        "9".repeat(10 * 1024 * 1024)
    );
    let conf = write_file(dir.path(), "long.yaml", &long);
    let out = run(&[], &["-t", "-c", conf.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr.lines().count(),
        1,
        "{}",
        &stderr[..stderr.len().min(500)]
    );
    assert!(stderr.len() < 1024, "a {}-byte error line", stderr.len());
    assert!(stderr.contains("... (10485760 bytes)"), "{stderr}");
    assert!(stderr.contains("expected a port 1-65535"), "{stderr}");
}

const BAD_PROXY: &str = "http://scraper:S3CRET@proxy.corp:notaport";

/// `out` is a refusal that names the proxy without its password.
fn refused_without_password(out: &Output, names: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains("S3CRET"),
        "the password is shown: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{names}=\"http://scraper:***@proxy.corp:notaport\""
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_proxy_url_is_refused_without_its_password() {
    let (lp, mp) = (free_port().to_string(), free_port().to_string());
    let base = [
        ("SERVER_IP", "10.0.0.1"),
        ("LISTEN_PORT", lp.as_str()),
        ("METRICS_PORT", mp.as_str()),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut env = base.to_vec();
        env.push(extra);
        env
    };
    refused_without_password(
        &run(&with(("UPSTREAM_PROXY", BAD_PROXY)), &[]),
        "UPSTREAM_PROXY",
    );
    refused_without_password(&run(&with(("http_proxy", BAD_PROXY)), &[]), "http_proxy");
    // The agent's way to the tunnel is a proxy URL too.
    refused_without_password(
        &run(&[("TUNNEL_PROXY", BAD_PROXY)], &["agent"]),
        "TUNNEL_PROXY",
    );
    refused_without_password(
        &run(&base, &["--upstream-proxy", BAD_PROXY]),
        "--upstream-proxy",
    );
    let dir = tempfile::tempdir().unwrap();
    let key = write_file(
        dir.path(),
        "key.yaml",
        &format!("tunnel:\n  upstream_proxy: {BAD_PROXY}\n"),
    );
    refused_without_password(
        &run(&base, &["-c", key.to_str().unwrap()]),
        &format!("tunnel.upstream_proxy in {}", key.display()),
    );
    let target = write_file(
        dir.path(),
        "target.yaml",
        &format!("tunnel:\n  targets:\n  - name: a\n    address: 10.0.0.1:9100\n    proxy: {BAD_PROXY}\n"),
    );
    refused_without_password(
        &run(&base[1..], &["-c", target.to_str().unwrap()]),
        &format!("targets[a].proxy in {}", target.display()),
    );
}

#[test]
fn a_reload_refused_for_a_bad_proxy_or_a_bomb_logs_once_without_the_password_and_keeps_serving() {
    let page = exporter_page(300);
    let exporter = Exporter::start(page.clone());
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "tunnel:\n  targets:\n  - name: a\n    address: 127.0.0.1:{}\n",
        exporter.port
    );
    let conf = write_file(dir.path(), "tunnel.yaml", &good);
    let tunnel = Tunnel::start_without_exporter(&[], &["-c", conf.to_str().unwrap()]);
    assert_eq!(get(&tunnel.url("/metrics?target=a")).status, 200);

    std::fs::write(&conf, format!("{good}    proxy: {BAD_PROXY}\n")).unwrap();
    let log = tunnel.log_with("reload (the conf file changed) refused");
    assert!(!log.contains("S3CRET"), "{log}");
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert!(refusals[0].contains("http://scraper:***@proxy.corp:notaport"));
    assert_eq!(get(&tunnel.url("/metrics?target=a")).status, 200);

    // An alias bomb is refused before it costs memory.
    let bomb = alias_bomb(dir.path());
    std::fs::copy(&bomb, &conf).unwrap();
    let log = tunnel.log_with("once its YAML aliases are expanded");
    assert!(
        log.contains("more than 32 MiB once its YAML aliases are expanded"),
        "{log}"
    );
    let answer = get(&tunnel.url("/metrics?target=a"));
    assert!(answer.status == 200 && answer.body == page);
    let m = tunnel.metrics();
    let rss_mib = m.value("process_resident_memory_bytes", &[]) / 1048576.0;
    assert!(rss_mib < 100.0, "{rss_mib:.0} MiB after refusing the bomb");
}

#[test]
fn a_target_takes_its_proxy_url_from_a_file_and_its_password_stays_out_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = write_file(dir.path(), "proxy-url", &format!("{BAD_PROXY}\n"));
    let conf = write_file(
        dir.path(),
        "fleet.yaml",
        &format!(
            "tunnel:\n  targets:\n  - name: a\n    address: 10.0.0.1:9100\n    proxy_file: {}\n",
            url.display()
        ),
    );
    let (lp, mp) = (free_port().to_string(), free_port().to_string());
    let env = [("LISTEN_PORT", lp.as_str()), ("METRICS_PORT", mp.as_str())];
    let out = run(&env, &["-c", conf.to_str().unwrap()]);
    refused_without_password(
        &out,
        &format!("targets[a].proxy_file in {}", conf.display()),
    );

    std::fs::write(&url, "socks5h://scraper:S3CRET@bastion:1080\n").unwrap();
    let out = run(&env, &["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let both = write_file(
        dir.path(),
        "both.yaml",
        &format!(
            "tunnel:\n  targets:\n  - name: a\n    address: 10.0.0.1:9100\n    proxy: http://p:3128\n    proxy_file: {}\n",
            url.display()
        ),
    );
    let out = run(&env, &["-t", "-c", both.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("either proxy or proxy_file, not both"));
}
