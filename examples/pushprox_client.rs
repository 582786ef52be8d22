//! A PushProx-protocol client, for the reverse-mode bench and for trying reverse mode where
//! PushProx's own Go client is not at hand. It is the client the tests drive
//! (`tests/common/pushprox.rs`, written from PushProx's client), run on its own:
//!
//! ```text
//! cargo run --release --example pushprox_client -- --fqdn node-a --proxy 127.0.0.1:8081
//! ```
//!
//! `--resolve-to ADDR` makes every scrape go to ADDR, whatever name it carries (the bench's
//! exporter has no DNS name). It polls until killed. Not the product: deploy PushProx's client,
//! or the tunnel's own agent when it exists.

#[path = "../tests/common/pushprox.rs"]
mod pushprox;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut fqdn = None;
    let mut proxy = None;
    let mut resolve_to = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--fqdn", Some(v)) => fqdn = Some(v),
            ("--proxy", Some(v)) => proxy = v.parse::<SocketAddr>().ok(),
            ("--resolve-to", Some(v)) => resolve_to = v.parse::<IpAddr>().ok(),
            _ => {
                eprintln!(
                    "usage: pushprox_client --fqdn NAME --proxy HOST:PORT [--resolve-to ADDR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (Some(fqdn), Some(proxy)) = (fqdn, proxy) else {
        eprintln!("usage: pushprox_client --fqdn NAME --proxy HOST:PORT [--resolve-to ADDR]");
        return ExitCode::from(2);
    };
    let mut options = pushprox::Options::new(&fqdn, proxy);
    if let Some(addr) = resolve_to {
        options.resolve_to = addr;
    }
    let client = pushprox::PushProxClient::start(options);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        let counts = client.counts();
        let load =
            |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "polls {} (errors {}), scrapes {} (failed {}), pushes {}",
            load(&counts.polls),
            load(&counts.poll_errors),
            load(&counts.scrapes),
            load(&counts.failed_scrapes),
            load(&counts.pushes)
        );
    }
}
