//! The status page (`/`) and its data (`/status`) against the built binary: one target up, one
//! refusing, one timing out; what each shows, in which order, after a reload, with no secret
//! in it; and in a real browser (Debian's Chromium), which renders it, filters and sorts it,
//! refreshes it, and takes the screenshot kept as a test artifact (and shown in the README).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::browser::{self, Page};
use common::upstream::Exporter;
use common::{closed_port, get, write_file, Tunnel};
use serde_json::{json, Value};

/// The page the `up` exporter serves.
const PAGE: &str = "node_up 1\n";

/// A fleet conf: `up` and `slow` on their exporters, `refused` on a port nothing listens on;
/// `slow` is given up on after 1 s.
fn conf_text(up: u16, slow: u16, extra: &str) -> String {
    let head = "version: 1\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n";
    format!(
        "{head}tunnel:\n  targets:\n  - name: up\n    address: 127.0.0.1:{up}\n  - name: refused\n    address: 127.0.0.1:{refused}\n  - name: slow\n    address: 127.0.0.1:{slow}\n    timeout: 1s\n{extra}",
        refused = closed_port()
    )
}

/// The three exporters' tunnel, each target scraped (`up` twice), and its conf file.
struct Fleet {
    tunnel: Tunnel,
    conf: PathBuf,
    _dir: tempfile::TempDir,
    _up: Exporter,
    _slow: Exporter,
}

fn fleet() -> Fleet {
    let up = Exporter::start(PAGE.as_bytes().to_vec());
    let slow = Exporter::start(PAGE.as_bytes().to_vec());
    slow.set_delay(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tunnel.yaml");
    std::fs::write(&conf, conf_text(up.port, slow.port, "")).unwrap();
    let tunnel = Tunnel::start_without_exporter(&[], &["-c", conf.to_str().unwrap()]);
    for (target, status) in [("up", 200), ("refused", 502), ("slow", 504), ("up", 200)] {
        let answer = get(&tunnel.url(&format!("/metrics?target={target}")));
        assert_eq!(answer.status, status, "{target}");
    }
    // A scrape is recorded just after its answer is sent: the tests start once all four are.
    wait_for(&tunnel, |s| {
        s["targets"].as_array().is_some_and(|targets| {
            targets
                .iter()
                .filter_map(|t| t["scrapes5m"].as_u64())
                .sum::<u64>()
                == 4
        })
    });
    Fleet {
        tunnel,
        conf,
        _dir: dir,
        _up: up,
        _slow: slow,
    }
}

fn status(tunnel: &Tunnel) -> Value {
    let answer = get(&tunnel.admin_url("/status"));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    serde_json::from_slice(&answer.body).expect("/status is JSON")
}

fn target<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in /status: {status}"))
}

