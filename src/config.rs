//! The tunnel's configuration: merged in one place from defaults < conf file `tunnel:` section <
//! environment < command-line flags, validated, and handed on as typed values.
//!
//! Every problem is collected before the tunnel gives up, so a user fixes a manifest in one go;
//! `main` prints one line per problem and exits with code 2 before binding any port.

pub mod cli;
pub mod error;
pub mod file;
pub mod parse;
pub mod setting;
pub mod targets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pingora_core::server::configuration::ServerConf;

pub use parse::{ExporterHost, Scheme};

use crate::ip_range::IpRange;
use crate::upstream::credentials::Credentials;
use crate::upstream::forward_proxy::{self, ForwardProxy};
use crate::upstream::tls::{self, ListenerTls, TlsSettings};
pub use error::{ConfigError, Origin, RawValue};
pub use setting::Setting;
pub use targets::TargetSpec;

/// Default `SERVER_PORT`: windows_exporter's port, as in the original tool.
pub const DEFAULT_SERVER_PORT: u16 = 9182;
/// Default `LISTEN_PORT`.
pub const DEFAULT_LISTEN_PORT: u16 = 8080;
/// Default `METRICS_PORT`.
pub const DEFAULT_METRICS_PORT: u16 = 9182;
/// Default `UPSTREAM_TIMEOUT`: Prometheus' own default scrape timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Pingora's `grace_period_seconds` unless the conf file sets it: how long in-flight scrapes
/// may run after SIGTERM. Pingora's own default (5 minutes) is far past the 30 s Kubernetes
/// waits before SIGKILL.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 5;
/// Pingora's `fast_timeout_to_tokio_threshold_seconds` unless the conf file sets it: every
/// timeout of a second or more runs on tokio's timer, not Pingora's fast-timer thread. Each
/// scrape arms connect, read and write timeouts; in the side-by-side bench this cut the CPU per
/// scrape of a small (gzip) page by about a tenth and the RSS by 2 MiB.
pub const DEFAULT_FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS: Option<u64> = Some(0);
/// Pingora's `graceful_shutdown_timeout_seconds` unless the conf file sets it.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

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
    /// Certificate checks and client certificate, for `https`.
    pub tls: TlsSettings,
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

/// Default `HEADER_READ_TIMEOUT`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `IDLE_TIMEOUT`: longer than Prometheus' longest usual scrape interval, so kept-alive
/// scrape connections are not closed under it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `TARGET_PARAM`: the query parameter of Prometheus' multi-target exporter pattern.
pub const DEFAULT_TARGET_PARAM: &str = "target";

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
    pub tls: Option<ListenerTls>,
    /// Limits on the proxy port's client connections.
    pub limits: ClientLimits,
}

/// Who may scrape through the tunnel; everyone when both are unset.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Client addresses allowed (others get 403).
    pub allowed: Option<Vec<IpRange>>,
    /// Credentials clients must present (else 401).
    pub credentials: Option<Credentials>,
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

/// The name of the exporter given by `SERVER_IP` among the targets.
pub const DEFAULT_TARGET_NAME: &str = "default";

/// The settings that together name an exporter's credentials.
const CREDENTIAL_SETTINGS: [Setting; 3] = [
    Setting::BearerTokenFile,
    Setting::BasicAuthUsername,
    Setting::BasicAuthPasswordFile,
];

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

/// The tunnel's validated settings.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// The exporters, in order: the `SERVER_IP` one (named `default`) first, then
    /// `tunnel.targets`. Never empty.
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
    /// Debug logging.
    pub debug: bool,
}

/// Everything the process needs to start: the tunnel's settings and Pingora's.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The tunnel's settings.
    pub tunnel: TunnelConfig,
    /// Pingora's server settings from the conf file, with the tunnel's shutdown defaults.
    pub server: ServerConf,
}

