//! Agent mode: exporters whose networks allow only outbound connections, served by
//! `prometheus-tunnel agent`, the same binary in a second role beside them.
//!
//! The agent dials the tunnel's agent port (`AGENT_PORT`) over TLS with its client
//! certificate, whose subject CN names it; on that one connection the roles reverse: the agent
//! is the HTTP/2 server, the tunnel the client. Each scrape is one stream, so scrapes run in
//! parallel, stream their bodies and wait for no poll. The agent announces its exporters
//! (long-polled, so a reload shows at once); the tunnel routes `?target=NAME` (and
//! absolute-form requests naming NAME) to the agent that serves it, and answers `503` naming
//! the agent, at once, when that agent is not connected.
//!
//! - `wire.rs`: what the two sides say (paths, headers, the announcement).
//! - `directory.rs`: which agent serves which name (tunnel side).
//! - `h2.rs`: HTTP/2 settings for a connection that lives for weeks (both ends).
//! - `port.rs`: the agent port's connections (tunnel side).
//! - `relay.rs`: a scrape through an agent (tunnel side).
//! - `peers.rs`: the other replicas, and scrapes forwarded to them (tunnel side).
//!
//! The agent's side is [`crate::agent_role`].

pub mod directory;
pub mod h2;
pub mod peers;
pub mod port;
pub mod relay;
pub mod wire;
