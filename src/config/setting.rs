//! The tunnel's settings by name, and where a value for one came from.
//!
//! Each setting has three spellings: its environment variable (the contract in DESIGN.md), its
//! key in the `tunnel:` section of the YAML conf file and its command-line flag. Errors name the
//! spelling the user actually wrote, so the message points at the line to fix.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

/// One tunnel setting, as the user can spell it in the env, the conf file or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// Exporter host: IPv4, IPv6 or DNS name.
    ServerIp,
    /// Exporter port.
    ServerPort,
    /// `http` or `https` to the exporter.
    ServerScheme,
    /// Address both listeners bind.
    ListenAddress,
    /// Port Prometheus scrapes; requests there are forwarded to the exporter.
    ListenPort,
    /// Port of the tunnel's own `/metrics`, `/healthz`, `/readyz`, `/version`.
    MetricsPort,
    /// Debug logging.
    Debug,
    /// Whole-request limit to the exporter.
    UpstreamTimeout,
    /// PEM bundle of the CAs that sign the exporter's certificate.
    TlsCaFile,
    /// PEM client certificate (chain) for mutual TLS.
    TlsCertFile,
    /// PEM private key of the client certificate.
    TlsKeyFile,
    /// Name the exporter's certificate is verified against (and sent as SNI).
    TlsServerName,
    /// Skip verification of the exporter's certificate.
    TlsInsecureSkipVerify,
    /// Forward proxy to reach the exporter through.
    UpstreamProxy,
    /// File holding a bearer token for the exporter.
    BearerTokenFile,
    /// User name of basic auth to the exporter.
    BasicAuthUsername,
    /// File holding the basic-auth password.
    BasicAuthPasswordFile,
    /// Client addresses allowed to use the proxy port.
    ClientAllowedCidrs,
    /// File holding the bearer token clients must present.
    ClientBearerTokenFile,
    /// User name clients must present with basic auth.
    ClientBasicAuthUsername,
    /// File holding the password clients must present with basic auth.
    ClientBasicAuthPasswordFile,
    /// PEM certificate (chain) for TLS on the proxy port.
    ListenTlsCertFile,
    /// PEM private key for TLS on the proxy port.
    ListenTlsKeyFile,
    /// PEM CAs whose client certificates the proxy port requires.
    ListenTlsClientCaFile,
    /// Longest time a client may take to send its first request header.
    HeaderReadTimeout,
    /// Longest time a client connection may sit idle between requests.
    IdleTimeout,
    /// Most client connections open at once on the proxy port.
    MaxConnections,
    /// The target used when a request names none (multi-target mode).
    DefaultTarget,
    /// The query parameter that names a request's target (multi-target mode).
    TargetParam,
}

impl Setting {
    /// Every setting, in the order `--help` and the README list them.
    pub const ALL: [Setting; 29] = [
        Setting::ServerIp,
        Setting::ServerPort,
        Setting::ServerScheme,
        Setting::ListenAddress,
        Setting::ListenPort,
        Setting::MetricsPort,
        Setting::Debug,
        Setting::UpstreamTimeout,
        Setting::TlsCaFile,
        Setting::TlsCertFile,
        Setting::TlsKeyFile,
        Setting::TlsServerName,
        Setting::TlsInsecureSkipVerify,
        Setting::UpstreamProxy,
        Setting::BearerTokenFile,
        Setting::BasicAuthUsername,
        Setting::BasicAuthPasswordFile,
        Setting::ClientAllowedCidrs,
        Setting::ClientBearerTokenFile,
        Setting::ClientBasicAuthUsername,
        Setting::ClientBasicAuthPasswordFile,
        Setting::ListenTlsCertFile,
        Setting::ListenTlsKeyFile,
        Setting::ListenTlsClientCaFile,
        Setting::HeaderReadTimeout,
        Setting::IdleTimeout,
        Setting::MaxConnections,
        Setting::DefaultTarget,
        Setting::TargetParam,
    ];

