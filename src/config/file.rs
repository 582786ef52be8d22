//! The YAML conf file: Pingora's own server keys at the top level, the tunnel's in `tunnel:`.
//!
//! Pingora reads its `ServerConf` leniently (unknown keys are ignored), so a typo such as
//! `treads: 4` would silently do nothing. The tunnel reads the same file once, refuses keys that
//! neither Pingora nor the tunnel knows, and hands Pingora the parsed `ServerConf`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;

use pingora_core::server::configuration::ServerConf;
use serde::Deserialize;

use super::setting::{ConfigError, Origin, RawValue, Setting};
use super::targets::TargetSpec;

/// The `tunnel:` section as written: keys checked against the known settings, values kept as
/// text until `config::load` parses them, so a bad value is reported in the same words whichever
/// layer it came from.
type TunnelSection = BTreeMap<String, Scalar>;

/// A YAML scalar of any type, kept as the text the user wrote.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

/// What one conf file holds: Pingora's server settings and the tunnel's raw values.
#[derive(Debug)]
pub struct ConfFile {
    /// Pingora's `ServerConf` from the top-level keys.
    pub server: ServerConf,
    /// The values of the `tunnel:` section, one per setting present.
    pub values: Vec<RawValue>,
    /// `tunnel.targets`, in file order.
    pub targets: Vec<TargetSpec>,
}

/// Reads and checks the conf file at `path`.
pub fn load(path: &Path) -> Result<ConfFile, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::other(
            format!("conf file {shown:?} ({e})"),
            "a readable YAML file, as given by -c/--conf",
        )
    })?;
    parse(&text, path)
}

/// Parses the text of a conf file; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<ConfFile, ConfigError> {
    let shown = path.display();
    let doc: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::other(format!("conf file {shown:?} ({e})"), "valid YAML"))?;
    let mut top = match doc {
        serde_yaml::Value::Mapping(m) => m,
        // An empty file is an empty conf: all defaults.
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        _ => {
            return Err(ConfigError::other(
                format!("conf file {shown:?}"),
                "a YAML mapping of settings at the top level",
            ))
        }
    };

    let section = top.remove("tunnel");
    let known = pingora_keys();
    for key in top.keys() {
        let name = key.as_str().unwrap_or("<not a string>");
        if !known.contains(name) {
            return Err(ConfigError::other(
                format!("unknown top-level key {name:?} in conf file {shown:?}"),
                format!(
                    "`tunnel:` or one of Pingora's server settings ({})",
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }

    let server = serde_yaml::from_value::<ServerConf>(serde_yaml::Value::Mapping(top))
        .map_err(|e| {
            ConfigError::other(
                format!("Pingora server settings in conf file {shown:?} ({e})"),
                "the types of Pingora's ServerConf",
            )
        })?
        .validate()
        .map_err(|e| {
            ConfigError::other(
                format!("Pingora server settings in conf file {shown:?} ({e})"),
                "valid Pingora settings",
            )
        })?;

    let mut section = section;
    let targets: Vec<TargetSpec> = match section
        .as_mut()
        .and_then(|s| s.as_mapping_mut())
        .and_then(|m| m.remove("targets"))
    {
        None | Some(serde_yaml::Value::Null) => Vec::new(),
        Some(value) => serde_yaml::from_value(value).map_err(|e| {
            ConfigError::other(
                format!("`tunnel.targets` of conf file {shown:?} ({e})"),
                "a list of {name, address, scheme, timeout, proxy, tls, auth, labels}",
            )
        })?,
    };
    let section: TunnelSection = match section {
        None | Some(serde_yaml::Value::Null) => TunnelSection::new(),
        Some(value) => serde_yaml::from_value(value).map_err(|e| {
            ConfigError::other(
                format!("section `tunnel:` of conf file {shown:?} ({e})"),
                "a mapping of setting names to single values",
            )
        })?,
    };
    let mut values = Vec::with_capacity(section.len());
    for (key, value) in section {
        let Some(setting) = Setting::from_key(&key) else {
            return Err(ConfigError::other(
                format!("unknown key `{key}` in section `tunnel:` of conf file {shown:?}"),
                format!(
                    "only these keys: {}, targets",
                    Setting::ALL.map(Setting::key).join(", ")
                ),
            ));
        };
        values.push(RawValue {
            setting,
            origin: Origin::File(path.to_path_buf()),
            text: value.into_text(),
        });
    }

    Ok(ConfFile {
        server,
        values,
        targets,
    })
}

/// The top-level keys Pingora's `ServerConf` understands, read off its own serialisation so the
/// list follows the Pingora version in use.
fn pingora_keys() -> BTreeSet<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => BTreeSet::new(),
    }
}
