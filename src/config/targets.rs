//! `tunnel.targets`: the exporters of multi-target mode, as the conf file lists them. Each
//! target's fields become raw values over the top-level settings, so one validator checks a
//! target exactly as it checks the single exporter, and a field a target leaves out falls back
//! to the top-level setting.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::{ConfigError, Origin, RawValue, TargetField};
use super::setting::Setting;

/// The longest target name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// One entry of `tunnel.targets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Name used in `?target=NAME` and as the `target` label: letters, digits, `.`, `_`, `-`, `~`.
    pub name: String,
    /// `host:port` (`[v6]:port`), or `host` to use the top-level `server_port`.
    pub address: String,
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// Whole-request limit, like `upstream_timeout`.
    pub timeout: Option<String>,
    /// Forward proxy URL, like `upstream_proxy` (`none` for a direct connection).
    pub proxy: Option<String>,
    /// A file holding the forward proxy URL, for one with credentials: a mounted Secret, so the
    /// password is in no ConfigMap. Read with the conf file, on every reload.
    pub proxy_file: Option<String>,
    /// TLS to this exporter.
    pub tls: Option<TargetTls>,
    /// Credentials for this exporter.
    pub auth: Option<TargetAuth>,
    /// Labels published on `/targets` for Prometheus' http_sd.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `targets[].tls`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTls {
    /// `TLS_CA_FILE` for this exporter.
    pub ca_file: Option<String>,
    /// `TLS_CERT_FILE` for this exporter.
    pub cert_file: Option<String>,
    /// `TLS_KEY_FILE` for this exporter.
    pub key_file: Option<String>,
    /// `TLS_SERVER_NAME` for this exporter.
    pub server_name: Option<String>,
    /// `TLS_INSECURE_SKIP_VERIFY` for this exporter.
    pub insecure_skip_verify: Option<bool>,
}

/// `targets[].auth`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetAuth {
    /// `BEARER_TOKEN_FILE` for this exporter.
    pub bearer_token_file: Option<String>,
    /// `BASIC_AUTH_USERNAME` for this exporter.
    pub basic_auth_username: Option<String>,
    /// `BASIC_AUTH_PASSWORD_FILE` for this exporter.
    pub basic_auth_password_file: Option<String>,
}

/// Whether `name` is a valid target name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'))
}

/// Whether `name` may be a label on `/targets`: Prometheus' label syntax, and not one of the
/// reserved `__` labels, which the tunnel sets itself.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

impl TargetSpec {
    /// Where a value of this target came from, for messages.
    fn origin(&self, file: &Path, field: &str) -> Origin {
        Origin::Target(Box::new(TargetField {
            file: file.to_path_buf(),
            target: self.name.clone(),
            field: field.to_string(),
        }))
    }

    /// The target's fields as raw values over the top-level settings.
    pub fn overrides(&self, file: &Path) -> Result<Vec<RawValue>, ConfigError> {
        let mut values = Vec::new();
        let mut push = |setting: Setting, field: &str, text: Option<String>| {
            if let Some(text) = text {
                values.push(RawValue {
                    setting,
                    origin: self.origin(file, field),
                    text,
                });
            }
        };
        let (host, port) = split_address(&self.address).ok_or_else(|| {
            ConfigError::other(
                format!(
                    "targets[{}].address={} in {}",
                    self.name,
                    super::error::shown(&self.address),
                    file.display()
                ),
                "host:port, [ipv6]:port or host",
            )
        })?;
        push(Setting::ServerIp, "address", Some(host));
        push(Setting::ServerPort, "address", port);
        push(Setting::ServerScheme, "scheme", self.scheme.clone());
        push(Setting::UpstreamTimeout, "timeout", self.timeout.clone());
        match (&self.proxy, &self.proxy_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::other(
                    format!("targets[{}] in {}", self.name, file.display()),
                    "either proxy or proxy_file, not both",
                ))
            }
            (_, Some(path)) => {
                let url = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::other(
                        format!(
                            "targets[{}].proxy_file={} in {} ({e})",
                            self.name,
                            super::error::shown(path),
                            file.display()
                        ),
                        "a readable file holding the proxy URL",
                    )
                })?;
                push(
                    Setting::UpstreamProxy,
                    "proxy_file",
                    Some(url.trim().to_string()),
                );
            }
            (proxy, None) => push(Setting::UpstreamProxy, "proxy", proxy.clone()),
        }
        let tls = self.tls.clone().unwrap_or_default();
        push(Setting::TlsCaFile, "tls.ca_file", tls.ca_file);
        push(Setting::TlsCertFile, "tls.cert_file", tls.cert_file);
        push(Setting::TlsKeyFile, "tls.key_file", tls.key_file);
        push(Setting::TlsServerName, "tls.server_name", tls.server_name);
        push(
            Setting::TlsInsecureSkipVerify,
            "tls.insecure_skip_verify",
            tls.insecure_skip_verify.map(|b| b.to_string()),
        );
        let auth = self.auth.clone().unwrap_or_default();
        push(
            Setting::BearerTokenFile,
            "auth.bearer_token_file",
            auth.bearer_token_file,
        );
        push(
            Setting::BasicAuthUsername,
            "auth.basic_auth_username",
            auth.basic_auth_username,
        );
        push(
            Setting::BasicAuthPasswordFile,
            "auth.basic_auth_password_file",
            auth.basic_auth_password_file,
        );
        Ok(values)
    }
}

/// `host:port` → (`host`, `Some(port)`), `[v6]:port` → (`v6`, port), `host` or a bare IPv6
/// address → (`host`, `None`).
fn split_address(address: &str) -> Option<(String, Option<String>)> {
    let address = address.trim();
    if address.is_empty() {
        return None;
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host.to_string(), None)),
            _ => Some((host.to_string(), Some(after.strip_prefix(':')?.to_string()))),
        };
    }
    match address.matches(':').count() {
        0 => Some((address.to_string(), None)),
        1 => {
            let (host, port) = address.split_once(':')?;
            Some((host.to_string(), Some(port.to_string())))
        }
        // A bare IPv6 address.
        _ => Some((address.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("10.0.0.1:9100"),
            Some(("10.0.0.1".into(), Some("9100".into())))
        );
        assert_eq!(split_address("db-1"), Some(("db-1".into(), None)));
        assert_eq!(
            split_address("[fd00::1]:9100"),
            Some(("fd00::1".into(), Some("9100".into())))
        );
        assert_eq!(split_address("fd00::1"), Some(("fd00::1".into(), None)));
        assert_eq!(split_address("[fd00::1]x"), None);
        assert_eq!(split_address(""), None);
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.prod_eu~a"));
        for bad in ["", "a b", "a/b", "a&b", "ä", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_label_name("env"));
        assert!(!valid_label_name("__address__"));
        assert!(!valid_label_name("1x"));
        assert!(!valid_label_name("a-b"));
    }
}
