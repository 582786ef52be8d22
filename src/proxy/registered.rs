//! Step 3 to 5 for a scrape of a name a client registered (reverse mode): refused at once when
//! nobody registered it, else handed to the client's poll, its push streamed back.

use std::sync::Arc;

use crate::listener::ClientExchange;
use bytes::Bytes;
use log::debug;
use pingora_error::Result;

use super::{deadline, RequestCtx, TunnelProxy};
use crate::config::error::shown;
use crate::listener::respond::respond;
use crate::reverse::scrape::{self, ReverseScrapes};

impl TunnelProxy {
    /// Scrapes the client registered as `name`.
    pub(super) async fn scrape_registered(
        &self,
        reverse: &ReverseScrapes,
        session: &mut ClientExchange,
        ctx: &mut RequestCtx,
        name: &str,
    ) -> Result<()> {
        ctx.deadline = deadline(session.req_header(), reverse.timeout);
        let strip = self.access.requires_credentials();
        let Some(mut ticket) = reverse.start(session, name, ctx.deadline, ctx.start, strip) else {
            debug!(
                "refused a scrape of {}: no client is registered as it",
                shown(name)
            );
            let body = format!(
                "503 Service Unavailable: no client is registered as {}; /clients on the poll port lists those that are\n",
                shown(name)
            );
            session.close_after_answer();
            return respond(session, 503, Bytes::from(body), &[]).await;
        };
        ctx.client_metrics = Some(Arc::clone(&ticket.metrics));
        ctx.forwarded = true;
        scrape::relay(session, &mut ticket, ctx.start + ctx.deadline).await
    }
}