#[test]
fn the_json_says_which_target_is_up_refused_or_timing_out() {
    let fleet = fleet();
    let report = status(&fleet.tunnel);
    let names: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["refused", "slow", "up"], "failing targets first");

    let up = target(&report, "up");
    assert_eq!(up["state"], "ok");
    assert_eq!(up["source"], "config");
    assert!(up["address"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert_eq!(up["lastScrape"]["status"], 200);
    assert_eq!(up["lastScrape"]["bytes"], PAGE.len());
    assert!(up["lastScrape"]["durationSeconds"].as_f64().unwrap() < 1.0);
    assert!(up["lastFailure"].is_null());
    assert_eq!(
        (up["scrapes5m"].as_u64(), up["failures5m"].as_u64()),
        (Some(2), Some(0))
    );

    let refused = target(&report, "refused");
    assert_eq!(refused["state"], "failing");
    assert_eq!(refused["lastScrape"]["status"], 502);
    assert_eq!(refused["lastFailure"]["status"], 502);
    assert_eq!(
        refused["lastFailure"]["reason"],
        "the exporter refused the connection"
    );
    assert_eq!(refused["failures5m"], 1);

    let slow = target(&report, "slow");
    assert_eq!(slow["state"], "failing");
    assert_eq!(slow["lastFailure"]["status"], 504);
    assert_eq!(
        slow["lastFailure"]["reason"],
        "the exporter did not answer before the deadline"
    );
    let took = slow["lastScrape"]["durationSeconds"].as_f64().unwrap();
    assert!((0.9..2.5).contains(&took), "the 1 s deadline, took {took}");
    // Times are RFC 3339, and the failure is the last scrape.
    assert_eq!(slow["lastFailure"]["at"], slow["lastScrape"]["at"]);
    assert!(slow["lastFailure"]["at"].as_str().unwrap().ends_with('Z'));

    let tunnel = &report["tunnel"];
    let version: Value =
        serde_json::from_slice(&get(&fleet.tunnel.admin_url("/version")).body).unwrap();
    assert_eq!(tunnel["version"], version["version"]);
    assert_eq!(tunnel["gitCommit"], version["gitCommit"]);
    assert!(tunnel["residentMemoryBytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(tunnel["inFlightScrapes"], 0);
    assert!(tunnel["lastReload"].is_null());
    let setting = |name: &str| {
        tunnel["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not among the settings"))
            .clone()
    };
    assert_eq!(setting("LISTEN_PORT")["origin"], "env");
    assert_eq!(
        setting("LISTEN_PORT")["value"],
        fleet.tunnel.proxy_port.to_string()
    );
    assert_eq!(setting("UPSTREAM_TIMEOUT")["origin"], "default");
}

#[test]
fn the_page_without_scripts_is_a_table_filtered_by_the_server() {
    let fleet = fleet();
    let answer = get(&fleet.tunnel.admin_url("/"));
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = answer.body_string();
    assert_eq!(row_names(&page), ["refused", "slow", "up"]);
    assert!(page.contains("the exporter refused the connection"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "no external asset"
    );
    let filtered = get(&fleet.tunnel.admin_url("/?filter=SLOW")).body_string();
    assert_eq!(row_names(&filtered), ["slow"]);
    assert!(
        filtered.contains("value=\"slow\""),
        "the box keeps the filter"
    );
    assert!(
        filtered
            .contains(r#"<b id="total">3</b> targets, <b id="failing" class="bad">2</b> failing"#),
        "the summary counts every target, whatever the filter"
    );
    let by_reason = get(&fleet.tunnel.admin_url("/?filter=refused+the")).body_string();
    assert_eq!(row_names(&by_reason), ["refused"]);
}

#[test]
fn the_page_is_served_on_the_metrics_port_only() {
    let fleet = fleet();
    for path in ["/", "/status"] {
        let answer = get(&fleet.tunnel.url(path));
        assert_ne!(answer.status, 200, "{path} on the proxy port");
        assert!(!answer.body_string().contains("gitCommit"), "{path}");
        assert!(!answer.body_string().contains("<table"), "{path}");
    }
}

#[test]
fn a_reload_is_shown_and_kept_targets_keep_their_record() {
    let fleet = fleet();
    let before = status(&fleet.tunnel);
    let text = std::fs::read_to_string(&fleet.conf).unwrap();
    let added = format!(
        "{text}  - name: added\n    address: 127.0.0.1:{}\n",
        closed_port()
    );
    rewrite(&fleet.conf, &added);
    let report = wait_for(&fleet.tunnel, |s| !s["tunnel"]["lastReload"].is_null());
    let reload = &report["tunnel"]["lastReload"];
    assert_eq!(reload["applied"], true, "{reload}");
    assert_eq!(reload["trigger"], "the conf file changed");
    assert!(
        reload["detail"].as_str().unwrap().contains("1 added"),
        "{reload}"
    );
    assert_eq!(target(&report, "added")["state"], "unscraped");
    assert_eq!(
        target(&report, "up")["lastScrape"],
        target(&before, "up")["lastScrape"],
        "the reload kept the record of a kept target"
    );
    assert_eq!(target(&report, "up")["scrapes5m"], 2);

    rewrite(&fleet.conf, "tunnel:\n  targets: 12\n");
    let report = wait_for(&fleet.tunnel, |s| {
        s["tunnel"]["lastReload"]["applied"] == false
    });
    let detail = report["tunnel"]["lastReload"]["detail"].as_str().unwrap();
    assert!(detail.contains("keeping the 4 targets in use"), "{detail}");
    let page = get(&fleet.tunnel.admin_url("/")).body_string();
    assert!(
        page.contains(">refused</span> (the conf file changed"),
        "the page says the reload was refused"
    );
}

/// A conf of `count` targets, `t1` to `t{count}`, none of them listening.
fn growing_conf(count: usize) -> String {
    let port = closed_port();
    let targets: String = (1..=count)
        .map(|i| format!("  - {{name: t{i}, address: 127.0.0.1:{port}}}\n"))
        .collect();
    format!("tunnel:\n  targets:\n{targets}")
}

/// Stop 28's CI failure: the report read the targets, then the reload log; a reload that
/// landed between the two was shown beside the table it replaced. Every reload here adds a
/// target while two clients read `/status` without a pause: no report may show a reload
/// of N targets beside fewer, or a reload later than the report itself.
#[test]
fn a_report_that_shows_a_reload_shows_the_targets_it_loaded() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_file(dir.path(), "tunnel.yaml", &growing_conf(1));
    let tunnel = Tunnel::start_without_exporter(&[], &["-c", conf.to_str().unwrap()]);
    let url = tunnel.admin_url("/status");
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (url, done) = (url.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let client = common::agent();
                let (mut reports, mut with_reload) = (0, 0);
                while !done.load(Ordering::Relaxed) {
                    let answer = common::request(&client, "GET", &url, &[]);
                    let report: Value = serde_json::from_slice(&answer.body).expect("JSON");
                    reports += 1;
                    let reload = &report["tunnel"]["lastReload"];
                    assert_ne!(reload["applied"], false, "{reload}");
                    let Some(detail) = reload["detail"].as_str() else {
                        continue;
                    };
                    with_reload += 1;
                    let loaded: usize = detail
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("no count in {detail}"));
                    let shown = report["targets"].as_array().expect("targets").len();
                    assert!(shown >= loaded, "{detail}, but {shown} targets shown");
                    let (at, generated) = (&reload["at"], &report["generatedAt"]);
                    assert!(
                        at.as_str() <= generated.as_str(),
                        "a reload at {at} in a report of {generated}"
                    );
                }
                (reports, with_reload)
            })
        })
        .collect();
    let reloads = 200;
    for count in 2..=reloads + 1 {
        rewrite(&conf, &growing_conf(count));
        tunnel.signal("HUP");
        let loaded = format!(": {count} now, 1 added");
        let log = tunnel.log_with(&loaded);
        assert!(log.contains(&loaded), "no reload to {count} targets: {log}");
    }
    done.store(true, Ordering::Relaxed);
    let (mut reports, mut with_reload) = (0, 0);
    for reader in readers {
        let (read, shown) = reader.join().expect("a report was inconsistent");
        reports += read;
        with_reload += shown;
    }
    // About one report per reload at least, or the reports did not overlap the reloads.
    assert!(
        with_reload >= reloads,
        "only {with_reload} of {reports} reports showed a reload, over {reloads} reloads"
    );
}