/// A source of environment variables; the process env in production, a map in tests.
pub trait EnvSource {
    /// The value of `name`, if set (even if empty).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

impl EnvSource for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

/// Loads the conf file named by `-c` (if any), merges env and flags over it and validates it all.
pub fn load(cli: &cli::Cli, env: &impl EnvSource) -> Result<LoadedConfig, Vec<ConfigError>> {
    let conf_path = cli.pingora.conf.as_deref().map(Path::new);
    let (mut server, file_values, specs, keys_set) = match conf_path {
        Some(path) => {
            let conf = file::load(path).map_err(|e| vec![e])?;
            (
                conf.server,
                conf.values,
                conf.targets,
                conf.pingora_keys_set,
            )
        }
        None => (
            ServerConf::default(),
            Vec::new(),
            Vec::new(),
            Default::default(),
        ),
    };
    if !keys_set.contains("fast_timeout_to_tokio_threshold_seconds") {
        server.fast_timeout_to_tokio_threshold_seconds =
            DEFAULT_FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS;
    }
    server
        .grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    server
        .graceful_shutdown_timeout_seconds
        .get_or_insert(DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS);

    let tunnel = merge(
        FileLayer {
            values: file_values,
            targets: &specs,
            path: conf_path,
        },
        env,
        cli.values(),
    )?;
    Ok(LoadedConfig { tunnel, server })
}

/// What the conf file contributes to the tunnel's settings.
#[derive(Debug, Default)]
pub struct FileLayer<'a> {
    /// Values of the `tunnel:` section.
    pub values: Vec<RawValue>,
    /// `tunnel.targets`.
    pub targets: &'a [TargetSpec],
    /// The file, for messages.
    pub path: Option<&'a Path>,
}

/// Merges the layers (later wins) and validates the result.
pub fn merge(
    file: FileLayer<'_>,
    env: &impl EnvSource,
    cli_values: Vec<RawValue>,
) -> Result<TunnelConfig, Vec<ConfigError>> {
    let FileLayer {
        values: file_values,
        targets: specs,
        path,
    } = file;
    let env_values = Setting::ALL.iter().copied().filter_map(|setting| {
        env.var(setting.env()).map(|text| RawValue {
            setting,
            origin: Origin::Env,
            text,
        })
    });
    let mut chosen: HashMap<Setting, RawValue> = HashMap::new();
    for value in file_values.into_iter().chain(env_values).chain(cli_values) {
        chosen.insert(value.setting, value);
    }
    Validator {
        chosen,
        errors: Vec::new(),
    }
    .finish(env, specs, path)
}

/// Parses each chosen value, collecting every error.
struct Validator {
    chosen: HashMap<Setting, RawValue>,
    errors: Vec<ConfigError>,
}

impl Validator {
    /// The parsed value of `setting`, `None` when unset, or `None` after recording an error.
    fn get<T>(&mut self, setting: Setting, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.chosen.get(&setting)?;
        match parse(&raw.text) {
            Ok(v) => Some(v),
            Err(expected) => {
                self.errors.push(ConfigError::value(raw, expected));
                None
            }
        }
    }

    /// Records that `setting`'s value is refused for a reason involving other settings.
    fn refuse(&mut self, setting: Setting, expected: String) {
        if let Some(raw) = self.chosen.get(&setting) {
            self.errors.push(ConfigError::value(raw, expected));
        }
    }

    fn is_set(&self, setting: Setting) -> bool {
        self.chosen.contains_key(&setting)
    }

    fn finish(
        mut self,
        env: &impl EnvSource,
        specs: &[TargetSpec],
        conf_file: Option<&Path>,
    ) -> Result<TunnelConfig, Vec<ConfigError>> {
        let default_port = |p: u16| NonZeroU16::new(p).unwrap_or(NonZeroU16::MIN);
        let address = self
            .get(Setting::ListenAddress, parse::listen_address)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let proxy_port = self
            .get(Setting::ListenPort, parse::port)
            .unwrap_or(default_port(DEFAULT_LISTEN_PORT));
        let metrics_port = self
            .get(Setting::MetricsPort, parse::port)
            .unwrap_or(default_port(DEFAULT_METRICS_PORT));
        let debug = self.get(Setting::Debug, parse::boolean).unwrap_or(false);
        if proxy_port == metrics_port {
            let raw = self.raw_or_default(Setting::MetricsPort, metrics_port);
            self.errors.push(ConfigError::value(
                &raw,
                format!("a port other than LISTEN_PORT ({proxy_port}): the proxy and metrics listeners cannot share a port"),
            ));
        }
        let access = AccessConfig {
            allowed: self.get(Setting::ClientAllowedCidrs, parse::cidr_list),
            credentials: self.credentials([
                Setting::ClientBearerTokenFile,
                Setting::ClientBasicAuthUsername,
                Setting::ClientBasicAuthPasswordFile,
            ]),
        };
        let listener_tls = self.listener_tls();
        let limits = ClientLimits {
            header_read_timeout: self
                .get(Setting::HeaderReadTimeout, parse::timeout)
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: self
                .get(Setting::IdleTimeout, parse::timeout)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
            max_connections: self.get(Setting::MaxConnections, parse::connection_limit),
        };

        let targets = self.targets(env, specs, conf_file, proxy_port);
        let default_target = self.default_target(&targets);
        let target_param = if specs.is_empty() {
            self.refuse(
                Setting::TargetParam,
                "tunnel.targets with it: a single exporter gets every request with its query untouched".into(),
            );
            DEFAULT_TARGET_PARAM.to_string()
        } else {
            self.get(Setting::TargetParam, parse::query_param)
                .unwrap_or_else(|| DEFAULT_TARGET_PARAM.to_string())
        };

        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(TunnelConfig {
            targets,
            default_target,
            multi_target: !specs.is_empty(),
            target_param,
            listen: ListenConfig {
                address,
                proxy_port,
                metrics_port,
                tls: listener_tls,
                limits,
            },
            access,
            debug,
        })
    }

