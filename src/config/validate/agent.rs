//! Checking agent mode's settings: on the tunnel, `AGENT_PORT` and its rules; in the agent role
//! (`prometheus-tunnel agent`), `TUNNEL_*`, how the tunnel is reached. Each side's settings are
//! refused on the other, so a manifest meant for one role never runs as the other.

use std::num::NonZeroU16;

use super::{raw_or_default, Checked, Scope, Validator};
use crate::config::error::ConfigError;
use crate::config::forward_proxy::ForwardProxy;
use crate::config::model::*;
use crate::config::parse::{self, ExporterHost, Scheme};
use crate::config::setting::Setting;
use crate::config::EnvSource;

/// The tunnel's settings for the port agents dial; they need `AGENT_PORT`.
const PORT_SETTINGS: [Setting; 8] = [
    Setting::AgentTlsCertFile,
    Setting::AgentTlsKeyFile,
    Setting::AgentTlsClientCaFile,
    Setting::AgentMaxAgents,
    Setting::AgentMaxStreams,
    Setting::AgentMaxBodySize,
    Setting::ReplicaId,
    Setting::Peers,
];

/// The agent's settings for reaching the tunnel; they need the `agent` role.
const ROLE_SETTINGS: [Setting; 6] = [
    Setting::TunnelAddress,
    Setting::TunnelCaFile,
    Setting::TunnelServerName,
    Setting::TunnelClientCertFile,
    Setting::TunnelClientKeyFile,
    Setting::TunnelProxy,
];

/// The tunnel's listening settings, which an agent does not have.
const TUNNEL_ONLY: [Setting; 2] = [Setting::AgentPort, Setting::PollPort];

/// A replica id: what a pod name or a host name may be.
fn replica_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(text.to_string())
    } else {
        Err("1-253 letters, digits, '.', '-' or '_' (a pod or host name)".into())
    }
}

/// `host:port` of the tunnel or of the peers.
fn host_port(text: &str) -> Result<(ExporterHost, NonZeroU16), String> {
    let expected = "HOST:PORT (a DNS name or an address, and a port 1-65535)";
    let (host, port) = text.rsplit_once(':').ok_or(expected)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = parse::exporter_host(host).map_err(|_| expected.to_string())?;
    let port = parse::port(port).map_err(|_| expected.to_string())?;
    Ok((host, port))
}

/// `PEERS`: `HOST:PORT` entries separated by commas.
fn peer_list(text: &str) -> Result<Vec<(String, NonZeroU16)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            host_port(entry)
                .map(|(host, port)| (host.to_string(), port))
                .map_err(|_| "HOST:PORT entries (a headless Service's name and the metrics port), separated by commas".to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|list| {
            if list.is_empty() {
                Err("at least one HOST:PORT entry".into())
            } else {
                Ok(list)
            }
        })
}

