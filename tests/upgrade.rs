//! Pingora's zero-downtime upgrade: a new tunnel started with `-u` takes over the listening
//! sockets of the running one (SIGQUIT), and not one scrape of a steady load fails.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::upstream::Exporter;
use common::{base_command, exporter_page, get, write_file, Helper, Tunnel};

#[test]
fn upgrade_under_steady_load_fails_no_scrape() {
    let page = exporter_page(8 * 1024);
    let exporter = Exporter::start(page.clone());
    let dir = tempfile::tempdir().unwrap();
    let conf = write_file(
        dir.path(),
        "tunnel.yaml",
        &format!(
            "version: 1\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n\
             upgrade_sock: {}\npid_file: {}\n",
            dir.path().join("upgrade.sock").display(),
            dir.path().join("tunnel.pid").display()
        ),
    );
    let conf = conf.to_str().unwrap().to_string();
    let mut old = Tunnel::start_with(exporter.port, &[], &["-c", &conf]);
    let old_pid = old.pid();

    // Steady load from four keep-alive clients.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let url = old.url("/metrics");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
            let expected = page.len();
            thread::spawn(move || {
                let agent = common::agent();
                while !stop.load(Ordering::Relaxed) {
                    let good = agent
                        .get(&url)
                        .call()
                        .ok()
                        .and_then(|r| r.into_string().ok())
                        .is_some_and(|body| body.len() == expected);
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));

    // The new process waits on the upgrade socket for the old one's listeners.
    let new_log = dir.path().join("new.log");
    let new = base_command()
        .env("SERVER_IP", "127.0.0.1")
        .env("SERVER_PORT", exporter.port.to_string())
        .env("LISTEN_ADDRESS", "127.0.0.1")
        .env("LISTEN_PORT", old.proxy_port.to_string())
        .env("METRICS_PORT", old.metrics_port.to_string())
        .args(["-u", "-c", &conf])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .expect("start the new tunnel");
    let new = Helper(new);
    thread::sleep(Duration::from_millis(500));
    old.signal("QUIT");
    let status = old.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "old tunnel: {}", old.log());
    let ok_at_handover = ok.load(Ordering::Relaxed);

    // The new process alone serves now.
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) < ok_at_handover + 100 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new tunnel does not serve; its log:\n{}",
            std::fs::read_to_string(&new_log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} of {} scrapes failed across the upgrade; new log:\n{}",
        ok + failed,
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
    assert!(ok > ok_at_handover, "no scrape after the handover");
    assert_eq!(
        get(&format!("http://127.0.0.1:{}/healthz", old.metrics_port)).status,
        200
    );
    assert_ne!(new.0.id(), old_pid);
}