    /// The exporters: the one of `SERVER_IP` (named [`DEFAULT_TARGET_NAME`]) and each of
    /// `tunnel.targets`, whose fields override the top-level settings one by one.
    fn targets(
        &mut self,
        env: &impl EnvSource,
        specs: &[TargetSpec],
        conf_file: Option<&Path>,
        proxy_port: NonZeroU16,
    ) -> Vec<TargetConfig> {
        let mut targets = Vec::with_capacity(specs.len() + 1);
        if self.is_set(Setting::ServerIp) {
            if let Some(exporter) = self.exporter(env, proxy_port) {
                targets.push(TargetConfig {
                    name: DEFAULT_TARGET_NAME.to_string(),
                    exporter,
                    labels: BTreeMap::new(),
                });
            }
        } else if specs.is_empty() {
            self.errors.push(ConfigError::other(
                "SERVER_IP is not set",
                "the exporter's host in SERVER_IP, --server-ip or tunnel.server_ip, or a list of exporters in tunnel.targets",
            ));
        }
        let file = conf_file.unwrap_or(Path::new("the conf file"));
        let top = self.chosen.clone();
        let mut names: HashSet<&str> = HashSet::with_capacity(specs.len() + 1);
        if self.is_set(Setting::ServerIp) {
            names.insert(DEFAULT_TARGET_NAME);
        }
        for spec in specs {
            let subject = format!("targets[{}] in {}", spec.name, file.display());
            if !targets::valid_name(&spec.name) {
                self.errors.push(ConfigError::other(
                    format!("target name {} in {}", error::shown(&spec.name), file.display()),
                    format!("a name of 1-{} letters, digits, '.', '_', '-' or '~' (it goes in ?target=)", targets::MAX_NAME_LEN),
                ));
                continue;
            }
            if !names.insert(&spec.name) {
                self.errors.push(ConfigError::other(
                    subject,
                    if spec.name == DEFAULT_TARGET_NAME {
                        "another name: \"default\" is the SERVER_IP exporter's".to_string()
                    } else {
                        "a name no other target has".to_string()
                    },
                ));
                continue;
            }
            if let Some(bad) = spec.labels.keys().find(|k| !targets::valid_label_name(k)) {
                self.errors.push(ConfigError::other(
                    format!("label {} of {subject}", error::shown(bad)),
                    "label names of letters, digits and '_', not starting with a digit or \"__\"",
                ));
                continue;
            }
            let overrides = match spec.overrides(file) {
                Ok(overrides) => overrides,
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            // The target's own values over the top-level ones; any setting it leaves out falls
            // back. Credentials come as a set: a target that names any replaces all of them.
            self.chosen = top.clone();
            if overrides
                .iter()
                .any(|v| CREDENTIAL_SETTINGS.contains(&v.setting))
            {
                for setting in CREDENTIAL_SETTINGS {
                    self.chosen.remove(&setting);
                }
            }
            for value in overrides {
                self.chosen.insert(value.setting, value);
            }
            if let Some(exporter) = self.exporter(env, proxy_port) {
                targets.push(TargetConfig {
                    name: spec.name.clone(),
                    exporter,
                    labels: spec.labels.clone(),
                });
            }
        }
        self.chosen = top;
        targets
    }

    /// `DEFAULT_TARGET`, or the `SERVER_IP` exporter, or the only target.
    fn default_target(&mut self, targets: &[TargetConfig]) -> Option<String> {
        if let Some(raw) = self.chosen.get(&Setting::DefaultTarget).cloned() {
            if targets.iter().any(|t| t.name == raw.text) {
                return Some(raw.text);
            }
            let names: Vec<&str> = targets.iter().take(10).map(|t| t.name.as_str()).collect();
            self.errors.push(ConfigError::value(
                &raw,
                format!(
                    "the name of a target ({}{})",
                    names.join(", "),
                    if targets.len() > 10 { ", ..." } else { "" }
                ),
            ));
            return None;
        }
        match targets {
            [only] => Some(only.name.clone()),
            _ => targets
                .iter()
                .find(|t| t.name == DEFAULT_TARGET_NAME && self.is_set(Setting::ServerIp))
                .map(|t| t.name.clone()),
        }
    }

    /// One exporter from the chosen values: host, port, scheme, timeout, TLS, proxy, credentials.
    fn exporter(&mut self, env: &impl EnvSource, proxy_port: NonZeroU16) -> Option<ExporterConfig> {
        let errors_before = self.errors.len();
        let default_port = NonZeroU16::new(DEFAULT_SERVER_PORT).unwrap_or(NonZeroU16::MIN);
        let host = self.get(Setting::ServerIp, parse::exporter_host);
        let port = self
            .get(Setting::ServerPort, parse::port)
            .unwrap_or(default_port);
        let scheme = self
            .get(Setting::ServerScheme, parse::scheme)
            .unwrap_or(Scheme::Http);
        let timeout = self
            .get(Setting::UpstreamTimeout, parse::timeout)
            .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT);
        if let Some(host) = &host {
            if host.is_local() && port == proxy_port {
                let raw = self.raw_or_default(Setting::ServerPort, port);
                self.errors.push(ConfigError::value(
                    &raw,
                    format!("a port other than LISTEN_PORT ({proxy_port}) when SERVER_IP is this machine: the tunnel would forward to itself"),
                ));
            }
        }
        let tls = self.tls(scheme);
        let proxy = host.as_ref().and_then(|h| self.proxy(env, scheme, h));
        let auth = self.credentials(CREDENTIAL_SETTINGS);
        match host {
            Some(host) if self.errors.len() == errors_before => Some(ExporterConfig {
                host,
                port,
                scheme,
                timeout,
                tls,
                proxy,
                auth,
            }),
            _ => None,
        }
    }