impl Validator {
    /// Agent mode on the tunnel, when `AGENT_PORT` is set; its port must differ from the
    /// tunnel's other ports (`taken`: name and port of each, when known).
    pub(super) fn agent_port(
        &mut self,
        top: &Scope<'_>,
        role: Role,
        env: &impl EnvSource,
        taken: &[(&str, Checked<Option<NonZeroU16>>)],
    ) -> Checked<Option<AgentPortConfig>> {
        if role == Role::Agent {
            for setting in TUNNEL_ONLY.into_iter().chain(PORT_SETTINGS) {
                self.refuse(
                    top,
                    setting,
                    "the tunnel's role: an agent listens on no port, it dials TUNNEL_ADDRESS",
                );
            }
            return Ok(None);
        }
        for setting in ROLE_SETTINGS {
            self.refuse(
                top,
                setting,
                "`prometheus-tunnel agent` with it: it says how an agent reaches the tunnel",
            );
        }
        let Some(port) = self.get(top, Setting::AgentPort, parse::port)? else {
            for setting in PORT_SETTINGS {
                self.refuse(
                    top,
                    setting,
                    "AGENT_PORT with it: it configures the port agents dial",
                );
            }
            return Ok(None);
        };
        let mut port = Ok(port);
        for (name, other) in taken {
            if matches!((other, &port), (Ok(Some(o)), Ok(p)) if o == p) {
                let raw = raw_or_default(top, Setting::AgentPort, port.unwrap_or(NonZeroU16::MIN));
                port = Err(self.record(ConfigError::value(
                    &raw,
                    format!("a port other than {name}: each listener needs its own port"),
                )));
            }
        }
        let tls = self.server_tls(
            top,
            [
                Setting::AgentTlsCertFile,
                Setting::AgentTlsKeyFile,
                Setting::AgentTlsClientCaFile,
            ],
            "the agent port",
        );
        let tls = match tls {
            Ok(Some(files)) if files.client_ca_file.is_some() => Ok(files),
            Ok(_) => {
                let raw = raw_or_default(top, Setting::AgentPort, port.unwrap_or(NonZeroU16::MIN));
                Err(self.record(ConfigError::value(
                    &raw,
                    "AGENT_TLS_CERT_FILE, AGENT_TLS_KEY_FILE and AGENT_TLS_CLIENT_CA_FILE with it: agents are told apart by their client certificates",
                )))
            }
            Err(refused) => Err(refused),
        };
        let max_agents = self
            .get(top, Setting::AgentMaxAgents, parse::count)
            .map(|n| n.unwrap_or(DEFAULT_AGENT_MAX_AGENTS));
        let max_streams = self
            .get(top, Setting::AgentMaxStreams, parse::count)
            .map(|n| n.unwrap_or(DEFAULT_AGENT_MAX_STREAMS));
        let max_body_size = self
            .get(top, Setting::AgentMaxBodySize, parse::byte_size)
            .map(|n| n.unwrap_or(DEFAULT_AGENT_MAX_BODY_SIZE));
        let replica_id = self.get(top, Setting::ReplicaId, replica_id);
        let peers = self
            .get(top, Setting::Peers, peer_list)
            .map(|p| p.map(|entries| Peers { entries }));
        let scrape_timeout = self
            .get(top, Setting::UpstreamTimeout, parse::timeout)
            .map(|t| t.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT));
        Ok(Some(AgentPortConfig {
            port: port?,
            tls: tls?,
            max_agents: max_agents?,
            max_streams: max_streams?,
            max_body_size: max_body_size?,
            replica_id: replica_id?.unwrap_or_else(|| default_replica_id(env)),
            peers: peers?,
            scrape_timeout: scrape_timeout?,
        }))
    }

    /// How an agent reaches the tunnel, in the agent role.
    pub(super) fn agent_role(
        &mut self,
        top: &Scope<'_>,
        role: Role,
    ) -> Checked<Option<AgentRoleConfig>> {
        if role == Role::Tunnel {
            return Ok(None);
        }
        let address = match self.get(top, Setting::TunnelAddress, host_port) {
            Ok(Some(address)) => Ok(address),
            Ok(None) => Err(self.record(ConfigError::other(
                "TUNNEL_ADDRESS is not set",
                "the tunnel's agent port in TUNNEL_ADDRESS, --tunnel-address or tunnel.tunnel_address (HOST:PORT)",
            ))),
            Err(refused) => Err(refused),
        };
        let server_name = self
            .get(top, Setting::TunnelServerName, parse::exporter_host)
            .map(|name| name.map(|h| h.to_string()));
        let ca_file = top
            .raw(Setting::TunnelCaFile)
            .cloned()
            .map(SettingFile::new);
        if let Some(ca) = &ca_file {
            self.named(NamedFile::ExporterCa(ca.clone()));
        }
        let client_cert = match self.certificate_pair(
            top,
            Setting::TunnelClientCertFile,
            Setting::TunnelClientKeyFile,
            "TUNNEL_CLIENT_KEY_FILE with it: the client certificate's private key",
            "TUNNEL_CLIENT_CERT_FILE with it: the client certificate of this key",
        ) {
            Ok(Some(pair)) => {
                self.named(NamedFile::ExporterClientCert(pair.clone()));
                Ok(pair)
            }
            Ok(None) => Err(self.record(ConfigError::other(
                "TUNNEL_CLIENT_CERT_FILE is not set",
                "the agent's client certificate and key in TUNNEL_CLIENT_CERT_FILE and TUNNEL_CLIENT_KEY_FILE: the tunnel knows agents by them",
            ))),
            Err(refused) => Err(refused),
        };
        let proxy = self
            .get(top, Setting::TunnelProxy, |text| match text.trim() {
                "" | "none" | "direct" => Ok(None),
                url => ForwardProxy::parse(url).map(Some),
            })
            .map(Option::flatten);
        let (host, port) = address?;
        Ok(Some(AgentRoleConfig {
            tunnel: ExporterConfig {
                host,
                port,
                scheme: Scheme::Https,
                timeout: DEFAULT_UPSTREAM_TIMEOUT,
                tls: Some(Box::new(ExporterTls {
                    ca_file,
                    client_cert: Some(client_cert?),
                    server_name: server_name?,
                    verify: true,
                })),
                proxy: proxy?,
                auth: None,
            },
        }))
    }
}

/// `$HOSTNAME` (a pod's name in Kubernetes), else a random id.
fn default_replica_id(env: &impl EnvSource) -> String {
    env.var("HOSTNAME")
        .and_then(|h| replica_id(&h).ok())
        .unwrap_or_else(|| format!("replica-{}", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_takes_names_and_addresses() {
        assert!(host_port("tunnel.example:9443").is_ok());
        assert!(host_port("[::1]:9443").is_ok());
        assert!(host_port("tunnel").is_err());
        assert!(host_port("tunnel:0").is_err());
    }

    #[test]
    fn replica_ids_are_pod_names() {
        assert!(replica_id("tunnel-7d9c-x2").is_ok());
        assert!(replica_id("").is_err());
        assert!(replica_id("a b").is_err());
    }
}
