//! An experiment, not part of the product: the tunnel's forwarding reduced to an HTTP/1 loop on
//! pingora-core's server and client sessions, without pingora-proxy's `ProxyHttp` machinery
//! (its duplex tasks and channels, header clones, modules and boxed callbacks), and without the
//! tunnel's own work (routing, deadlines, credentials, metrics: under 2% of a scrape). It
//! measures how much of the gap to HAProxy that machinery accounts for, for the decision in
//! issue 7; README "Performance" gives the figures.
//!
//! ```text
//! cargo build --release --example lean_h1_loop
//! benches/run.sh --also lean=target/release/examples/lean_h1_loop
//! ```
//!
//! It reads the tunnel's `SERVER_IP`, `SERVER_PORT`, `LISTEN_ADDRESS` and `LISTEN_PORT` and
//! the Pingora conf given with `-c`, so the bench starts it as it starts the tunnel. Plain HTTP,
//! GET and HEAD without request bodies, no timeouts beyond a 10 s read: do not deploy it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::connectors::http::v1::Connector;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::Opt;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::HttpPeer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Forwards every request on a connection to one exporter over pooled connections.
struct LeanLoop {
    connector: Connector,
    peer: HttpPeer,
    host: String,
}

impl LeanLoop {
    /// Forwards one request; `None` ends the connection.
    async fn forward(&self, session: &mut ServerSession) -> Option<()> {
        let mut req = session.req_header().clone();
        req.insert_header("Host", self.host.as_str()).ok()?;
        let (mut upstream, _reused) = self.connector.get_http_session(&self.peer).await.ok()?;
        upstream.write_request_header(Box::new(req)).await.ok()?;
        upstream.read_response().await.ok()?;
        let header = upstream.resp_header()?.clone();
        session.write_response_header(Box::new(header)).await.ok()?;
        while let Some(chunk) = upstream.read_body_bytes().await.ok()? {
            let end = upstream.is_body_done();
            session.write_response_body(chunk, end).await.ok()?;
        }
        session.finish_body().await.ok()?;
        upstream.respect_keepalive();
        self.connector
            .release_http_session(upstream, &self.peer, None)
            .await;
        Some(())
    }
}

#[async_trait]
impl ServerApp for LeanLoop {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        loop {
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(Some(60));
            if !session.read_request().await.ok()? {
                return None;
            }
            self.forward(&mut session).await?;
            stream = session.finish().await.ok()??.into_parts().0;
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn main() {
    let exporter = format!("{}:{}", env("SERVER_IP"), env("SERVER_PORT"));
    let listen = format!("{}:{}", env("LISTEN_ADDRESS"), env("LISTEN_PORT"));
    let opt = Opt::parse_args();
    let mut server = Server::new(Some(opt)).expect("Pingora conf");
    server.bootstrap();
    let mut peer = HttpPeer::new(exporter.as_str(), false, String::new());
    peer.options.read_timeout = Some(Duration::from_secs(10));
    let app = LeanLoop {
        connector: Connector::new(None),
        peer,
        host: exporter,
    };
    let mut service = Service::new("lean".to_string(), app);
    service.add_listener(
        ListenerConfig::tcp(listen).l4_buffer(L4BufferSettings::default().write(16 * 1024)),
    );
    server.add_service(service);
    server.run_forever();
}