    /// `TLS_*`: loaded and checked now, so a bad file stops the start, not the first scrape.
    fn tls(&mut self, scheme: Scheme) -> TlsSettings {
        const TLS_SETTINGS: [Setting; 5] = [
            Setting::TlsCaFile,
            Setting::TlsCertFile,
            Setting::TlsKeyFile,
            Setting::TlsServerName,
            Setting::TlsInsecureSkipVerify,
        ];
        if scheme == Scheme::Http {
            let skip_off = self
                .chosen
                .get(&Setting::TlsInsecureSkipVerify)
                .is_some_and(|raw| parse::boolean(&raw.text) == Ok(false));
            for setting in TLS_SETTINGS {
                if setting == Setting::TlsInsecureSkipVerify && skip_off {
                    continue;
                }
                self.refuse(
                    setting,
                    "SERVER_SCHEME=https with TLS settings (the exporter is spoken to in plain http)".into(),
                );
            }
            return TlsSettings::default();
        }
        let skip = self
            .get(Setting::TlsInsecureSkipVerify, parse::boolean)
            .unwrap_or(false);
        let server_name = self
            .get(Setting::TlsServerName, parse::exporter_host)
            .map(|h| match h {
                ExporterHost::Ip(ip) => ip.to_string(),
                ExporterHost::Name(name) => name,
            });
        let ca = self.get(Setting::TlsCaFile, |path| tls::load_ca(Path::new(path)));
        let client = match (
            self.chosen.get(&Setting::TlsCertFile).cloned(),
            self.chosen.get(&Setting::TlsKeyFile).cloned(),
        ) {
            (Some(cert), Some(key)) => {
                match tls::load_client(Path::new(&cert.text), Path::new(&key.text)) {
                    Ok(client) => Some(client),
                    Err((is_key, expected)) => {
                        let raw = if is_key { key } else { cert };
                        self.errors.push(ConfigError::value(&raw, expected));
                        None
                    }
                }
            }
            (Some(_), None) => {
                self.refuse(
                    Setting::TlsCertFile,
                    "TLS_KEY_FILE with it: the client certificate's private key".into(),
                );
                None
            }
            (None, Some(_)) => {
                self.refuse(
                    Setting::TlsKeyFile,
                    "TLS_CERT_FILE with it: the client certificate of this key".into(),
                );
                None
            }
            (None, None) => None,
        };
        TlsSettings {
            ca,
            client,
            server_name,
            verify: !skip,
        }
    }

