//! The tunnel's settings, each declared once: its environment variable (the contract in the
//! project's design), from which its conf-file key and flag follow, the name of its value, its
//! default and what it is for. The enum, `--help` (`cli.rs`) and the README's table are all made
//! from this one table; a test checks that the README still matches it.

/// One setting's declaration.
struct Spec {
    env: &'static str,
    value_name: &'static str,
    /// A flag that may be given without a value (meaning `true`).
    switch: bool,
    /// The default, as the README states it (Markdown).
    default: &'static str,
    /// What it is for (Markdown: `--help` shows it without the backticks).
    help: &'static str,
}

macro_rules! settings {
    ($( $(#[$doc:meta])* $variant:ident = $env:literal, $value:literal, $switch:literal,
        default $default:literal, $help:literal; )+) => {
        /// One tunnel setting, as the user can spell it in the env, the conf file or on the
        /// command line.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Setting {
            $( $(#[$doc])* $variant, )+
        }

        impl Setting {
            /// Every setting, in the order `--help` and the README list them.
            pub const ALL: &'static [Setting] = &[ $( Setting::$variant, )+ ];

            const SPECS: &'static [Spec] = &[ $( Spec {
                env: $env,
                value_name: $value,
                switch: $switch,
                default: $default,
                help: $help,
            }, )+ ];
        }
    };
}

