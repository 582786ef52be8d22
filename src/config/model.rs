//! The validated configuration: the typed values the rest of the tunnel is built from, apart
//! from the file formats and spellings they were read from (River keeps the same split). Files
//! that settings name (certificates, secrets) appear here as paths with the value that named
//! them; `crate::material` reads them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::path::Path;
use std::time::Duration;

use super::error::RawValue;
use super::forward_proxy::ForwardProxy;
use super::parse::{ExporterHost, Scheme};
use crate::ip_range::IpRange;

/// Default `SERVER_PORT`: windows_exporter's port, as in the original tool.
pub const DEFAULT_SERVER_PORT: u16 = 9182;
/// Default `LISTEN_PORT`.
pub const DEFAULT_LISTEN_PORT: u16 = 8080;
/// Default `METRICS_PORT`.
pub const DEFAULT_METRICS_PORT: u16 = 9182;
/// Default `UPSTREAM_TIMEOUT`: Prometheus' own default scrape timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `HEADER_READ_TIMEOUT`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `IDLE_TIMEOUT`: longer than Prometheus' longest usual scrape interval, so kept-alive
/// scrape connections are not closed under it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `TARGET_PARAM`: the query parameter of Prometheus' multi-target exporter pattern.
pub const DEFAULT_TARGET_PARAM: &str = "target";
/// The name of the exporter given by `SERVER_IP` among the targets.
pub const DEFAULT_TARGET_NAME: &str = "default";

/// A file named by a setting, with the value that named it, so that a file which cannot be
/// used is refused in the words of the setting the user wrote (`TLS_CA_FILE="/x": expected
/// ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingFile {
    /// The setting's value as written: the file's path.
    pub source: RawValue,
}

impl SettingFile {
    /// The file `raw` names.
    pub fn new(raw: RawValue) -> Self {
        SettingFile { source: raw }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        Path::new(&self.source.text)
    }
}

/// A credential held in a file (a mounted Secret): what the tunnel sends to the exporter, or
/// what it requires from its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`, the token read from `token_file`.
    Bearer {
        /// `BEARER_TOKEN_FILE` or `CLIENT_BEARER_TOKEN_FILE`.
        token_file: SettingFile,
    },
    /// `Authorization: Basic ...` of `username` and the password read from `password_file`.
    Basic {
        /// `BASIC_AUTH_USERNAME` or `CLIENT_BASIC_AUTH_USERNAME`.
        username: String,
        /// `BASIC_AUTH_PASSWORD_FILE` or `CLIENT_BASIC_AUTH_PASSWORD_FILE`.
        password_file: SettingFile,
    },
}

impl Credentials {
    /// The file whose content is secret.
    pub fn file(&self) -> &SettingFile {
        match self {
            Credentials::Bearer { token_file } => token_file,
            Credentials::Basic { password_file, .. } => password_file,
        }
    }
}

/// A certificate (leaf first, then intermediates) and its private key, as two PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The PEM certificate chain.
    pub cert: SettingFile,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: SettingFile,
}

