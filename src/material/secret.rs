//! Secrets: the credentials sent to the exporter or required from clients, a bearer token or
//! basic auth, read from files so that Kubernetes Secrets can be mounted, and re-read when the
//! files change (Kubernetes rotates mounted Secrets by swapping a symlink). The value never
//! reaches a log line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;
use log::{info, warn};

use super::stamp::{stamp, FileStamp};
use crate::config::Credentials;

/// How often, at most, the files are checked for a change: one `stat` a second, not per scrape.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The `Authorization` value of `credentials` for the secret `content` of their file.
pub fn authorization(credentials: &Credentials, content: &str) -> Result<HeaderValue, String> {
    let secret = content.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err("a file holding a non-empty secret".into());
    }
    let text = match credentials {
        Credentials::Bearer { .. } => {
            if secret.chars().any(|c| !c.is_ascii_graphic()) {
                return Err("a file holding one token of visible ASCII characters".into());
            }
            format!("Bearer {secret}")
        }
        Credentials::Basic { username, .. } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}"))
        ),
    };
    let mut value = HeaderValue::from_str(&text)
        .map_err(|_| "a file holding a secret without control characters".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads the file of `credentials` and builds their header: the start-up check, and each
/// reload.
pub fn read(credentials: &Credentials) -> Result<HeaderValue, String> {
    let content = std::fs::read_to_string(credentials.file().path())
        .map_err(|e| format!("a readable file ({e})"))?;
    authorization(credentials, &content)
}

struct Loaded {
    stamp: Option<FileStamp>,
    header: HeaderValue,
}

/// The current `Authorization` header of a secret, kept fresh from its file.
pub struct AuthHeader {
    auth: Credentials,
    /// Whose credentials these are, for log lines: "exporter credentials", "client credentials".
    what: &'static str,
    current: ArcSwap<Loaded>,
    epoch: Instant,
    /// Milliseconds after `epoch` when the file is next checked.
    next_check_ms: AtomicU64,
    checking: AtomicBool,
    /// Whether the last reload failed, so a broken file is logged once, not every second.
    failing: AtomicBool,
}

impl AuthHeader {
    /// Reads the file of `auth` (the start-up check) and keeps its header; what was wrong with
    /// the file is the error. The file is stamped before it is read, so that an edit made
    /// between the two is seen as a change at the first check rather than taken for the
    /// version already read.
    pub fn load(auth: Credentials, what: &'static str) -> Result<Self, String> {
        let before = stamp(auth.file().path());
        let header = read(&auth)?;
        Ok(Self::with_header(auth, header, before, what))
    }

    /// Starts from `header`, read from the file of `auth` after it was stamped `before`.
    fn with_header(
        auth: Credentials,
        header: HeaderValue,
        before: Option<FileStamp>,
        what: &'static str,
    ) -> Self {
        AuthHeader {
            current: ArcSwap::from_pointee(Loaded {
                stamp: before,
                header,
            }),
            auth,
            what,
            epoch: Instant::now(),
            next_check_ms: AtomicU64::new(0),
            checking: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
    }

    /// The credentials this header is made from.
    pub fn credentials(&self) -> &Credentials {
        &self.auth
    }

    /// The header to send now; at most once per [`RECHECK_INTERVAL`] this checks whether the
    /// file changed and reloads it. A file that became unreadable or empty keeps the last good
    /// value (and is logged once), so a botched rotation does not fail every scrape.
    pub fn value(&self, now: Instant) -> HeaderValue {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        if now_ms >= self.next_check_ms.load(Ordering::Relaxed)
            && !self.checking.swap(true, Ordering::Acquire)
        {
            self.next_check_ms.store(
                now_ms + RECHECK_INTERVAL.as_millis() as u64,
                Ordering::Relaxed,
            );
            self.reload_if_changed();
            self.checking.store(false, Ordering::Release);
        }
        self.current.load().header.clone()
    }

    fn reload_if_changed(&self) {
        let path = self.auth.file().path();
        let new_stamp = stamp(path);
        if new_stamp.is_some() && new_stamp == self.current.load().stamp {
            return;
        }
        let file = path.display();
        let what = self.what;
        match read(&self.auth) {
            Ok(header) => {
                self.current.store(Arc::new(Loaded {
                    stamp: new_stamp,
                    header,
                }));
                self.failing.store(false, Ordering::Relaxed);
                info!("reloaded the {what} from {file}");
            }
            Err(expected) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!("cannot reload the {what} from {file}: expected {expected}; still using the previous ones");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origin, RawValue, Setting, SettingFile};

    fn file(setting: Setting, path: &str) -> SettingFile {
        SettingFile::new(RawValue {
            setting,
            origin: Origin::Env,
            text: path.into(),
        })
    }

    /// A bearer token file holding "one", in a directory removed when the test ends (panics
    /// included), and the credentials that name it.
    fn token_file() -> (tempfile::TempDir, std::path::PathBuf, Credentials) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one").unwrap();
        let auth = Credentials::Bearer {
            token_file: file(Setting::BearerTokenFile, path.to_str().unwrap()),
        };
        (dir, path, auth)
    }

    #[test]
    fn headers() {
        let bearer = Credentials::Bearer {
            token_file: file(Setting::BearerTokenFile, "t"),
        };
        assert_eq!(
            authorization(&bearer, "abc.def\n").unwrap(),
            "Bearer abc.def"
        );
        assert!(authorization(&bearer, "\n").is_err());
        assert!(authorization(&bearer, "two words").is_err());
        let basic = Credentials::Basic {
            username: "prom".into(),
            password_file: file(Setting::BasicAuthPasswordFile, "p"),
        };
        assert_eq!(
            authorization(&basic, "secret\n").unwrap(),
            "Basic cHJvbTpzZWNyZXQ="
        );
        assert!(authorization(&basic, "secret").unwrap().is_sensitive());
    }

    #[test]
    fn reloads_a_changed_file_and_keeps_the_last_good_one() {
        let (_dir, path, auth) = token_file();
        let header = AuthHeader::load(auth.clone(), "exporter credentials").unwrap();
        let t0 = Instant::now();
        assert_eq!(header.value(t0), "Bearer one");

        std::fs::write(&path, "second-token").unwrap();
        // Within the interval the old value stays; after it, the new file is read.
        assert_eq!(header.value(t0), "Bearer one");
        assert_eq!(
            header.value(t0 + RECHECK_INTERVAL * 2),
            "Bearer second-token"
        );

        std::fs::write(&path, "").unwrap();
        assert_eq!(
            header.value(t0 + RECHECK_INTERVAL * 4),
            "Bearer second-token"
        );
    }

    #[test]
    fn an_edit_made_while_the_file_is_first_read_is_a_change() {
        let (_dir, path, auth) = token_file();
        // The order `load` keeps: the stamp, then the read. A rotation lands in between.
        let before = stamp(&path);
        let header = read(&auth).unwrap();
        std::fs::write(&path, "rotated-token").unwrap();
        let header = AuthHeader::with_header(auth, header, before, "exporter credentials");
        assert_eq!(header.value(Instant::now()), "Bearer rotated-token");
    }
}
