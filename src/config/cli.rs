//! The command line: Pingora's own `Opt` (`-c`, `-t`, `-d`, `-u`) plus one flag per setting.
//!
//! Flags take text, not typed values, so that a bad flag is refused with the same message as a bad
//! env value or conf key (`--server-port="abc": expected a port 1-65535`), and after every other
//! problem has been collected.

use clap::Parser;
use pingora_core::server::configuration::Opt;

use super::setting::{Origin, RawValue, Setting};
use crate::build_info;

/// Forward Prometheus scrapes to an exporter it cannot reach directly, and record the tunnel's
/// own metrics.
///
/// Each setting is read from, lowest first: its default, the `tunnel:` section of the conf file
/// (-c), its environment variable, then its flag.
#[derive(Debug, Parser)]
#[command(name = "prometheus-tunnel", version = build_info::VERSION)]
pub struct Cli {
    /// Pingora's server options.
    #[command(flatten)]
    pub pingora: Opt,

    /// Exporter host: IPv4, IPv6 or DNS name. [env: SERVER_IP] [conf: tunnel.server_ip]
    /// [required]
    #[arg(long, value_name = "HOST")]
    pub server_ip: Option<String>,

    /// Exporter port. [env: SERVER_PORT] [conf: tunnel.server_port] [default: 9182]
    #[arg(long, value_name = "PORT")]
    pub server_port: Option<String>,

    /// http or https to the exporter. [env: SERVER_SCHEME] [conf: tunnel.server_scheme]
    /// [default: http]
    #[arg(long, value_name = "SCHEME")]
    pub server_scheme: Option<String>,

    /// Address the proxy and metrics ports bind. [env: LISTEN_ADDRESS]
    /// [conf: tunnel.listen_address] [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub listen_address: Option<String>,

    /// Port Prometheus scrapes, forwarded to the exporter. [env: LISTEN_PORT]
    /// [conf: tunnel.listen_port] [default: 8080]
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<String>,

    /// Port of the tunnel's own /metrics, /healthz, /readyz, /version. [env: METRICS_PORT]
    /// [conf: tunnel.metrics_port] [default: 9182]
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<String>,

    /// Debug logging: true/false/1/0 (RUST_LOG, when set, wins). [env: DEBUG]
    /// [conf: tunnel.debug] [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub debug: Option<String>,

    /// Whole-request limit to the exporter, e.g. 10s, 500ms; a smaller
    /// X-Prometheus-Scrape-Timeout-Seconds from Prometheus wins. [env: UPSTREAM_TIMEOUT]
    /// [conf: tunnel.upstream_timeout] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub upstream_timeout: Option<String>,

    /// PEM bundle of the CAs that sign the exporter's certificate; the system roots when unset.
    /// [env: TLS_CA_FILE] [conf: tunnel.tls_ca_file]
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<String>,

    /// PEM client certificate (chain) for mutual TLS, with --tls-key-file. [env: TLS_CERT_FILE]
    /// [conf: tunnel.tls_cert_file]
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<String>,

    /// PEM private key of the client certificate. [env: TLS_KEY_FILE] [conf: tunnel.tls_key_file]
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<String>,

    /// Name to verify the exporter's certificate against, and to send as SNI; default SERVER_IP.
    /// [env: TLS_SERVER_NAME] [conf: tunnel.tls_server_name]
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// Do not verify the exporter's certificate (logged loudly at start-up).
    /// [env: TLS_INSECURE_SKIP_VERIFY] [conf: tunnel.tls_insecure_skip_verify] [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_insecure_skip_verify: Option<String>,

    /// Forward proxy to the exporter: http://[user:pass@]host:port (CONNECT),
    /// socks5://[user:pass@]host:port or socks5h:// (the proxy resolves the name). Unset: the
    /// https_proxy/http_proxy/all_proxy and no_proxy variables, as curl reads them.
    /// [env: UPSTREAM_PROXY] [conf: tunnel.upstream_proxy]
    #[arg(long, value_name = "URL")]
    pub upstream_proxy: Option<String>,

    /// File holding a bearer token sent to the exporter; re-read when it changes.
    /// [env: BEARER_TOKEN_FILE] [conf: tunnel.bearer_token_file]
    #[arg(long, value_name = "FILE")]
    pub bearer_token_file: Option<String>,

    /// User name of basic auth to the exporter, with --basic-auth-password-file.
    /// [env: BASIC_AUTH_USERNAME] [conf: tunnel.basic_auth_username]
    #[arg(long, value_name = "USER")]
    pub basic_auth_username: Option<String>,

    /// File holding the basic-auth password; re-read when it changes.
    /// [env: BASIC_AUTH_PASSWORD_FILE] [conf: tunnel.basic_auth_password_file]
    #[arg(long, value_name = "FILE")]
    pub basic_auth_password_file: Option<String>,

    /// Client addresses allowed on the proxy port, comma-separated CIDRs (10.0.0.0/8,fd00::/8);
    /// others get 403. [env: CLIENT_ALLOWED_CIDRS] [conf: tunnel.client_allowed_cidrs]
    /// [default: everyone]
    #[arg(long, value_name = "CIDRS")]
    pub client_allowed_cidrs: Option<String>,

    /// File holding the bearer token clients must present (else 401); re-read when it changes.
    /// [env: CLIENT_BEARER_TOKEN_FILE] [conf: tunnel.client_bearer_token_file]
    #[arg(long, value_name = "FILE")]
    pub client_bearer_token_file: Option<String>,

