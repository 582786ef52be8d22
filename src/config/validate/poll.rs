//! Checking reverse mode's settings: `POLL_PORT` and the rules of the port PushProx clients
//! poll. Every other `POLL_*` setting needs `POLL_PORT`.

use std::num::NonZeroU16;

use super::{raw_or_default, Checked, Scope, Validator};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::parse;
use crate::config::setting::Setting;

/// The settings that mean nothing without `POLL_PORT`.
const POLL_SETTINGS: [Setting; 9] = [
    Setting::PollAllowedCidrs,
    Setting::PollTlsCertFile,
    Setting::PollTlsKeyFile,
    Setting::PollTlsClientCaFile,
    Setting::PollBindNames,
    Setting::PollKeepalive,
    Setting::PollMaxClients,
    Setting::PollMaxPollsPerName,
    Setting::PollMaxPushSize,
];

impl Validator {
    /// Reverse mode, when `POLL_PORT` is set. The poll port must differ from the proxy and
    /// metrics ports (when those are known).
    pub(super) fn poll(
        &mut self,
        top: &Scope<'_>,
        proxy_port: Checked<NonZeroU16>,
        metrics_port: Checked<NonZeroU16>,
    ) -> Checked<Option<PollConfig>> {
        let port = match self.get(top, Setting::PollPort, parse::port)? {
            Some(port) => port,
            None => {
                for setting in POLL_SETTINGS {
                    self.refuse(
                        top,
                        setting,
                        "POLL_PORT with it: it configures the port PushProx clients poll",
                    );
                }
                return Ok(None);
            }
        };
        let port = match (proxy_port, metrics_port) {
            (Ok(proxy), _) if proxy == port => Err(self.port_taken(top, port, "LISTEN_PORT")),
            (_, Ok(metrics)) if metrics == port => Err(self.port_taken(top, port, "METRICS_PORT")),
            _ => Ok(port),
        };
        let allowed = self.get(top, Setting::PollAllowedCidrs, parse::cidr_list);
        let tls = self.server_tls(
            top,
            [
                Setting::PollTlsCertFile,
                Setting::PollTlsKeyFile,
                Setting::PollTlsClientCaFile,
            ],
            "the poll port",
        );
        let bind_names = match self.get(top, Setting::PollBindNames, parse::boolean) {
            Ok(Some(true)) if !top.is_set(Setting::PollTlsClientCaFile) => {
                let raw = raw_or_default(top, Setting::PollBindNames, true);
                Err(self.record(ConfigError::value(
                    &raw,
                    "POLL_TLS_CLIENT_CA_FILE with it: names are bound to client certificates",
                )))
            }
            bind => bind.map(|b| b.unwrap_or(false)),
        };
        let keepalive = self
            .get(top, Setting::PollKeepalive, parse::optional_duration)
            .map(|k| k.unwrap_or(Some(DEFAULT_POLL_KEEPALIVE)));
        let max_clients = self
            .get(top, Setting::PollMaxClients, parse::count)
            .map(|n| n.unwrap_or(DEFAULT_POLL_MAX_CLIENTS));
        let max_polls_per_name = self
            .get(top, Setting::PollMaxPollsPerName, parse::count)
            .map(|n| n.unwrap_or(DEFAULT_POLL_MAX_POLLS_PER_NAME));
        let max_push_size = self
            .get(top, Setting::PollMaxPushSize, parse::byte_size)
            .map(|n| n.unwrap_or(DEFAULT_POLL_MAX_PUSH_SIZE));
        let scrape_timeout = self
            .get(top, Setting::UpstreamTimeout, parse::timeout)
            .map(|t| t.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT));
        Ok(Some(PollConfig {
            port: port?,
            allowed: allowed?,
            tls: tls?,
            bind_names: bind_names?,
            keepalive: keepalive?,
            max_clients: max_clients?,
            max_polls_per_name: max_polls_per_name?,
            max_push_size: max_push_size?,
            scrape_timeout: scrape_timeout?,
        }))
    }

    /// Records that `POLL_PORT` is the port of `other`.
    fn port_taken(&mut self, top: &Scope<'_>, port: NonZeroU16, other: &str) -> super::Recorded {
        let raw = raw_or_default(top, Setting::PollPort, port);
        self.record(ConfigError::value(
            &raw,
            format!("a port other than {other} ({port}): each listener needs its own port"),
        ))
    }
}
