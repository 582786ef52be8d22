//! Whether the tunnel is ready for traffic, for `/readyz`: every port that takes it (proxy,
//! poll, agent) is bound.

use std::net::{SocketAddr, TcpListener};

/// The first of `ports` that is not bound yet, by name: Pingora starts each port's service
/// apart, so the poll and agent ports may bind after the proxy port.
pub(super) fn not_listening(ports: &[(&'static str, SocketAddr)]) -> Option<&'static str> {
    ports
        .iter()
        .find(|(_, addr)| !is_listening(*addr))
        .map(|p| p.0)
}

/// Whether a port is bound: binding it must fail as taken. The tunnel found it free
/// at start (`main`'s port check), so taken means taken by its listener (or, during a
/// zero-downtime upgrade, by the old process's, which hands it over).
///
/// Pingora reports a listening service as started before it binds its listeners, and a bind
/// failure there ends only that service's thread, so neither the order of start-up nor this
/// port answering proves the port listens. One `bind` per probe does.
fn is_listening(addr: SocketAddr) -> bool {
    match TcpListener::bind(addr) {
        // Free: nothing listens there; the probe's own socket closes at once.
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::AddrInUse,
    }
}

#[cfg(test)]
mod tests {
    use super::not_listening;
    use std::net::TcpListener;

    #[test]
    fn ready_only_while_every_traffic_port_is_bound() {
        let proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
        let poll = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ports = [
            ("proxy port", proxy.local_addr().expect("addr")),
            ("poll port", poll.local_addr().expect("addr")),
        ];
        assert_eq!(
            not_listening(&ports),
            None,
            "bound ports count as listening"
        );
        drop(poll);
        // The proxy port alone was what /readyz probed: a poll port not bound yet passed.
        assert_eq!(not_listening(&ports), Some("poll port"));
        assert_eq!(
            not_listening(&ports),
            Some("poll port"),
            "the probe kept nothing"
        );
        drop(proxy);
        assert_eq!(not_listening(&ports), Some("proxy port"));
    }
}