    /// `UPSTREAM_PROXY`, or curl's proxy variables when it is not set at all. An empty
    /// `UPSTREAM_PROXY` (or `none`) means no proxy, whatever the variables say.
    fn proxy(
        &mut self,
        env: &impl EnvSource,
        scheme: Scheme,
        host: &ExporterHost,
    ) -> Option<ForwardProxy> {
        if self.is_set(Setting::UpstreamProxy) {
            return self
                .get(Setting::UpstreamProxy, |text| match text.trim() {
                    "" | "none" | "direct" => Ok(None),
                    url => ForwardProxy::parse(url).map(Some),
                })
                .flatten();
        }
        let (name, value) = forward_proxy::from_env(env, scheme, host)?;
        match ForwardProxy::parse(&value) {
            Ok(proxy) => Some(proxy),
            Err(expected) => {
                self.errors.push(ConfigError::other(
                    format!("{name}={}", error::shown(&error::without_password(&value))),
                    expected,
                ));
                None
            }
        }
    }

    /// A bearer token file, or a user name with a password file (`[token, user, password]`:
    /// the exporter's `BEARER_TOKEN_FILE`... or the clients' `CLIENT_BEARER_TOKEN_FILE`...).
    /// The file is read now so a missing or empty Secret stops the start.
    fn credentials(&mut self, [token_s, user_s, password_s]: [Setting; 3]) -> Option<Credentials> {
        let token = self.chosen.get(&token_s).cloned();
        let user = self.chosen.get(&user_s).cloned();
        let password = self.chosen.get(&password_s).cloned();
        let (credentials, file_raw) = match (token, user, password) {
            (None, None, None) => return None,
            (Some(token), None, None) => (
                Credentials::Bearer {
                    token_file: PathBuf::from(&token.text),
                },
                token,
            ),
            (None, Some(user), Some(password)) => {
                if user.text.contains(':') || user.text.is_empty() {
                    self.errors.push(ConfigError::value(
                        &user,
                        "a non-empty user name without ':' (RFC 7617)",
                    ));
                    return None;
                }
                (
                    Credentials::Basic {
                        username: user.text.clone(),
                        password_file: PathBuf::from(&password.text),
                    },
                    password,
                )
            }
            (Some(_), _, _) => {
                self.refuse(
                    token_s,
                    format!(
                        "either {} or {} with {}, not both",
                        token_s.env(),
                        user_s.env(),
                        password_s.env()
                    ),
                );
                return None;
            }
            (None, Some(_), None) => {
                self.refuse(user_s, format!("{} with it", password_s.env()));
                return None;
            }
            (None, None, Some(_)) => {
                self.refuse(password_s, format!("{} with it", user_s.env()));
                return None;
            }
        };
        match credentials.load() {
            Ok(_) => Some(credentials),
            Err(expected) => {
                self.errors.push(ConfigError::value(&file_raw, expected));
                None
            }
        }
    }

    /// `LISTEN_TLS_*`: the certificate and key checked as Pingora will load them.
    fn listener_tls(&mut self) -> Option<ListenerTls> {
        let cert = self.chosen.get(&Setting::ListenTlsCertFile).cloned();
        let key = self.chosen.get(&Setting::ListenTlsKeyFile).cloned();
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => {
                self.refuse(
                    Setting::ListenTlsClientCaFile,
                    "LISTEN_TLS_CERT_FILE and LISTEN_TLS_KEY_FILE with it: client certificates need TLS on the proxy port".into(),
                );
                return None;
            }
            (Some(_), None) => {
                self.refuse(
                    Setting::ListenTlsCertFile,
                    "LISTEN_TLS_KEY_FILE with it".into(),
                );
                return None;
            }
            (None, Some(_)) => {
                self.refuse(
                    Setting::ListenTlsKeyFile,
                    "LISTEN_TLS_CERT_FILE with it".into(),
                );
                return None;
            }
        };
        if let Err((is_key, expected)) =
            tls::check_listener_pair(Path::new(&cert.text), Path::new(&key.text))
        {
            self.errors.push(ConfigError::value(
                if is_key { &key } else { &cert },
                expected,
            ));
            return None;
        }
        let client_verifier = if self.is_set(Setting::ListenTlsClientCaFile) {
            Some(self.get(Setting::ListenTlsClientCaFile, |path| {
                tls::client_verifier(Path::new(path))
            })?)
        } else {
            None
        };
        Some(ListenerTls {
            cert_file: cert.text,
            key_file: key.text,
            client_verifier,
        })
    }

    /// The raw value of `setting` for a message, or its default spelled as text.
    fn raw_or_default(&self, setting: Setting, value: impl ToString) -> RawValue {
        self.chosen.get(&setting).cloned().unwrap_or(RawValue {
            setting,
            origin: Origin::Default,
            text: value.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
