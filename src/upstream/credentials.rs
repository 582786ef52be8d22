//! Credentials sent to the exporter: a bearer token or basic auth, read from files so that
//! Kubernetes Secrets can be mounted, and re-read when the files change (Kubernetes rotates
//! mounted Secrets by swapping a symlink). The value never reaches a log line.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;
use log::{info, warn};

/// How often, at most, the files are checked for a change: one `stat` a second, not per scrape.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A credential read from a file: what the tunnel sends to the exporter, or what it requires
/// from its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`, the token read from `token_file`.
    Bearer {
        /// `BEARER_TOKEN_FILE`.
        token_file: PathBuf,
    },
    /// `Authorization: Basic ...` of `username` and the password read from `password_file`.
    Basic {
        /// `BASIC_AUTH_USERNAME`.
        username: String,
        /// `BASIC_AUTH_PASSWORD_FILE`.
        password_file: PathBuf,
    },
}

impl Credentials {
    /// The file whose content is secret.
    pub fn file(&self) -> &Path {
        match self {
            Credentials::Bearer { token_file } => token_file,
            Credentials::Basic { password_file, .. } => password_file,
        }
    }

    /// The `Authorization` value for the secret `content` of [`Credentials::file`].
    pub fn header(&self, content: &str) -> Result<HeaderValue, String> {
        let secret = content.trim_end_matches(['\r', '\n']);
        if secret.is_empty() {
            return Err("a file holding a non-empty secret".into());
        }
        let text = match self {
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

    /// Reads the file and builds the header: the start-up check, and each reload.
    pub fn load(&self) -> Result<HeaderValue, String> {
        let content =
            std::fs::read_to_string(self.file()).map_err(|e| format!("a readable file ({e})"))?;
        self.header(&content)
    }
}

/// What identifies one version of a file: a Secret rotation (or an edit) changes at least one
/// of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of the file at `path` (following symlinks), if it can be read.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

struct Loaded {
    stamp: Option<FileStamp>,
    header: HeaderValue,
}

/// The current `Authorization` header for the exporter, kept fresh from its file.
pub struct AuthHeader {
    auth: Credentials,
    current: ArcSwap<Loaded>,
    epoch: Instant,
    /// Milliseconds after `epoch` when the file is next checked.
    next_check_ms: AtomicU64,
    checking: AtomicBool,
    /// Whether the last reload failed, so a broken file is logged once, not every second.
    failing: AtomicBool,
}

impl AuthHeader {
    /// Reads `credentials`' file now; `what` names them in the error ("credentials",
    /// "client credentials").
    pub fn load(credentials: &Credentials, what: &str) -> pingora_error::Result<Self> {
        let header = credentials.load().map_err(|expected| {
            pingora_error::Error::explain(
                pingora_error::ErrorType::FileReadError,
                format!(
                    "{what} file {}: expected {expected}",
                    credentials.file().display()
                ),
            )
        })?;
        Ok(AuthHeader::new(credentials.clone(), header))
    }

    /// Starts from a header already loaded (and so checked) at start-up.
    pub fn new(auth: Credentials, header: HeaderValue) -> Self {
        AuthHeader {
            current: ArcSwap::from_pointee(Loaded {
                stamp: stamp(auth.file()),
                header,
            }),
            auth,
            epoch: Instant::now(),
            next_check_ms: AtomicU64::new(0),
            checking: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
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
        let new_stamp = stamp(self.auth.file());
        if new_stamp.is_some() && new_stamp == self.current.load().stamp {
            return;
        }
        let file = self.auth.file().display();
        match self.auth.load() {
            Ok(header) => {
                self.current.store(Arc::new(Loaded {
                    stamp: new_stamp,
                    header,
                }));
                self.failing.store(false, Ordering::Relaxed);
                info!("reloaded the exporter credentials from {file}");
            }
            Err(expected) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!("cannot reload the exporter credentials from {file}: expected {expected}; still using the previous ones");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let bearer = Credentials::Bearer {
            token_file: "t".into(),
        };
        assert_eq!(bearer.header("abc.def\n").unwrap(), "Bearer abc.def");
        assert!(bearer.header("\n").is_err());
        assert!(bearer.header("two words").is_err());
        let basic = Credentials::Basic {
            username: "prom".into(),
            password_file: "p".into(),
        };
        assert_eq!(basic.header("secret\n").unwrap(), "Basic cHJvbTpzZWNyZXQ=");
        assert!(basic.header("secret").unwrap().is_sensitive());
    }

    #[test]
    fn reloads_a_changed_file_and_keeps_the_last_good_one() {
        let dir = std::env::temp_dir().join(format!("tunnel-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "one").unwrap();
        let auth = Credentials::Bearer {
            token_file: file.clone(),
        };
        let header = AuthHeader::new(auth.clone(), auth.load().unwrap());
        let t0 = Instant::now();
        assert_eq!(header.value(t0), "Bearer one");

        std::fs::write(&file, "second-token").unwrap();
        // Within the interval the old value stays; after it, the new file is read.
        assert_eq!(header.value(t0), "Bearer one");
        assert_eq!(
            header.value(t0 + RECHECK_INTERVAL * 2),
            "Bearer second-token"
        );

        std::fs::write(&file, "").unwrap();
        assert_eq!(
            header.value(t0 + RECHECK_INTERVAL * 4),
            "Bearer second-token"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
