//! Steps 3 to 5 for a scrape of a name an agent serves: to the agent's connection when it is
//! connected to this replica, else once to the replica that holds it, else `503` naming the
//! agent (or `404` for a name no agent ever announced).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::listener::ClientExchange;
use bytes::Bytes;
use http::Version;
use log::debug;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_http::RequestHeader;

use super::{deadline, RequestCtx, TunnelProxy};
use crate::agent::directory::Lookup;
use crate::agent::relay::{self, AgentScrapes};
use crate::agent::wire;
use crate::config::error::shown;
use crate::listener::respond::{refuse, respond};
use crate::proxy::forward::{Destination, ScrapeDeadline};
use crate::proxy::rewrite;
use crate::upstream::idle::IdleConnections;

impl TunnelProxy {
    /// Scrapes `name` (looked up as `lookup`) through its agent; `path` is the request line to
    /// send, when it differs from the request's (the routing parameter removed).
    pub(super) async fn scrape_agent(
        &self,
        agents: &AgentScrapes,
        lookup: Lookup,
        session: &mut ClientExchange,
        ctx: &mut RequestCtx,
        name: &str,
        path: Option<&str>,
    ) -> Result<()> {
        ctx.deadline = deadline(session.req_header(), agents.timeout);
        let forwarded = session
            .req_header()
            .headers
            .contains_key(&wire::FORWARDED_HEADER);
        let disconnected = match lookup {
            Lookup::Agent(route) => {
                ctx.client_metrics = Some(Arc::clone(&route.metrics));
                ctx.forwarded = true;
                let strip = self.access.requires_credentials();
                let limit = ctx.start + ctx.deadline;
                return relay::relay(session, &route, name, path, limit, agents.max_body, strip)
                    .await;
            }
            Lookup::Disconnected(agent, metrics) => Some((agent, metrics)),
            Lookup::Unknown => None,
        };
        // Another replica may hold the agent: once, never again from there.
        if let (Some(peers), false) = (&agents.peers, forwarded) {
            if let Some(route) = peers.route(name) {
                ctx.client_metrics = Some(Arc::clone(&route.metrics));
                ctx.forwarded = true;
                let own = peers.own_id().to_string();
                let replica = ReplicaPort {
                    address: route.proxy,
                    idle: &peers.idle,
                };
                return self
                    .forwarder
                    .forward(
                        session,
                        &replica,
                        ctx.scrape_deadline(),
                        |client: &RequestHeader| {
                            let mut req = Box::new(client.clone());
                            req.set_version(Version::HTTP_11);
                            rewrite::strip_hop_by_hop(&mut req);
                            req.insert_header(wire::FORWARDED_HEADER, own.as_str())?;
                            Ok(req)
                        },
                    )
                    .await
                    .map_err(|e| {
                        e.more_context(format!("forwarded to replica {}", route.replica))
                    });
            }
        }
        match disconnected {
            Some((agent, metrics)) => {
                ctx.client_metrics = Some(metrics);
                debug!(
                    "refused a scrape of {}: agent {} is not connected",
                    shown(name),
                    shown(&agent)
                );
                let body = format!(
                    "503 Service Unavailable: {} is served by agent {}, which is not connected\n",
                    shown(name),
                    shown(&agent)
                );
                session.close_after_answer();
                respond(session, 503, Bytes::from(body), &[]).await
            }
            None => {
                debug!(
                    "refused a scrape of {}: no such target or agent",
                    shown(name)
                );
                refuse(
                    session,
                    404,
                    b"404 Not Found: no such target; /targets on the metrics port lists them\n",
                    &[],
                )
                .await
            }
        }
    }
}

/// Another replica's proxy port, as a destination for a scrape of an agent it holds.
struct ReplicaPort<'a> {
    address: SocketAddr,
    idle: &'a IdleConnections,
}

impl Destination for ReplicaPort<'_> {
    async fn address(&self, _deadline: ScrapeDeadline) -> Result<PeerAddr> {
        Ok(PeerAddr::Inet(self.address))
    }

    fn peer_to(&self, address: PeerAddr, limit: Duration) -> HttpPeer {
        let mut peer = HttpPeer::new(self.address, false, String::new());
        peer._address = address;
        peer.options.connection_timeout = Some(limit);
        peer.options.total_connection_timeout = Some(limit);
        peer
    }

    fn idle_connections(&self) -> &IdleConnections {
        self.idle
    }
}