/// How the exporter's certificate is checked and what the tunnel presents to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterTls {
    /// `TLS_CA_FILE`; the system roots when `None`.
    pub ca_file: Option<SettingFile>,
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`, for mutual TLS.
    pub client_cert: Option<CertificateFiles>,
    /// Name to verify against and send as SNI; the exporter's host when `None`.
    pub server_name: Option<String>,
    /// False only with `TLS_INSECURE_SKIP_VERIFY`.
    pub verify: bool,
}

/// Where the exporter is and how to reach it.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// Host of the exporter.
    pub host: ExporterHost,
    /// Port of the exporter.
    pub port: NonZeroU16,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Whole-request limit for one scrape; Prometheus' scrape-timeout header may lower it.
    pub timeout: Duration,
    /// Certificate checks and client certificate: set for `https`, `None` for `http`. Boxed:
    /// a fleet of plain-http exporters carries no TLS settings at all.
    pub tls: Option<Box<ExporterTls>>,
    /// Forward proxy on the way, if any.
    pub proxy: Option<ForwardProxy>,
    /// Credentials the exporter wants, if any.
    pub auth: Option<Credentials>,
}

impl ExporterConfig {
    /// `host:port` as the `Host` header and log lines show it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Limits on client connections to the proxy port, so slow or idle clients cannot exhaust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// A connection's first request header must be complete within this; later ones within
    /// `idle_timeout` plus this.
    pub header_read_timeout: Duration,
    /// A connection waiting for its next request is closed after this.
    pub idle_timeout: Duration,
    /// Connections beyond this many are answered 503 and closed; `None` (unset) means what the
    /// process's file and memory limits allow, worked out at start-up.
    pub max_connections: Option<usize>,
}

/// TLS on the proxy port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsFiles {
    /// `LISTEN_TLS_CERT_FILE` and `LISTEN_TLS_KEY_FILE`.
    pub server_cert: CertificateFiles,
    /// `LISTEN_TLS_CLIENT_CA_FILE`: clients must present a certificate these CAs signed.
    pub client_ca_file: Option<SettingFile>,
}

/// The two ports the tunnel listens on.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Address both listeners bind.
    pub address: IpAddr,
    /// Port that Prometheus scrapes; forwarded to the exporter.
    pub proxy_port: NonZeroU16,
    /// Port of `/metrics`, `/healthz`, `/readyz`, `/version`.
    pub metrics_port: NonZeroU16,
    /// TLS on the proxy port, if configured.
    pub tls: Option<ListenerTlsFiles>,
    /// Limits on the proxy port's client connections.
    pub limits: ClientLimits,
}

impl ListenConfig {
    /// The proxy listener's socket address.
    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.proxy_port.get())
    }

    /// The metrics listener's socket address.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.metrics_port.get())
    }
}

/// Who may scrape through the tunnel; everyone when both are unset.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Client addresses allowed (others get 403).
    pub allowed: Option<Vec<IpRange>>,
    /// Credentials clients must present (else 401).
    pub credentials: Option<Credentials>,
}

/// One exporter the tunnel forwards to, by name.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The name in `?target=` and the `target` label.
    pub name: String,
    /// Where it is and how to reach it.
    pub exporter: ExporterConfig,
    /// Labels published for it on `/targets`.
    pub labels: BTreeMap<String, String>,
}

/// Default `POLL_KEEPALIVE`: an idle poll is answered before the 30 s or 60 s idle timeouts of
/// common load balancers and ingress controllers.
pub const DEFAULT_POLL_KEEPALIVE: Duration = Duration::from_secs(25);
/// Default `POLL_MAX_CLIENTS`.
pub const DEFAULT_POLL_MAX_CLIENTS: usize = 10_000;
/// Default `POLL_MAX_POLLS_PER_NAME`: one client per name, whose newer poll replaces a stale one.
pub const DEFAULT_POLL_MAX_POLLS_PER_NAME: usize = 1;
/// Default `POLL_MAX_PUSH_SIZE`.
pub const DEFAULT_POLL_MAX_PUSH_SIZE: u64 = 64 << 20;

/// Reverse mode: the port PushProx clients poll, and its rules.
#[derive(Debug, Clone)]
pub struct PollConfig {
    /// `POLL_PORT`.
    pub port: NonZeroU16,
    /// Addresses allowed to poll and push (others get 403); everyone when `None`.
    pub allowed: Option<Vec<IpRange>>,
    /// TLS on the poll port, and the CAs of client certificates.
    pub tls: Option<ListenerTlsFiles>,
    /// Whether a client may use only a name its certificate carries.
    pub bind_names: bool,
    /// An idle poll is answered after this; `None`: held until a scrape comes.
    pub keepalive: Option<Duration>,
    /// Names registered at once.
    pub max_clients: usize,
    /// Open polls per name.
    pub max_polls_per_name: usize,
    /// Largest push, in bytes.
    pub max_push_size: u64,
    /// `UPSTREAM_TIMEOUT`: the longest a scrape of a registered name may take.
    pub scrape_timeout: Duration,
}

/// Default `AGENT_MAX_AGENTS`.
pub const DEFAULT_AGENT_MAX_AGENTS: usize = 1000;
/// Default `AGENT_MAX_STREAMS`.
pub const DEFAULT_AGENT_MAX_STREAMS: usize = 100;
/// Default `AGENT_MAX_BODY_SIZE`.
pub const DEFAULT_AGENT_MAX_BODY_SIZE: u64 = 64 << 20;

/// Which role the process runs in: the tunnel Prometheus scrapes, or an agent beside the
/// exporters that dials it (`prometheus-tunnel agent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The tunnel: listens for scrapes (and, in agent mode, for agents).
    #[default]
    Tunnel,
    /// An agent: dials the tunnel and serves its exporters' scrapes over that connection.
    Agent,
}