settings! {
    /// Exporter host.
    ServerIp = "SERVER_IP", "HOST", false, default "required",
        "exporter host: IPv4, IPv6 or DNS name";
    /// Exporter port.
    ServerPort = "SERVER_PORT", "PORT", false, default "`9182`", "exporter port";
    /// `http` or `https` to the exporter.
    ServerScheme = "SERVER_SCHEME", "SCHEME", false, default "`http`", "`http` or `https`";
    /// Address both listeners bind.
    ListenAddress = "LISTEN_ADDRESS", "IP", false, default "`0.0.0.0`", "address both ports bind";
    /// Port Prometheus scrapes.
    ListenPort = "LISTEN_PORT", "PORT", false, default "`8080`",
        "port Prometheus scrapes, forwarded to the exporter";
    /// Port of the tunnel's own routes.
    MetricsPort = "METRICS_PORT", "PORT", false, default "`9182`",
        "the tunnel's own `/metrics`, `/healthz`, `/readyz`, `/version`, `/targets`, and the status page `/` (`/status` as JSON)";
    /// Debug logging.
    Debug = "DEBUG", "BOOL", true, default "`false`",
        "debug logging: `true`/`false`/`1`/`0` (`RUST_LOG`, when set, wins)";
    /// Whole-request limit to the exporter.
    UpstreamTimeout = "UPSTREAM_TIMEOUT", "DURATION", false, default "`10s`",
        "whole-request limit to the exporter: `10s`, `500ms`, `1m30s` or seconds; a smaller `X-Prometheus-Scrape-Timeout-Seconds` wins";
    /// CAs of the exporter's certificate.
    TlsCaFile = "TLS_CA_FILE", "FILE", false, default "system roots",
        "PEM bundle of the CAs that sign the exporter's certificate";
    /// Client certificate for mutual TLS.
    TlsCertFile = "TLS_CERT_FILE", "FILE", false, default "none",
        "PEM client certificate (chain) for mutual TLS, with `TLS_KEY_FILE`";
    /// Key of the client certificate.
    TlsKeyFile = "TLS_KEY_FILE", "FILE", false, default "none",
        "PEM private key of the client certificate";
    /// Name the exporter's certificate is verified against.
    TlsServerName = "TLS_SERVER_NAME", "NAME", false, default "`SERVER_IP`",
        "name the exporter's certificate is verified against, sent as SNI";
    /// Skip verification of the exporter's certificate.
    TlsInsecureSkipVerify = "TLS_INSECURE_SKIP_VERIFY", "BOOL", true, default "`false`",
        "do not verify the exporter's certificate (logged as a warning at every start)";
    /// Forward proxy to the exporter.
    UpstreamProxy = "UPSTREAM_PROXY", "URL", false, default "curl's `*_proxy` variables",
        "forward proxy to the exporter: `http://[user:pass@]host:port` (CONNECT), `socks5://...`, `socks5h://...` (the proxy resolves names); `\"\"` or `none` for no proxy";
    /// Bearer token for the exporter.
    BearerTokenFile = "BEARER_TOKEN_FILE", "FILE", false, default "none",
        "file with a bearer token for the exporter, re-read when it changes";
    /// Basic-auth user name for the exporter.
    BasicAuthUsername = "BASIC_AUTH_USERNAME", "USER", false, default "none",
        "basic-auth user name for the exporter, with `BASIC_AUTH_PASSWORD_FILE`";
    /// Basic-auth password file for the exporter.
    BasicAuthPasswordFile = "BASIC_AUTH_PASSWORD_FILE", "FILE", false, default "none",
        "file with the basic-auth password for the exporter, re-read when it changes";
    /// Client addresses allowed on the proxy port.
    ClientAllowedCidrs = "CLIENT_ALLOWED_CIDRS", "CIDRS", false, default "everyone",
        "client addresses allowed on the proxy port (`10.0.0.0/8,fd00::/8`); others get `403`";
    /// Bearer token clients must present.
    ClientBearerTokenFile = "CLIENT_BEARER_TOKEN_FILE", "FILE", false, default "none",
        "file with the bearer token clients must present (else `401`), re-read when it changes";
    /// Basic-auth user name clients must present.
    ClientBasicAuthUsername = "CLIENT_BASIC_AUTH_USERNAME", "USER", false, default "none",
        "basic-auth user name clients must present (else `401`), with `CLIENT_BASIC_AUTH_PASSWORD_FILE`";
    /// Basic-auth password file clients must match.
    ClientBasicAuthPasswordFile = "CLIENT_BASIC_AUTH_PASSWORD_FILE", "FILE", false, default "none",
        "file with the basic-auth password clients must present";
    /// Certificate for TLS on the proxy port.
    ListenTlsCertFile = "LISTEN_TLS_CERT_FILE", "FILE", false, default "plain HTTP",
        "PEM certificate (chain) to serve TLS on the proxy port, with `LISTEN_TLS_KEY_FILE`";
    /// Key for TLS on the proxy port.
    ListenTlsKeyFile = "LISTEN_TLS_KEY_FILE", "FILE", false, default "plain HTTP",
        "PEM private key of the proxy port's certificate";
    /// CAs whose client certificates the proxy port requires.
    ListenTlsClientCaFile = "LISTEN_TLS_CLIENT_CA_FILE", "FILE", false, default "none",
        "with TLS, require client certificates signed by these PEM CAs";
    /// Deadline of a request header.
    HeaderReadTimeout = "HEADER_READ_TIMEOUT", "DURATION", false, default "`10s`",
        "a connection's first request header must be complete within this of its accept, TLS handshake included; a later one within this of its first byte";
    /// Idle time of a kept-alive client connection.
    IdleTimeout = "IDLE_TIMEOUT", "DURATION", false, default "`120s`",
        "idle kept-alive client connections are closed after this";
    /// Most client connections open at once.
    MaxConnections = "MAX_CONNECTIONS", "COUNT", false,
        default "what the open-file limit and the memory allow, logged at start-up",
        "client connections open at once, counted from accept; more get `503`";
    /// The target of a request that names none.
    DefaultTarget = "DEFAULT_TARGET", "NAME", false,
        default "the `SERVER_IP` exporter, or the only target",
        "multi-target mode: the target of a request without the routing parameter";
    /// The routing parameter of multi-target mode.
    TargetParam = "TARGET_PARAM", "NAME", false, default "`target`",
        "multi-target mode: the query parameter naming a request's target, removed before forwarding (another name lets blackbox or SNMP exporters keep their own `target`)";
    /// Port PushProx clients poll: reverse mode.
    PollPort = "POLL_PORT", "PORT", false, default "off",
        "reverse mode: the port PushProx clients poll (`/poll`, `/push`, `/clients`); with it, `SERVER_IP` and `targets` may be left out";
    /// Client addresses allowed to poll and push.
    PollAllowedCidrs = "POLL_ALLOWED_CIDRS", "CIDRS", false, default "everyone",
        "reverse mode: addresses allowed to `/poll` and `/push`; others get `403`";
    /// Certificate for TLS on the poll port.
    PollTlsCertFile = "POLL_TLS_CERT_FILE", "FILE", false, default "plain HTTP",
        "reverse mode: PEM certificate (chain) to serve TLS on the poll port, with `POLL_TLS_KEY_FILE`";
    /// Key for TLS on the poll port.
    PollTlsKeyFile = "POLL_TLS_KEY_FILE", "FILE", false, default "plain HTTP",
        "reverse mode: PEM private key of the poll port's certificate";
    /// CAs whose client certificates the poll port requires.
    PollTlsClientCaFile = "POLL_TLS_CLIENT_CA_FILE", "FILE", false, default "none",
        "reverse mode: with TLS, require client certificates signed by these PEM CAs";
    /// Names bound to client certificates.
    PollBindNames = "POLL_BIND_NAMES", "BOOL", true, default "`false`",
        "reverse mode: a client polls and pushes only as a name its certificate carries (subject CN or DNS SAN); needs `POLL_TLS_CLIENT_CA_FILE`";
    /// How long an idle poll is held before it is answered.
    PollKeepalive = "POLL_KEEPALIVE", "DURATION", false, default "`25s`",
        "reverse mode: an idle poll is answered after this, and the client polls again at once, so a load balancer's idle timeout never cuts it; `0` holds it indefinitely";
    /// Most names registered at once.
    PollMaxClients = "POLL_MAX_CLIENTS", "COUNT", false, default "`10000`",
        "reverse mode: names registered at once; a poll for one more gets `503`";
    /// Most open polls per name.
    PollMaxPollsPerName = "POLL_MAX_POLLS_PER_NAME", "COUNT", false, default "`1`",
        "reverse mode: open polls one name may hold; a newer one supersedes the oldest, which is answered `409`";
    /// Largest push accepted.
    PollMaxPushSize = "POLL_MAX_PUSH_SIZE", "BYTES", false, default "`64MiB`",
        "reverse mode: the largest push (a scrape's whole answer) accepted: bytes, or with `KiB`, `MiB`, `GiB`; a larger one is refused `413` and its scrape answered `502`";
    /// Port agents dial: agent mode.
    AgentPort = "AGENT_PORT", "PORT", false, default "off",
        "agent mode: the port `prometheus-tunnel agent` dials (mutual TLS, HTTP/2); with it, `SERVER_IP` and `targets` may be left out";
    /// Certificate of the agent port.
    AgentTlsCertFile = "AGENT_TLS_CERT_FILE", "FILE", false, default "required with `AGENT_PORT`",
        "agent mode: PEM certificate (chain) the agent port presents, with `AGENT_TLS_KEY_FILE`";
    /// Key of the agent port's certificate.
    AgentTlsKeyFile = "AGENT_TLS_KEY_FILE", "FILE", false, default "required with `AGENT_PORT`",
        "agent mode: PEM private key of the agent port's certificate";
    /// CAs of agents' client certificates.
    AgentTlsClientCaFile = "AGENT_TLS_CLIENT_CA_FILE", "FILE", false, default "required with `AGENT_PORT`",
        "agent mode: PEM CAs that sign agents' client certificates; an agent's name is its certificate's subject CN";
    /// Most agents connected at once.
    AgentMaxAgents = "AGENT_MAX_AGENTS", "COUNT", false, default "`1000`",
        "agent mode: agents connected at once; one more is refused at its handshake";
    /// Most scrapes in flight on one agent.
    AgentMaxStreams = "AGENT_MAX_STREAMS", "COUNT", false, default "`100`",
        "agent mode: scrapes in flight on one agent's connection (HTTP/2 streams); more get `503`";
    /// Largest answer from an agent.
    AgentMaxBodySize = "AGENT_MAX_BODY_SIZE", "BYTES", false, default "`64MiB`",
        "agent mode: the largest scrape answer taken from an agent; a larger one is cut and counted `502`";
    /// This replica's id.
    ReplicaId = "REPLICA_ID", "ID", false, default "`$HOSTNAME`, else a random id",
        "agent mode: this replica's id, reported to agents so that each holds one connection to every replica";
    /// The other replicas.
    Peers = "PEERS", "HOST:PORT,...", false, default "none",
        "agent mode: the metrics ports of every replica (this one too): a headless Service's `name:port`, or a list; a scrape for an agent another replica holds is forwarded there once, and `/targets` lists every replica's agents";
    /// Agent role: the tunnel to dial.
    TunnelAddress = "TUNNEL_ADDRESS", "HOST:PORT", false, default "required by `agent`",
        "`prometheus-tunnel agent`: the tunnel's agent port to dial";
    /// Agent role: CAs of the tunnel's certificate.
    TunnelCaFile = "TUNNEL_CA_FILE", "FILE", false, default "system roots",
        "`prometheus-tunnel agent`: PEM CAs that sign the agent port's certificate";
    /// Agent role: the name the tunnel's certificate is verified against.
    TunnelServerName = "TUNNEL_SERVER_NAME", "NAME", false, default "the host of `TUNNEL_ADDRESS`",
        "`prometheus-tunnel agent`: name the agent port's certificate is verified against, sent as SNI";
    /// Agent role: the agent's client certificate.
    TunnelClientCertFile = "TUNNEL_CLIENT_CERT_FILE", "FILE", false, default "required by `agent`",
        "`prometheus-tunnel agent`: PEM client certificate whose subject CN names the agent, with `TUNNEL_CLIENT_KEY_FILE`";
    /// Agent role: the key of the client certificate.
    TunnelClientKeyFile = "TUNNEL_CLIENT_KEY_FILE", "FILE", false, default "required by `agent`",
        "`prometheus-tunnel agent`: PEM private key of the client certificate";
    /// Agent role: the forward proxy to the tunnel.
    TunnelProxy = "TUNNEL_PROXY", "URL", false, default "none",
        "`prometheus-tunnel agent`: forward proxy on the way to the tunnel: `http://[user:pass@]host:port` (CONNECT), `socks5://...`, `socks5h://...`";
}

