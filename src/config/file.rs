//! The YAML conf file: Pingora's own server keys at the top level, the tunnel's in `tunnel:`.
//!
//! Pingora reads its `ServerConf` leniently (unknown keys are ignored), so a typo such as
//! `treads: 4` would silently do nothing. The tunnel reads the same file once, refuses keys that
//! neither Pingora nor the tunnel knows, and hands Pingora the parsed `ServerConf`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use pingora_core::server::configuration::ServerConf;
use serde::de::{DeserializeSeed, IgnoredAny};
use serde::Deserialize;

use super::error::{ConfigError, Origin, RawValue};
use super::setting::Setting;
use super::targets::TargetSpec;

/// The document as the `tunnel:` pass reads it: every other top-level key is skipped.
#[derive(Debug, Default, Deserialize)]
struct TunnelDoc {
    #[serde(default)]
    tunnel: Option<TunnelSection>,
}

/// The `tunnel:` section: `targets` as typed entries, every other key kept as the text the
/// user wrote until `config::load` parses it, so a bad value is reported in the same words
/// whichever layer it came from.
#[derive(Debug, Default)]
struct TunnelSection {
    targets: Vec<TargetSpec>,
    settings: BTreeMap<String, Scalar>,
}

impl<'de> Deserialize<'de> for TunnelSection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor;
        impl<'de> serde::de::Visitor<'de> for SectionVisitor {
            type Value = TunnelSection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of tunnel settings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<TunnelSection, E> {
                Ok(TunnelSection::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TunnelSection, A::Error> {
                let mut section = TunnelSection::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "targets" {
                        section.targets = map
                            .next_value::<Option<Vec<TargetSpec>>>()?
                            .unwrap_or_default();
                    } else {
                        let value = map.next_value::<Scalar>()?;
                        section.settings.insert(key, value);
                    }
                }
                Ok(section)
            }
        }
        deserializer.deserialize_any(SectionVisitor)
    }
}

/// A YAML value kept as the text the user wrote; `None` for a list, a mapping or nothing, which
/// no setting takes (skipped without being built).
#[derive(Debug)]
struct Scalar(Option<String>);

impl Scalar {
    fn into_text(self) -> Option<String> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a single value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
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
    /// The Pingora keys the file sets, so the tunnel's own defaults apply only to the others.
    pub pingora_keys_set: BTreeSet<String>,
}

/// The largest conf file read: a fleet of 10,000 targets takes about 1 MiB.
pub const MAX_CONF_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The most text a conf file may stand for once YAML aliases are expanded (scalars, plus 16
/// bytes per node). Aliases let a small file stand for a huge document (1,000 labels reused by
/// each of 10,000 targets: 323 KB of YAML, 1.4 GB once read); this bound is checked before
/// anything is built from the file, so a reload of such a file costs neither memory nor time.
pub const MAX_EXPANDED_BYTES: usize = 32 * 1024 * 1024;

/// Reads and checks the conf file at `path`.
pub fn load(path: &Path) -> Result<ConfFile, ConfigError> {
    let shown = path.display();
    let unreadable = |e: std::io::Error| {
        ConfigError::other(
            format!("conf file {shown:?} ({e})"),
            "a readable YAML file, as given by -c/--conf",
        )
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    // One byte past the limit tells a file at the limit from a larger one.
    file.take(MAX_CONF_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_CONF_FILE_BYTES {
        return Err(ConfigError::other(
            format!(
                "conf file {shown:?} (larger than {} MiB)",
                MAX_CONF_FILE_BYTES >> 20
            ),
            format!(
                "at most {} MiB of YAML (10,000 targets take about 1 MiB)",
                MAX_CONF_FILE_BYTES >> 20
            ),
        ));
    }
    parse(&text, path)
}

/// Parses the text of a conf file; `path` is only used in messages.
///
/// The text is read in passes that each keep only what they need (the top-level key names,
/// Pingora's `ServerConf`, the `tunnel:` section), never a whole YAML tree: a fleet's conf lists
/// thousands of targets, and a tree of it would outweigh the tunnel itself.
pub fn parse(text: &str, path: &Path) -> Result<ConfFile, ConfigError> {
    let shown = path.display();
    let yaml_error = |e: serde_yaml::Error| {
        ConfigError::other(
            format!("conf file {shown:?} ({e})"),
            "valid YAML: a mapping of settings at the top level",
        )
    };
    // First the size of the document as aliases expand it, building nothing: every later pass
    // walks the expanded document too.
    let budget = Cell::new(MAX_EXPANDED_BYTES);
    ExpandedSize { left: &budget }
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| {
            if budget.get() == 0 {
                ConfigError::other(
                    format!(
                        "conf file {shown:?} (more than {} MiB once its YAML aliases are expanded)",
                        MAX_EXPANDED_BYTES >> 20
                    ),
                    "a document that stays below that: fewer or smaller aliased nodes",
                )
            } else {
                yaml_error(e)
            }
        })?;
    let top: Option<BTreeMap<String, IgnoredAny>> =
        serde_yaml::from_str(text).map_err(yaml_error)?;
    let top = top.unwrap_or_default();
    let known = pingora_keys();
    for name in top.keys().filter(|k| k.as_str() != "tunnel") {
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

    let server = if top.is_empty() {
        ServerConf::default()
    } else {
        serde_yaml::from_str::<ServerConf>(text)
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
            })?
    };

    let section = if top.contains_key("tunnel") {
        serde_yaml::from_str::<TunnelDoc>(text)
            .map_err(|e| {
                ConfigError::other(
                    format!("section `tunnel:` of conf file {shown:?} ({e})"),
                    "a mapping of setting names to single values, and `targets:` a list of {name, address, scheme, timeout, proxy or proxy_file, tls, auth, labels}",
                )
            })?
            .tunnel
            .unwrap_or_default()
    } else {
        TunnelSection::default()
    };
    let targets = section.targets;
    let section = section.settings;
    let mut values = Vec::with_capacity(section.len());
    for (key, value) in section {
        let Some(setting) = Setting::from_key(&key) else {
            return Err(ConfigError::other(
                format!("unknown key `{key}` in section `tunnel:` of conf file {shown:?}"),
                format!(
                    "only these keys: {}, targets",
                    Setting::ALL
                        .iter()
                        .map(|s| s.key())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        values.push(RawValue {
            setting,
            origin: Origin::File(path.to_path_buf()),
            text: value.into_text().ok_or_else(|| {
                ConfigError::other(
                    format!("tunnel.{key} in conf file {shown:?}"),
                    "a single value (text, number or true/false), not a list, a mapping or nothing",
                )
            })?,
        });
    }

    Ok(ConfFile {
        server,
        values,
        targets,
        pingora_keys_set: top.into_keys().filter(|k| k != "tunnel").collect(),
    })
}

/// Walks a document, aliases expanded, charging each node 16 bytes and each scalar its length
/// against what is `left`; fails once nothing is.
#[derive(Clone, Copy)]
struct ExpandedSize<'a> {
    left: &'a Cell<usize>,
}

impl ExpandedSize<'_> {
    fn charge<E: serde::de::Error>(self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes + 16) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(E::custom(
                    "the document is too large once its aliases are expanded",
                ))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for ExpandedSize<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ExpandedSize<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.charge(v.len())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.charge(0)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.charge(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.charge(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        let (_, variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
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