/// The replicas of a tunnel that serves agents (this one among them): `HOST:PORT` entries of
/// their metrics ports, each a name that may resolve to several of them (a headless Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// The entries, as `(host, metrics port)`.
    pub entries: Vec<(String, NonZeroU16)>,
}

/// Agent mode, tunnel side: the port agents dial, and its rules.
#[derive(Debug, Clone)]
pub struct AgentPortConfig {
    /// `AGENT_PORT`.
    pub port: NonZeroU16,
    /// Its certificate and the CAs of agents' certificates (mutual TLS is required).
    pub tls: ListenerTlsFiles,
    /// Agents connected at once.
    pub max_agents: usize,
    /// Scrapes in flight per agent.
    pub max_streams: usize,
    /// Largest scrape answer taken from an agent, in bytes.
    pub max_body_size: u64,
    /// This replica's id, told to agents.
    pub replica_id: String,
    /// The other replicas, if the tunnel runs as several.
    pub peers: Option<Peers>,
    /// `UPSTREAM_TIMEOUT`: the longest a scrape through an agent may take.
    pub scrape_timeout: Duration,
}

/// Agent mode, agent side (`prometheus-tunnel agent`): how the tunnel is reached. It is dialled
/// as an https exporter would be: the same TLS, the same forward proxies.
#[derive(Debug, Clone)]
pub struct AgentRoleConfig {
    /// The tunnel's agent port, as an https "exporter" with the agent's client certificate.
    pub tunnel: ExporterConfig,
}

/// The tunnel's validated settings.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// The exporters, in order: the `SERVER_IP` one (named `default`) first, then
    /// `tunnel.targets`. Empty only in reverse mode, where clients register themselves.
    pub targets: Vec<TargetConfig>,
    /// The target of a request without `?target=`, if any.
    pub default_target: Option<String>,
    /// Whether `tunnel.targets` lists exporters: metrics then carry a `target` label.
    pub multi_target: bool,
    /// In multi-target mode, the query parameter that names a request's target.
    pub target_param: String,
    /// The listeners.
    pub listen: ListenConfig,
    /// Who may use the proxy port.
    pub access: AccessConfig,
    /// Reverse mode, when `POLL_PORT` is set.
    pub poll: Option<PollConfig>,
    /// Agent mode, when `AGENT_PORT` is set.
    pub agent_port: Option<AgentPortConfig>,
    /// How to reach the tunnel, in the agent role.
    pub agent_role: Option<AgentRoleConfig>,
    /// Debug logging.
    pub debug: bool,
    /// Every setting's value in force and where it came from, for the status page; secrets
    /// are never among them (a proxy URL's password is hidden, a secret is given by its file).
    pub in_force: Vec<SettingInForce>,
}

/// One setting as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingInForce {
    /// Its environment variable's name.
    pub name: &'static str,
    /// Its value as written, a proxy URL's password replaced by `***`; or the default's
    /// description.
    pub value: String,
    /// Where the value came from: `default`, `env`, `flag` or the conf file's path.
    pub origin: String,
}

impl TunnelConfig {
    /// The ports that take traffic, named as `/readyz` names them: the proxy port, and the
    /// poll and agent ports when set. An agent listens on none.
    pub fn traffic_ports(&self) -> Vec<(&'static str, SocketAddr)> {
        if self.agent_role.is_some() {
            return Vec::new();
        }
        let at = |port: NonZeroU16| SocketAddr::new(self.listen.address, port.get());
        let mut ports = vec![("proxy port", self.listen.proxy_addr())];
        ports.extend(self.poll.as_ref().map(|poll| ("poll port", at(poll.port))));
        ports.extend(self.agent_port.as_ref().map(|a| ("agent port", at(a.port))));
        ports
    }

    /// Whether per-target metrics carry a `target` label: with several exporters, or with
    /// clients that register by name.
    pub fn labelled_metrics(&self) -> bool {
        self.multi_target || self.poll.is_some() || self.agent_port.is_some()
    }
}

/// A file the settings name, as the material layer reads it. The validator lists every one it
/// meets, so that when other settings are refused the files are still checked and every
/// problem is reported in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedFile {
    /// A PEM bundle of CA certificates for the exporter's certificate.
    ExporterCa(SettingFile),
    /// The tunnel's client certificate for the exporter.
    ExporterClientCert(CertificateFiles),
    /// A secret: the exporter's credentials or the clients'.
    Secret(Credentials),
    /// The proxy port's certificate and the CAs its clients' certificates are checked against.
    ListenerTls(ListenerTlsFiles),
}
