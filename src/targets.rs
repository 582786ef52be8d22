//! The target table: every exporter the tunnel forwards to, by name, with what each request
//! needs ready-made (peer template, `Host` header, metric handles). It is replaced whole on a
//! reload; requests hold an `Arc` of their target, so in-flight scrapes finish on the table they
//! started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{ExporterConfig, TunnelConfig};
use crate::material::ExporterMaterial;
use crate::metrics::TargetMetrics;
use crate::upstream::Upstream;

/// One exporter and everything a request to it needs.
pub struct Target {
    /// Its name: `?target=` and the `target` label.
    pub name: Box<str>,
    /// How it is reached.
    pub upstream: Upstream,
    /// `Host` sent to it: its `host:port`.
    pub host_header: HeaderValue,
    /// `UPSTREAM_TIMEOUT` for it: the longest a request may take.
    pub timeout: Duration,
    /// Labels published on `/targets`, sorted by name. A slice, not a map: a fleet of
    /// thousands of targets with a few labels each would spend most of its memory on map nodes.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// Its metric series.
    pub metrics: TargetMetrics,
    /// Where it is, for log lines: `scheme://host:port` and the proxy, if any.
    pub description: String,
}

impl Target {
    /// Builds the target `name` for `exporter`, with its loaded `material`.
    pub fn new(
        name: &str,
        exporter: &ExporterConfig,
        material: ExporterMaterial,
        labels: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let host_header = HeaderValue::from_str(&exporter.authority()).map_err(|e| {
            Error::because(
                ErrorType::InternalError,
                "exporter authority as Host header",
                e,
            )
        })?;
        let via = exporter
            .proxy
            .as_ref()
            .map_or(String::new(), |proxy| format!(" via {proxy}"));
        Ok(Target {
            name: name.into(),
            upstream: Upstream::new(exporter, material)?,
            host_header,
            timeout: exporter.timeout,
            labels: labels
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            metrics: TargetMetrics::new(name),
            description: format!(
                "{}://{}{via}",
                exporter.scheme.as_str(),
                exporter.authority()
            ),
        })
    }
}

/// How a request names its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// One exporter, which gets every request with its query untouched (a blackbox or SNMP
    /// exporter reads `target` itself).
    Single,
    /// Several: this query parameter names the target and is removed before forwarding.
    ByParam(Arc<str>),
}

/// All targets by name, and the one a request without a routing parameter goes to.
pub struct TargetTable {
    by_name: HashMap<Box<str>, Arc<Target>>,
    /// In configuration order, for `/targets`.
    ordered: Vec<Arc<Target>>,
    default: Option<Arc<Target>>,
    routing: Routing,
}

impl TargetTable {
    /// The table of `config`'s targets, with `material` loaded for each, in their order.
    pub fn build(config: &TunnelConfig, material: Vec<ExporterMaterial>) -> Result<Self> {
        if material.len() != config.targets.len() {
            return Err(Error::explain(
                ErrorType::InternalError,
                format!(
                    "material loaded for {} targets, not the {} configured",
                    material.len(),
                    config.targets.len()
                ),
            ));
        }
        let mut by_name = HashMap::with_capacity(config.targets.len());
        let mut ordered = Vec::with_capacity(config.targets.len());
        for (t, material) in config.targets.iter().zip(material) {
            let target = Arc::new(Target::new(&t.name, &t.exporter, material, &t.labels)?);
            by_name.insert(target.name.clone(), Arc::clone(&target));
            ordered.push(target);
        }
        let default = config
            .default_target
            .as_deref()
            .and_then(|name| by_name.get(name).cloned());
        // Agents' names are routed by the parameter too.
        let routing = if config.multi_target || config.agent_port.is_some() {
            Routing::ByParam(Arc::from(config.target_param.as_str()))
        } else {
            Routing::Single
        };
        Ok(TargetTable {
            by_name,
            ordered,
            default,
            routing,
        })
    }

    /// How requests name their target.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The target called `name`, in O(1).
    pub fn get(&self, name: &str) -> Option<&Arc<Target>> {
        self.by_name.get(name)
    }

    /// The target of a request that names none.
    pub fn default_target(&self) -> Option<&Arc<Target>> {
        self.default.as_ref()
    }

    /// Every target, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.ordered.iter()
    }

    /// How many targets there are.
    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    /// Whether there are none (never, for a validated configuration).
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// Names in `self` that `next` no longer has.
    pub fn removed_in<'a>(&'a self, next: &TargetTable) -> Vec<&'a Arc<Target>> {
        self.ordered
            .iter()
            .filter(|t| next.get(&t.name).is_none())
            .collect()
    }
}

/// The current target table, shared by the proxy, the metrics port and the reloader.
pub type SharedTargets = Arc<ArcSwap<TargetTable>>;