    /// The environment variable, e.g. `SERVER_PORT`.
    pub fn env(self) -> &'static str {
        match self {
            Setting::ServerIp => "SERVER_IP",
            Setting::ServerPort => "SERVER_PORT",
            Setting::ServerScheme => "SERVER_SCHEME",
            Setting::ListenAddress => "LISTEN_ADDRESS",
            Setting::ListenPort => "LISTEN_PORT",
            Setting::MetricsPort => "METRICS_PORT",
            Setting::Debug => "DEBUG",
            Setting::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            Setting::TlsCaFile => "TLS_CA_FILE",
            Setting::TlsCertFile => "TLS_CERT_FILE",
            Setting::TlsKeyFile => "TLS_KEY_FILE",
            Setting::TlsServerName => "TLS_SERVER_NAME",
            Setting::TlsInsecureSkipVerify => "TLS_INSECURE_SKIP_VERIFY",
            Setting::UpstreamProxy => "UPSTREAM_PROXY",
            Setting::BearerTokenFile => "BEARER_TOKEN_FILE",
            Setting::BasicAuthUsername => "BASIC_AUTH_USERNAME",
            Setting::BasicAuthPasswordFile => "BASIC_AUTH_PASSWORD_FILE",
            Setting::ClientAllowedCidrs => "CLIENT_ALLOWED_CIDRS",
            Setting::ClientBearerTokenFile => "CLIENT_BEARER_TOKEN_FILE",
            Setting::ClientBasicAuthUsername => "CLIENT_BASIC_AUTH_USERNAME",
            Setting::ClientBasicAuthPasswordFile => "CLIENT_BASIC_AUTH_PASSWORD_FILE",
            Setting::ListenTlsCertFile => "LISTEN_TLS_CERT_FILE",
            Setting::ListenTlsKeyFile => "LISTEN_TLS_KEY_FILE",
            Setting::ListenTlsClientCaFile => "LISTEN_TLS_CLIENT_CA_FILE",
            Setting::HeaderReadTimeout => "HEADER_READ_TIMEOUT",
            Setting::IdleTimeout => "IDLE_TIMEOUT",
            Setting::MaxConnections => "MAX_CONNECTIONS",
            Setting::DefaultTarget => "DEFAULT_TARGET",
            Setting::TargetParam => "TARGET_PARAM",
        }
    }

    /// The key in the conf file's `tunnel:` section: the env name in lower case
    /// (`server_port`).
    pub fn key(self) -> String {
        self.env().to_ascii_lowercase()
    }

    /// The command-line flag: the env name in lower case with dashes (`--server-port`).
    pub fn flag(self) -> String {
        format!("--{}", self.key().replace('_', "-"))
    }

    /// The setting whose conf-file key is `key`.
    pub fn from_key(key: &str) -> Option<Setting> {
        Setting::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// Where the value of a setting came from; the lowest layer is the built-in default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The `tunnel:` section of this conf file.
    File(PathBuf),
    /// The process environment.
    Env,
    /// A command-line flag.
    Cli,
    /// A field of one entry of the conf file's `tunnel.targets`.
    Target {
        /// The conf file.
        file: PathBuf,
        /// The target's name.
        target: String,
        /// The field, e.g. `tls.ca_file`.
        field: String,
    },
}

/// A raw value for one setting and where it came from, before it is parsed.
#[derive(Debug, Clone)]
pub struct RawValue {
    /// Which setting this is.
    pub setting: Setting,
    /// Where it came from.
    pub origin: Origin,
    /// The text as the user wrote it.
    pub text: String,
}

impl RawValue {
    /// The name of this value as the user wrote it: `SERVER_PORT`, `--server-port` or
    /// `tunnel.server_port in FILE`.
    pub fn name(&self) -> String {
        match &self.origin {
            Origin::Default => format!("{} (default)", self.setting.env()),
            Origin::File(path) => format!("tunnel.{} in {}", self.setting.key(), path.display()),
            Origin::Env => self.setting.env().to_string(),
            Origin::Cli => self.setting.flag(),
            Origin::Target {
                file,
                target,
                field,
            } => format!("targets[{target}].{field} in {}", file.display()),
        }
    }
}

/// One refused configuration value: what was wrong and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What the user wrote (`SERVER_PORT="abc"`) or which file or key is at fault.
    pub subject: String,
    /// What is expected instead.
    pub expected: String,
}

impl ConfigError {
    /// A refused value of a setting, shown as [`shown`] shows it (a proxy URL's password
    /// replaced by `***`).
    pub fn value(raw: &RawValue, expected: impl Into<String>) -> Self {
        let text = if raw.setting == Setting::UpstreamProxy {
            without_password(&raw.text)
        } else {
            Cow::Borrowed(raw.text.as_str())
        };
        ConfigError {
            subject: format!("{}={}", raw.name(), shown(&text)),
            expected: expected.into(),
        }
    }

    /// A problem that is not one value: a missing file, an unknown key.
    pub fn other(subject: impl Into<String>, expected: impl Into<String>) -> Self {
        ConfigError {
            subject: subject.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}", self.subject, self.expected)
    }
}

/// The longest part of a user's value an error line repeats.
pub const SHOWN_VALUE_CHARS: usize = 120;

/// `text` quoted for an error line, cut after [`SHOWN_VALUE_CHARS`] characters (with its whole
/// length said): a 50 MB value must not become a 50 MB log line.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

/// A proxy URL with the password of its user-info replaced by `***`, whether or not the rest
/// of it parses (`http://user:secret@proxy:notaport` -> `http://user:***@proxy:notaport`).
pub fn without_password(url: &str) -> Cow<'_, str> {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Cow::Borrowed(url);
    };
    let Some(colon) = rest[..at].find(':') else {
        return Cow::Borrowed(url);
    };
    let password_start = authority_start + colon + 1;
    let password_end = authority_start + at;
    Cow::Owned(format!(
        "{}***{}",
        &url[..password_start],
        &url[password_end..]
    ))
}

impl std::error::Error for ConfigError {}
