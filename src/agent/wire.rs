//! What the tunnel and an agent say to each other on the connection the agent dialled, where
//! the tunnel is the HTTP/2 client and the agent the server.
//!
//! - A scrape is one stream: the scrape's own request line and headers (path and query as
//!   Prometheus sent them, the routing parameter removed), with [`TARGET_HEADER`] naming the
//!   exporter among the agent's. The agent's answer is the exporter's, streamed.
//! - The agent's exporters are learnt by a long poll of [`ANNOUNCE_PATH`]: the first answer
//!   comes at once; with `?after=GENERATION` the agent holds the request until its exporters
//!   change (a reload), or [`ANNOUNCE_HOLD`] passes. The request carries this replica's id and
//!   the number of replicas ([`REPLICA_HEADER`], [`REPLICAS_HEADER`]); an agent that already
//!   holds a connection to that replica answers `409`, and the tunnel closes the newer one.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};

/// The path of the announcement.
pub const ANNOUNCE_PATH: &str = "/.prometheus-tunnel/announce";
/// The header naming the exporter a scrape is for.
pub const TARGET_HEADER: HeaderName = HeaderName::from_static("prometheus-tunnel-target");
/// The header with the id of the replica that sends the announcement request.
pub const REPLICA_HEADER: HeaderName = HeaderName::from_static("prometheus-tunnel-replica");
/// The header with the number of replicas the tunnel runs as.
pub const REPLICAS_HEADER: HeaderName = HeaderName::from_static("prometheus-tunnel-replicas");
/// On a scrape one replica forwards to another: the forwarding replica's id. A scrape that
/// carries it is never forwarded again.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static("prometheus-tunnel-forwarded");
/// On an agent's answer: the scrape failed at the agent, of this kind (a label value of
/// `proxy_upstream_errors_total`), and the status and body say why. The tunnel answers and
/// counts it as it would a failure of its own forwarding.
pub const FAILURE_HEADER: HeaderName = HeaderName::from_static("prometheus-tunnel-failure");
/// How long an agent holds an announcement request whose exporters did not change.
pub const ANNOUNCE_HOLD: Duration = Duration::from_secs(30);
/// The largest announcement the tunnel reads.
pub const MAX_ANNOUNCEMENT: usize = 16 << 20;

/// An agent's exporters, as it announces them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Bumped by the agent whenever its exporters change.
    pub generation: u64,
    /// Its exporters.
    pub targets: Vec<AnnouncedTarget>,
}

/// One exporter an agent serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedTarget {
    /// Its name, which Prometheus scrapes by (`?target=NAME`).
    pub name: String,
    /// Its address as the agent reaches it (`host:port`), for `/targets`.
    pub address: String,
    /// Labels for `/targets`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The `after` parameter of an announcement request's query, if any.
pub fn after_generation(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_is_read_from_the_query() {
        assert_eq!(after_generation(Some("after=7")), Some(7));
        assert_eq!(after_generation(Some("x=1&after=12")), Some(12));
        assert_eq!(after_generation(Some("after=x")), None);
        assert_eq!(after_generation(None), None);
    }

    #[test]
    fn an_announcement_reads_back_as_written() {
        let a = Announcement {
            generation: 3,
            targets: vec![AnnouncedTarget {
                name: "node1".into(),
                address: "127.0.0.1:9100".into(),
                labels: [("site".to_string(), "a".to_string())].into(),
            }],
        };
        let text = serde_json::to_string(&a).expect("serializes");
        assert_eq!(
            serde_json::from_str::<Announcement>(&text).expect("parses"),
            a
        );
    }
}
