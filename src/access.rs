//! Who may scrape through the tunnel: an allow-list of client addresses (403 otherwise) and
//! credentials clients must present (401 otherwise), both off by default. A tunnel into a
//! private network is a security boundary; refusals are answered by the tunnel, counted and
//! never forwarded.

use std::net::IpAddr;
use std::time::Instant;

use std::sync::Arc;

use http::HeaderValue;
use subtle::ConstantTimeEq;

use crate::config::{AccessConfig, Credentials};
use crate::ip_range::IpRange;
use crate::material::secret::AuthHeader;

/// The outcome of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Allow,
    /// The client's address is not on the allow-list: 403.
    Forbidden,
    /// Missing or wrong credentials: 401 with this `WWW-Authenticate` challenge.
    Unauthorized(HeaderValue),
}

/// The access rules of the proxy port.
pub struct AccessControl {
    allowed: Option<Vec<IpRange>>,
    /// The `Authorization` value clients must send, kept fresh from its file, and the challenge
    /// for those who do not.
    credentials: Option<(Arc<AuthHeader>, HeaderValue)>,
}

impl AccessControl {
    /// The rules of `config`, with the clients' credentials loaded from their file.
    pub fn new(config: &AccessConfig, credentials: Option<Arc<AuthHeader>>) -> Self {
        let credentials = credentials.map(|header| {
            let challenge = HeaderValue::from_static(match header.credentials() {
                Credentials::Bearer { .. } => "Bearer realm=\"prometheus-tunnel\"",
                Credentials::Basic { .. } => "Basic realm=\"prometheus-tunnel\", charset=\"UTF-8\"",
            });
            (header, challenge)
        });
        AccessControl {
            allowed: config.allowed.clone(),
            credentials,
        }
    }

    /// Whether clients must present credentials (and so their `Authorization` is the tunnel's,
    /// not to be forwarded).
    pub fn requires_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Whether the client's address is checked (so the caller must look it up).
    pub fn checks_address(&self) -> bool {
        self.allowed.is_some()
    }

    /// Checks a request from `client` carrying `authorization`.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        authorization: Option<&HeaderValue>,
        now: Instant,
    ) -> Verdict {
        if let Some(allowed) = &self.allowed {
            let permitted = client.is_some_and(|ip| allowed.iter().any(|range| range.contains(ip)));
            if !permitted {
                return Verdict::Forbidden;
            }
        }
        if let Some((expected, challenge)) = &self.credentials {
            let expected = expected.value(now);
            let presented = authorization.map_or(&[][..], HeaderValue::as_bytes);
            // Constant time in the content; only a length mismatch returns early.
            if !bool::from(presented.ct_eq(expected.as_bytes())) {
                return Verdict::Unauthorized(challenge.clone());
            }
        }
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origin, RawValue, Setting, SettingFile};

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn allow_list_and_credentials() {
        let dir = std::env::temp_dir().join(format!("tunnel-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let credentials = Credentials::Bearer {
            token_file: SettingFile::new(RawValue {
                setting: Setting::ClientBearerTokenFile,
                origin: Origin::Env,
                text: token.to_string_lossy().into_owned(),
            }),
        };
        let header = AuthHeader::load(credentials.clone(), "client credentials").unwrap();
        let control = AccessControl::new(
            &AccessConfig {
                allowed: Some(vec![IpRange::parse("10.0.0.0/8").unwrap()]),
                credentials: Some(credentials),
            },
            Some(Arc::new(header)),
        );
        let now = Instant::now();
        let good = HeaderValue::from_static("Bearer s3cret");
        let bad = HeaderValue::from_static("Bearer s3creT");
        assert_eq!(
            control.check(ip("10.1.2.3"), Some(&good), now),
            Verdict::Allow
        );
        assert_eq!(
            control.check(ip("192.168.1.1"), Some(&good), now),
            Verdict::Forbidden
        );
        assert_eq!(control.check(None, Some(&good), now), Verdict::Forbidden);
        assert!(matches!(
            control.check(ip("10.1.2.3"), Some(&bad), now),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            control.check(ip("10.1.2.3"), None, now),
            Verdict::Unauthorized(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();

        let open = AccessControl::new(&AccessConfig::default(), None);
        assert_eq!(open.check(None, None, now), Verdict::Allow);
        assert!(!open.requires_credentials());
    }
}