impl Setting {
    fn spec(self) -> &'static Spec {
        &Self::SPECS[self as usize]
    }

    /// The environment variable, e.g. `SERVER_PORT`.
    pub fn env(self) -> &'static str {
        self.spec().env
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

    /// The name of the flag's value in `--help` (`PORT`).
    pub fn value_name(self) -> &'static str {
        self.spec().value_name
    }

    /// Whether the value is a proxy URL, whose password (user-info) is never shown: not in a
    /// refusal, not on the status page.
    pub fn holds_proxy_url(self) -> bool {
        matches!(self, Setting::UpstreamProxy | Setting::TunnelProxy)
    }

    /// Whether the flag may be given without a value, meaning `true`.
    pub fn is_switch(self) -> bool {
        self.spec().switch
    }

    /// The default, as the README states it (Markdown).
    pub fn default_text(self) -> &'static str {
        self.spec().default
    }

    /// What the setting is for (Markdown).
    pub fn help(self) -> &'static str {
        self.spec().help
    }

    /// The setting whose conf-file key is `key`.
    pub fn from_key(key: &str) -> Option<Setting> {
        Setting::ALL.iter().copied().find(|s| s.key() == key)
    }
}

#[cfg(test)]
mod tests {
    use super::Setting;

    /// The README's table of settings, as this table renders it.
    fn readme_table() -> String {
        let mut table = String::from(
            "| env | conf key (`tunnel:`) | flag | meaning | default |\n|---|---|---|---|---|\n",
        );
        for s in Setting::ALL {
            table.push_str(&format!(
                "| `{}` | `{}` | `{}` | {} | {} |\n",
                s.env(),
                s.key(),
                s.flag(),
                s.help(),
                s.default_text()
            ));
        }
        table
    }

    #[test]
    fn the_readme_lists_every_setting_as_declared() {
        let readme = include_str!("../../README.md");
        let expected = readme_table();
        assert!(
            readme.contains(&expected),
            "README.md's settings table differs from src/config/setting.rs; it should read:\n{expected}"
        );
    }

    #[test]
    fn every_setting_is_declared_once_with_distinct_names() {
        let mut envs: Vec<&str> = Setting::ALL.iter().map(|s| s.env()).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), Setting::ALL.len());
        for (i, s) in Setting::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "ALL is in declaration order");
            assert_eq!(Setting::from_key(&s.key()), Some(*s));
        }
    }
}