#[test]
fn secrets_never_appear_in_the_page_or_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "token", "s3cret-token-value");
    let password = write_file(dir.path(), "password", "s3cret-password-value");
    let conf = write_file(
        dir.path(),
        "tunnel.yaml",
        &format!(
            "tunnel:\n  targets:\n  - name: guarded\n    address: 127.0.0.1:{port}\n    auth: {{bearer_token_file: {token}}}\n  - name: proxied\n    address: 127.0.0.1:{port}\n    proxy: http://user:pr0xy-pass@127.0.0.1:{port}\n",
            port = closed_port(),
            token = token.display()
        ),
    );
    let tunnel = Tunnel::start_without_exporter(
        &[
            ("UPSTREAM_PROXY", "socks5://admin:upstream-pass@127.0.0.1:1"),
            ("CLIENT_BASIC_AUTH_USERNAME", "prometheus"),
            (
                "CLIENT_BASIC_AUTH_PASSWORD_FILE",
                password.to_str().unwrap(),
            ),
        ],
        &["-c", conf.to_str().unwrap()],
    );
    let page = get(&tunnel.admin_url("/")).body_string();
    let json = get(&tunnel.admin_url("/status")).body_string();
    for shown in [&page, &json] {
        for secret in [
            "s3cret-token-value",
            "s3cret-password-value",
            "pr0xy-pass",
            "upstream-pass",
        ] {
            assert!(!shown.contains(secret), "{secret} shown");
        }
        // Paths of secret files are shown, and the masked proxies.
        assert!(shown.contains(password.to_str().unwrap()));
        assert!(shown.contains("socks5://admin:***@127.0.0.1:1"));
        assert!(shown.contains("http://user:***@127.0.0.1:1"));
    }
}

