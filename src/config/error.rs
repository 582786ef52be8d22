//! A value as the user wrote it, where it came from, and how a refused one is reported: one
//! line naming the spelling the user wrote, the value (cut short, a proxy's password hidden) and
//! what is expected.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use super::setting::Setting;

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
    /// A field of one entry of the conf file's `tunnel.targets`. Boxed: a fleet's
    /// configuration holds many values, most of them from other origins.
    Target(Box<TargetField>),
}

/// A field of one entry of `tunnel.targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetField {
    /// The conf file.
    pub file: PathBuf,
    /// The target's name.
    pub target: String,
    /// The field, e.g. `tls.ca_file`.
    pub field: String,
}

/// A raw value for one setting and where it came from, before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
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
            Origin::Target(at) => {
                format!(
                    "targets[{}].{} in {}",
                    at.target,
                    at.field,
                    at.file.display()
                )
            }
        }
    }
}

/// One refused configuration value: what was wrong and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
        let text = if raw.setting.holds_proxy_url() {
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
