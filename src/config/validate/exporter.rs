//! Checking one exporter's settings (host, port, scheme, timeout, TLS, forward proxy,
//! credentials) and the files of TLS on the proxy port, which follow the same rules.

use std::num::NonZeroU16;

use super::{default_port, raw_or_default, Checked, Scope, Validator, CREDENTIAL_SETTINGS};
use crate::config::error::{self, ConfigError};
use crate::config::forward_proxy::{self, ForwardProxy};
use crate::config::model::*;
use crate::config::parse::{self, ExporterHost, Scheme};
use crate::config::setting::Setting;
use crate::config::EnvSource;

/// The `TLS_*` settings of the exporter.
const TLS_SETTINGS: [Setting; 5] = [
    Setting::TlsCaFile,
    Setting::TlsCertFile,
    Setting::TlsKeyFile,
    Setting::TlsServerName,
    Setting::TlsInsecureSkipVerify,
];

impl Validator {
    /// One exporter from `scope`: host, port, scheme, timeout, TLS, proxy, credentials.
    /// `proxy_port` is the tunnel's own, when it is known, so it can refuse to forward to itself.
    pub(super) fn exporter(
        &mut self,
        scope: &Scope<'_>,
        env: &impl EnvSource,
        proxy_port: Option<NonZeroU16>,
    ) -> Checked<ExporterConfig> {
        let host = match self.get(scope, Setting::ServerIp, parse::exporter_host) {
            Ok(Some(host)) => Ok(host),
            Ok(None) => Err(self.record(ConfigError::other(
                "SERVER_IP is not set",
                "the exporter's host in SERVER_IP, --server-ip or tunnel.server_ip",
            ))),
            Err(refused) => Err(refused),
        };
        let port = self
            .get(scope, Setting::ServerPort, parse::port)
            .map(|p| p.unwrap_or(default_port(DEFAULT_SERVER_PORT)));
        let scheme = self
            .get(scope, Setting::ServerScheme, parse::scheme)
            .map(|s| s.unwrap_or(Scheme::Http));
        let timeout = self
            .get(scope, Setting::UpstreamTimeout, parse::timeout)
            .map(|t| t.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT));
        let port = match (&host, port, proxy_port) {
            (Ok(host), Ok(port), Some(own)) if host.is_local() && port == own => {
                Err(self.record(ConfigError::value(
                    &raw_or_default(scope, Setting::ServerPort, port),
                    format!("a port other than LISTEN_PORT ({own}) when SERVER_IP is this machine: the tunnel would forward to itself"),
                )))
            }
            (_, port, _) => port,
        };
        let tls = self.exporter_tls(scope, scheme);
        let proxy = self.proxy(scope, env, scheme, &host);
        let auth = self.credentials(scope, CREDENTIAL_SETTINGS);
        Ok(ExporterConfig {
            host: host?,
            port: port?,
            scheme: scheme?,
            timeout: timeout?,
            tls: tls?,
            proxy: proxy?,
            auth: auth?,
        })
    }

    /// `TLS_*`, for https. With plain http there are none, and any set is refused (but
    /// `TLS_INSECURE_SKIP_VERIFY=false`, which says nothing): a user who set them expects TLS.
    fn exporter_tls(
        &mut self,
        scope: &Scope<'_>,
        scheme: Checked<Scheme>,
    ) -> Checked<Option<Box<ExporterTls>>> {
        let skip = self.get(scope, Setting::TlsInsecureSkipVerify, parse::boolean);
        if scheme.is_ok_and(|s| s == Scheme::Http) {
            for setting in TLS_SETTINGS {
                if setting == Setting::TlsInsecureSkipVerify && matches!(skip, Ok(Some(false))) {
                    continue;
                }
                self.refuse(
                    scope,
                    setting,
                    "SERVER_SCHEME=https with TLS settings (the exporter is spoken to in plain http)",
                );
            }
            return Ok(None);
        }
        let server_name = self
            .get(scope, Setting::TlsServerName, parse::exporter_host)
            .map(|name| {
                name.map(|h| match h {
                    ExporterHost::Ip(ip) => ip.to_string(),
                    ExporterHost::Name(name) => name,
                })
            });
        let ca_file = scope.raw(Setting::TlsCaFile).cloned().map(SettingFile::new);
        if let Some(ca) = &ca_file {
            self.named(NamedFile::ExporterCa(ca.clone()));
        }
        let client_cert = self.certificate_pair(
            scope,
            Setting::TlsCertFile,
            Setting::TlsKeyFile,
            "TLS_KEY_FILE with it: the client certificate's private key",
            "TLS_CERT_FILE with it: the client certificate of this key",
        );
        if let Ok(Some(pair)) = &client_cert {
            self.named(NamedFile::ExporterClientCert(pair.clone()));
        }
        Ok(Some(Box::new(ExporterTls {
            ca_file,
            client_cert: client_cert?,
            server_name: server_name?,
            verify: !skip?.unwrap_or(false),
        })))
    }

    /// A certificate and key given by two settings, which go together or not at all.
    pub(super) fn certificate_pair(
        &mut self,
        scope: &Scope<'_>,
        cert: Setting,
        key: Setting,
        key_missing: &str,
        cert_missing: &str,
    ) -> Checked<Option<CertificateFiles>> {
        match (scope.raw(cert), scope.raw(key)) {
            (Some(cert), Some(key)) => Ok(Some(CertificateFiles {
                cert: SettingFile::new(cert.clone()),
                key: SettingFile::new(key.clone()),
            })),
            (Some(cert), None) => Err(self.record(ConfigError::value(cert, key_missing))),
            (None, Some(key)) => Err(self.record(ConfigError::value(key, cert_missing))),
            (None, None) => Ok(None),
        }
    }

    /// `UPSTREAM_PROXY`, or curl's proxy variables when it is not set at all. An empty
    /// `UPSTREAM_PROXY` (or `none`) means no proxy, whatever the variables say.
    fn proxy(
        &mut self,
        scope: &Scope<'_>,
        env: &impl EnvSource,
        scheme: Checked<Scheme>,
        host: &Checked<ExporterHost>,
    ) -> Checked<Option<ForwardProxy>> {
        if scope.is_set(Setting::UpstreamProxy) {
            return self
                .get(scope, Setting::UpstreamProxy, |text| match text.trim() {
                    "" | "none" | "direct" => Ok(None),
                    url => ForwardProxy::parse(url).map(Some),
                })
                .map(Option::flatten);
        }
        // Which variable applies depends on the scheme and the host; without them, nothing
        // more can be said.
        let (Ok(scheme), Ok(host)) = (scheme, host) else {
            return Ok(None);
        };
        let Some((name, value)) = forward_proxy::from_env(env, scheme, host) else {
            return Ok(None);
        };
        ForwardProxy::parse(&value).map(Some).map_err(|expected| {
            self.record(ConfigError::other(
                format!("{name}={}", error::shown(&error::without_password(&value))),
                expected,
            ))
        })
    }

    /// A bearer token file, or a user name with a password file (`[token, user, password]`:
    /// the exporter's `BEARER_TOKEN_FILE`... or the clients' `CLIENT_BEARER_TOKEN_FILE`...).
    pub(super) fn credentials(
        &mut self,
        scope: &Scope<'_>,
        [token_s, user_s, password_s]: [Setting; 3],
    ) -> Checked<Option<Credentials>> {
        let credentials = match (scope.raw(token_s), scope.raw(user_s), scope.raw(password_s)) {
            (None, None, None) => return Ok(None),
            (Some(token), None, None) => Credentials::Bearer {
                token_file: SettingFile::new(token.clone()),
            },
            (None, Some(user), Some(password)) => {
                if user.text.contains(':') || user.text.is_empty() {
                    return Err(self.record(ConfigError::value(
                        user,
                        "a non-empty user name without ':' (RFC 7617)",
                    )));
                }
                Credentials::Basic {
                    username: user.text.clone(),
                    password_file: SettingFile::new(password.clone()),
                }
            }
            (Some(token), _, _) => {
                return Err(self.record(ConfigError::value(
                    token,
                    format!(
                        "either {} or {} with {}, not both",
                        token_s.env(),
                        user_s.env(),
                        password_s.env()
                    ),
                )))
            }
            (None, Some(user), None) => {
                return Err(self.record(ConfigError::value(
                    user,
                    format!("{} with it", password_s.env()),
                )))
            }
            (None, None, Some(password)) => {
                return Err(self.record(ConfigError::value(
                    password,
                    format!("{} with it", user_s.env()),
                )))
            }
        };
        self.named(NamedFile::Secret(credentials.clone()));
        Ok(Some(credentials))
    }

    /// `LISTEN_TLS_*`: a certificate and key, and optionally the CAs of client certificates.
    pub(super) fn listener_tls(&mut self, scope: &Scope<'_>) -> Checked<Option<ListenerTlsFiles>> {
        self.server_tls(
            scope,
            [
                Setting::ListenTlsCertFile,
                Setting::ListenTlsKeyFile,
                Setting::ListenTlsClientCaFile,
            ],
            "the proxy port",
        )
    }

    /// TLS served on `port` by the settings `[cert, key, client CA]`: a certificate and key,
    /// and optionally the CAs of client certificates.
    pub(super) fn server_tls(
        &mut self,
        scope: &Scope<'_>,
        [cert, key, client_ca]: [Setting; 3],
        port: &str,
    ) -> Checked<Option<ListenerTlsFiles>> {
        let server_cert = self.certificate_pair(
            scope,
            cert,
            key,
            &format!("{} with it", key.env()),
            &format!("{} with it", cert.env()),
        )?;
        let client_ca_file = scope.raw(client_ca).cloned().map(SettingFile::new);
        let Some(server_cert) = server_cert else {
            self.refuse(
                scope,
                client_ca,
                &format!(
                    "{} and {} with it: client certificates need TLS on {port}",
                    cert.env(),
                    key.env()
                ),
            );
            return Ok(None);
        };
        let files = ListenerTlsFiles {
            server_cert,
            client_ca_file,
        };
        self.named(NamedFile::ListenerTls(files.clone()));
        Ok(Some(files))
    }
}