/// The names of the page's target rows, in order.
fn row_names(page: &str) -> Vec<String> {
    page.split("<tr ")
        .filter_map(|row| row.split("data-name=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(tunnel: &Tunnel, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let report = status(tunnel);
        if done(&report) {
            return report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not within 10 s: {report}\n{}",
            tunnel.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's headless Chromium run once with `args`; its standard output.
fn chromium(profile: &Path, args: &[&str]) -> String {
    browser::run(profile, args)
}

/// Where screenshots are kept: `target/test-artifacts`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_server_sorts_and_cuts_the_table_and_each_heading_links_to_its_order() {
    let fleet = fleet();
    let url = |query: &str| fleet.tunnel.admin_url(&format!("/{query}"));
    let page = get(&url("?sort=-name")).body_string();
    assert_eq!(row_names(&page), ["up", "slow", "refused"]);
    assert!(
        page.contains(r#"data-key="name" aria-sort="descending"><a href="?sort=name">"#),
        "{page}"
    );
    assert!(page.contains(r#"data-key="duration"><a href="?sort=duration">"#));
    let slowest = get(&url("?sort=-duration")).body_string();
    assert_eq!(row_names(&slowest)[0], "slow");
    let cut = get(&url("?limit=2&sort=name")).body_string();
    assert_eq!(row_names(&cut), ["refused", "slow"]);
    assert!(cut.contains("2</span> shown of 3 matching"), "{cut}");
    assert!(
        cut.contains(r#"href="?sort=name&amp;limit=all">show all</a>"#),
        "{cut}"
    );
    // The filter box keeps the order and the limit when submitted without scripts.
    assert!(cut.contains(r#"<input type="hidden" name="sort" value="name">"#));
    assert!(cut.contains(r#"<input type="hidden" name="limit" value="2">"#));
}

#[test]
fn a_real_browser_renders_filters_sorts_and_refreshes_the_page() {
    let fleet = fleet();
    let profile = tempfile::tempdir().unwrap();
    let url = fleet.tunnel.admin_url("/");
    // The script asks the server for the rows the address names: time for that answer.
    let settled = "--virtual-time-budget=3000";

    let dom = chromium(profile.path(), &["--dump-dom", &url]);
    assert_eq!(row_names(&dom), ["refused", "slow", "up"]);
    assert!(dom.contains("the exporter refused the connection"));
    assert!(dom.contains("the exporter did not answer before the deadline"));

    // The filter box, as typed (the script reads it from the address).
    let dom = chromium(
        profile.path(),
        &[settled, "--dump-dom", &format!("{url}#filter=SLO")],
    );
    assert_eq!(row_names(&dom), ["slow"]);
    assert!(dom.contains(r#"<span id="shown">1</span>"#));

    // Sorted by name, then by duration, longest first.
    let dom = chromium(
        profile.path(),
        &[settled, "--dump-dom", &format!("{url}#sort=-name")],
    );
    assert_eq!(row_names(&dom), ["up", "slow", "refused"]);
    assert!(dom.contains(r#"aria-sort="descending""#));
    let dom = chromium(
        profile.path(),
        &[settled, "--dump-dom", &format!("{url}#sort=-duration")],
    );
    assert_eq!(row_names(&dom)[0], "slow");

    // Refreshed from the tunnel (5 s of the browser's clock), the filter still applied.
    let dom = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=12000",
            "--dump-dom",
            &format!("{url}#filter=up"),
        ],
    );
    assert!(
        dom.contains("data-refreshes=\""),
        "the page refreshed itself"
    );
    assert_eq!(row_names(&dom), ["up"]);

    let shot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            "--window-size=1400,820",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
}

#[test]
fn a_click_on_a_heading_and_typing_in_the_box_ask_the_server_in_a_real_browser() {
    let fleet = fleet();
    let profile = tempfile::tempdir().unwrap();
    let mut page = Page::open(profile.path(), &fleet.tunnel.admin_url("/"));
    page.wait_loaded();
    let rows = "[...document.querySelectorAll('#target-rows tr')].map(r => r.dataset.name)";
    // After `action`, once the script has swapped in the server's answer: the rows.
    let after = |page: &mut Page, action: &str| -> Value {
        page.eval(&format!(
            "new Promise(done => {{ const before = document.body.dataset.refreshes || '0'; {action}; \
             const t = setInterval(() => {{ if ((document.body.dataset.refreshes || '0') !== before) \
             {{ clearInterval(t); done({rows}); }} }}, 20); setTimeout(() => done('no answer within 10 s'), 10000); }})"
        ))
    };
    let click_name = "document.querySelector('th[data-key=name] a').click()";
    assert_eq!(page.eval(rows), json!(["refused", "slow", "up"]));
    assert_eq!(
        after(&mut page, click_name),
        json!(["refused", "slow", "up"])
    );
    assert_eq!(
        after(&mut page, click_name),
        json!(["up", "slow", "refused"])
    );
    assert_eq!(page.eval("location.search"), "?sort=-name");
    let typed = "const f = document.getElementById('filter'); f.value = 'SL'; \
                 f.dispatchEvent(new Event('input'))";
    assert_eq!(after(&mut page, typed), json!(["slow"]));
    let search = page.eval("location.search");
    assert!(
        search
            .as_str()
            .is_some_and(|s| s.contains("filter=SL") && s.contains("sort=-name")),
        "{search}"
    );
}

#[test]
fn ten_thousand_targets_render_within_a_second_and_filter_in_the_browser() {
    let exporter = Exporter::start(PAGE.as_bytes().to_vec());
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("tunnel:\n  targets:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - name: t-{i:05}\n    address: 127.0.0.1:{}\n",
            exporter.port
        ));
    }
    let conf = write_file(dir.path(), "tunnel.yaml", &text);
    let tunnel = Tunnel::start_without_exporter(&[], &["-c", conf.to_str().unwrap()]);
    for i in (0..10_000).step_by(1000) {
        assert_eq!(
            get(&tunnel.url(&format!("/metrics?target=t-{i:05}"))).status,
            200
        );
    }
    // Every row, on the server: the best of three, the machine is shared.
    let mut best = Duration::MAX;
    let mut all = String::new();
    for _ in 0..3 {
        let start = Instant::now();
        all = get(&tunnel.admin_url("/?limit=all")).body_string();
        best = best.min(start.elapsed());
    }
    println!("all 10,000 rows ({} bytes) in {best:?}", all.len());
    assert!(best < Duration::from_secs(1), "{best:?}");
    assert_eq!(row_names(&all).len(), 10_000);

    // In the browser, the first 1,000 rows (a browser lays out 10,000 in seconds), and the
    // filter finds any of the 10,000.
    let profile = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let dom = chromium(profile.path(), &["--dump-dom", &tunnel.admin_url("/")]);
    println!("Chromium loaded the page in {:?}", start.elapsed());
    assert_eq!(row_names(&dom).len(), 1_000);
    assert!(dom.contains("1000</span> shown of 10000 matching"));
    let dom = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=3000",
            "--dump-dom",
            &tunnel.admin_url("/#filter=t-09999"),
        ],
    );
    assert_eq!(row_names(&dom), ["t-09999"]);
}