    /// User name clients must present with basic auth, with --client-basic-auth-password-file.
    /// [env: CLIENT_BASIC_AUTH_USERNAME] [conf: tunnel.client_basic_auth_username]
    #[arg(long, value_name = "USER")]
    pub client_basic_auth_username: Option<String>,

    /// File holding the password clients must present with basic auth.
    /// [env: CLIENT_BASIC_AUTH_PASSWORD_FILE] [conf: tunnel.client_basic_auth_password_file]
    #[arg(long, value_name = "FILE")]
    pub client_basic_auth_password_file: Option<String>,

    /// PEM certificate (chain) to serve TLS on the proxy port, with --listen-tls-key-file.
    /// [env: LISTEN_TLS_CERT_FILE] [conf: tunnel.listen_tls_cert_file]
    #[arg(long, value_name = "FILE")]
    pub listen_tls_cert_file: Option<String>,

    /// PEM private key of the proxy port's certificate. [env: LISTEN_TLS_KEY_FILE]
    /// [conf: tunnel.listen_tls_key_file]
    #[arg(long, value_name = "FILE")]
    pub listen_tls_key_file: Option<String>,

    /// PEM CAs: with TLS on the proxy port, clients must present a certificate they signed.
    /// [env: LISTEN_TLS_CLIENT_CA_FILE] [conf: tunnel.listen_tls_client_ca_file]
    #[arg(long, value_name = "FILE")]
    pub listen_tls_client_ca_file: Option<String>,

    /// Longest a client may take to send its first request header (later ones get IDLE_TIMEOUT
    /// on top).
    /// [env: HEADER_READ_TIMEOUT] [conf: tunnel.header_read_timeout] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub header_read_timeout: Option<String>,

    /// Longest a client connection may sit idle waiting for its next request.
    /// [env: IDLE_TIMEOUT] [conf: tunnel.idle_timeout] [default: 120s]
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Most client connections open at once on the proxy port; more are answered 503 and
    /// closed. [env: MAX_CONNECTIONS] [conf: tunnel.max_connections]
    /// [default: what the open-file limit and the memory allow, logged at start-up]
    #[arg(long, value_name = "COUNT")]
    pub max_connections: Option<String>,

    /// Multi-target mode: the target (of tunnel.targets in the conf file) a request without
    /// ?target= goes to. [env: DEFAULT_TARGET] [conf: tunnel.default_target]
    /// [default: the SERVER_IP exporter, or the only target]
    #[arg(long, value_name = "NAME")]
    pub default_target: Option<String>,

    /// Multi-target mode: the query parameter that names a request's target, removed before
    /// forwarding; another name lets blackbox or SNMP exporters keep their own ?target=.
    /// [env: TARGET_PARAM] [conf: tunnel.target_param] [default: target]
    #[arg(long, value_name = "NAME")]
    pub target_param: Option<String>,
}

impl Cli {
    /// The settings given as flags, as raw values to be merged over the other layers.
    pub fn values(&self) -> Vec<RawValue> {
        // Destructure so that a new flag cannot be forgotten here.
        let Cli {
            pingora: _,
            server_ip,
            server_port,
            server_scheme,
            listen_address,
            listen_port,
            metrics_port,
            debug,
            upstream_timeout,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            tls_server_name,
            tls_insecure_skip_verify,
            upstream_proxy,
            bearer_token_file,
            basic_auth_username,
            basic_auth_password_file,
            client_allowed_cidrs,
            client_bearer_token_file,
            client_basic_auth_username,
            client_basic_auth_password_file,
            listen_tls_cert_file,
            listen_tls_key_file,
            listen_tls_client_ca_file,
            header_read_timeout,
            idle_timeout,
            max_connections,
            default_target,
            target_param,
        } = self;
        [
            (Setting::ServerIp, server_ip),
            (Setting::ServerPort, server_port),
            (Setting::ServerScheme, server_scheme),
            (Setting::ListenAddress, listen_address),
            (Setting::ListenPort, listen_port),
            (Setting::MetricsPort, metrics_port),
            (Setting::Debug, debug),
            (Setting::UpstreamTimeout, upstream_timeout),
            (Setting::TlsCaFile, tls_ca_file),
            (Setting::TlsCertFile, tls_cert_file),
            (Setting::TlsKeyFile, tls_key_file),
            (Setting::TlsServerName, tls_server_name),
            (Setting::TlsInsecureSkipVerify, tls_insecure_skip_verify),
            (Setting::UpstreamProxy, upstream_proxy),
            (Setting::BearerTokenFile, bearer_token_file),
            (Setting::BasicAuthUsername, basic_auth_username),
            (Setting::BasicAuthPasswordFile, basic_auth_password_file),
            (Setting::ClientAllowedCidrs, client_allowed_cidrs),
            (Setting::ClientBearerTokenFile, client_bearer_token_file),
            (Setting::ClientBasicAuthUsername, client_basic_auth_username),
            (
                Setting::ClientBasicAuthPasswordFile,
                client_basic_auth_password_file,
            ),
            (Setting::ListenTlsCertFile, listen_tls_cert_file),
            (Setting::ListenTlsKeyFile, listen_tls_key_file),
            (Setting::ListenTlsClientCaFile, listen_tls_client_ca_file),
            (Setting::HeaderReadTimeout, header_read_timeout),
            (Setting::IdleTimeout, idle_timeout),
            (Setting::MaxConnections, max_connections),
            (Setting::DefaultTarget, default_target),
            (Setting::TargetParam, target_param),
        ]
        .into_iter()
        .filter_map(|(setting, value)| {
            value.as_ref().map(|text| RawValue {
                setting,
                origin: Origin::Cli,
                text: text.clone(),
            })
        })
        .collect()
    }
}
