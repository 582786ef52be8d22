//! Checking the merged values and building the typed configuration from them. Pure: nothing
//! here reads a file or the network; the files settings name are listed for
//! `crate::material` to read.
//!
//! Every refused value is recorded and checking goes on, so one run reports every problem.
//! A value that depends on a refused one (the proxy port a self-forwarding check compares
//! with) is not checked against a stand-in default: that would report problems the user does
//! not have.

mod agent;
mod exporter;
mod poll;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU16;
use std::path::Path;

use super::error::{self, ConfigError, Origin, RawValue};
use super::model::*;
use super::parse;
use super::setting::Setting;
use super::targets::{self, TargetSpec};
use super::EnvSource;

/// The settings that together name an exporter's credentials.
const CREDENTIAL_SETTINGS: [Setting; 3] = [
    Setting::BearerTokenFile,
    Setting::BasicAuthUsername,
    Setting::BasicAuthPasswordFile,
];

/// The value of each setting that is set, after the layers are merged.
pub(super) type Chosen = HashMap<Setting, RawValue>;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Every problem found, in the order of the settings.
    pub errors: Vec<ConfigError>,
    /// The files the settings name, so that the material layer can check them too and every
    /// problem is reported in one go.
    pub files: Vec<NamedFile>,
}

/// A value was refused and its error recorded; what it would have gone into is not built.
/// Only [`Validator::record`] makes one, so a `Recorded` always has its error in the list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Recorded(());

/// A checked value, or the mark that its refusal is recorded.
pub(super) type Checked<T> = Result<T, Recorded>;

/// The values one exporter, or the listeners, are checked with: a target's own values over the
/// top-level ones.
pub(super) struct Scope<'a> {
    top: &'a Chosen,
    own: Chosen,
    /// A target that names any credential setting replaces the whole set: a top-level token
    /// file must not pair with the target's user name.
    own_credentials: bool,
}

impl<'a> Scope<'a> {
    /// The top-level values alone.
    fn top(top: &'a Chosen) -> Self {
        Scope {
            top,
            own: Chosen::new(),
            own_credentials: false,
        }
    }

    /// A target's `overrides` over the top-level values.
    fn target(top: &'a Chosen, overrides: Vec<RawValue>) -> Self {
        let own_credentials = overrides
            .iter()
            .any(|v| CREDENTIAL_SETTINGS.contains(&v.setting));
        let own = overrides.into_iter().map(|v| (v.setting, v)).collect();
        Scope {
            top,
            own,
            own_credentials,
        }
    }

    /// The value of `setting` in this scope, if set.
    pub(super) fn raw(&self, setting: Setting) -> Option<&RawValue> {
        if let Some(own) = self.own.get(&setting) {
            return Some(own);
        }
        if self.own_credentials && CREDENTIAL_SETTINGS.contains(&setting) {
            return None;
        }
        self.top.get(&setting)
    }

    /// Whether `setting` is set in this scope.
    pub(super) fn is_set(&self, setting: Setting) -> bool {
        self.raw(setting).is_some()
    }
}

/// Collects the errors and the named files while values are checked.
#[derive(Default)]
pub(super) struct Validator {
    errors: Vec<ConfigError>,
    files: Vec<NamedFile>,
}

impl Validator {
    /// Records `error`.
    pub(super) fn record(&mut self, error: ConfigError) -> Recorded {
        self.errors.push(error);
        Recorded(())
    }

    /// Lists `file` for the material layer.
    pub(super) fn named(&mut self, file: NamedFile) {
        self.files.push(file);
    }

    /// `Ok(None)` when `setting` is unset, `Ok(Some(value))` when it parses, and the recorded
    /// refusal when it does not.
    pub(super) fn get<T>(
        &mut self,
        scope: &Scope<'_>,
        setting: Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Checked<Option<T>> {
        let Some(raw) = scope.raw(setting) else {
            return Ok(None);
        };
        parse(&raw.text)
            .map(Some)
            .map_err(|expected| self.record(ConfigError::value(raw, expected)))
    }

    /// Refuses `setting`'s value, if it is set, for a reason involving other settings.
    pub(super) fn refuse(&mut self, scope: &Scope<'_>, setting: Setting, expected: &str) {
        if let Some(raw) = scope.raw(setting) {
            self.record(ConfigError::value(raw, expected));
        }
    }

    /// Checks every setting in `chosen` and builds the configuration, or says every reason
    /// why not.
    pub(super) fn finish(
        mut self,
        role: Role,
        chosen: &Chosen,
        env: &impl EnvSource,
        specs: &[TargetSpec],
        conf_file: Option<&Path>,
    ) -> Result<TunnelConfig, Refused> {
        let top = Scope::top(chosen);
        let address = self
            .get(&top, Setting::ListenAddress, parse::listen_address)
            .map(|a| a.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        let proxy_port = self
            .get(&top, Setting::ListenPort, parse::port)
            .map(|p| p.unwrap_or(default_port(DEFAULT_LISTEN_PORT)));
        let metrics_port = self
            .get(&top, Setting::MetricsPort, parse::port)
            .map(|p| p.unwrap_or(default_port(DEFAULT_METRICS_PORT)));
        let debug = self
            .get(&top, Setting::Debug, parse::boolean)
            .map(|d| d.unwrap_or(false));
        let metrics_port = match (proxy_port, metrics_port) {
            (Ok(proxy), Ok(metrics)) if proxy == metrics => Err(self.record(ConfigError::value(
                &raw_or_default(&top, Setting::MetricsPort, metrics),
                format!("a port other than LISTEN_PORT ({proxy}): the proxy and metrics listeners cannot share a port"),
            ))),
            (_, metrics) => metrics,
        };
        let allowed = self.get(&top, Setting::ClientAllowedCidrs, parse::cidr_list);
        let client_credentials = self.credentials(
            &top,
            [
                Setting::ClientBearerTokenFile,
                Setting::ClientBasicAuthUsername,
                Setting::ClientBasicAuthPasswordFile,
            ],
        );
        let listener_tls = self.listener_tls(&top);
        let header_read_timeout = self
            .get(&top, Setting::HeaderReadTimeout, parse::timeout)
            .map(|t| t.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT));
        let idle_timeout = self
            .get(&top, Setting::IdleTimeout, parse::timeout)
            .map(|t| t.unwrap_or(DEFAULT_IDLE_TIMEOUT));
        let max_connections = self.get(&top, Setting::MaxConnections, parse::connection_limit);
        let poll = self.poll(&top, proxy_port, metrics_port);
        let poll_port = poll
            .as_ref()
            .map(|p| p.as_ref().map(|p| p.port))
            .map_err(|e| *e);
        let agent_port = self.agent_port(
            &top,
            role,
            env,
            &[
                ("LISTEN_PORT", proxy_port.map(Some)),
                ("METRICS_PORT", metrics_port.map(Some)),
                ("POLL_PORT", poll_port),
            ],
        );
        let agent_role = self.agent_role(&top, role);
        // Names register themselves (clients that poll, agents): no exporter need be configured.
        let reverse = matches!(poll, Ok(Some(_)))
            || top.is_set(Setting::PollPort)
            || (role == Role::Tunnel && top.is_set(Setting::AgentPort));

        let targets = self.targets(chosen, env, specs, conf_file, proxy_port.ok(), reverse);
        let default_target = self.default_target(&top, &targets);
        let target_param = if specs.is_empty()
            && !(role == Role::Tunnel && top.is_set(Setting::AgentPort))
        {
            self.refuse(
                &top,
                Setting::TargetParam,
                "tunnel.targets with it: a single exporter gets every request with its query untouched",
            );
            Ok(DEFAULT_TARGET_PARAM.to_string())
        } else {
            self.get(&top, Setting::TargetParam, parse::query_param)
                .map(|p| p.unwrap_or_else(|| DEFAULT_TARGET_PARAM.to_string()))
        };

        let build = || -> Checked<TunnelConfig> {
            Ok(TunnelConfig {
                targets,
                default_target: default_target?,
                multi_target: !specs.is_empty(),
                target_param: target_param?,
                in_force: super::in_force::in_force(chosen),
                listen: ListenConfig {
                    address: address?,
                    proxy_port: proxy_port?,
                    metrics_port: metrics_port?,
                    tls: listener_tls?,
                    limits: ClientLimits {
                        header_read_timeout: header_read_timeout?,
                        idle_timeout: idle_timeout?,
                        max_connections: max_connections?,
                    },
                },
                access: AccessConfig {
                    allowed: allowed?,
                    credentials: client_credentials?,
                },
                poll: poll?,
                agent_port: agent_port?,
                agent_role: agent_role?,
                debug: debug?,
            })
        };
        match build() {
            Ok(config) if self.errors.is_empty() => Ok(config),
            _ => {
                // A top-level value that many targets inherit is refused once, not per target.
                let mut seen = HashSet::new();
                let mut errors = self.errors;
                errors.retain(|e| seen.insert(e.clone()));
                Err(Refused {
                    errors,
                    files: self.files,
                })
            }
        }
    }

    /// The exporters: the one of `SERVER_IP` (named [`DEFAULT_TARGET_NAME`]) and each of
    /// `tunnel.targets`, whose fields override the top-level settings one by one. A target
    /// that is refused is left out (its errors recorded). In `reverse` mode there may be none.
    fn targets(
        &mut self,
        chosen: &Chosen,
        env: &impl EnvSource,
        specs: &[TargetSpec],
        conf_file: Option<&Path>,
        proxy_port: Option<NonZeroU16>,
        reverse: bool,
    ) -> Vec<TargetConfig> {
        let mut targets = Vec::with_capacity(specs.len() + 1);
        let top = Scope::top(chosen);
        if top.is_set(Setting::ServerIp) {
            if let Ok(exporter) = self.exporter(&top, env, proxy_port) {
                targets.push(TargetConfig {
                    name: DEFAULT_TARGET_NAME.to_string(),
                    exporter,
                    labels: BTreeMap::new(),
                });
            }
        } else if specs.is_empty() && !reverse {
            self.record(ConfigError::other(
                "SERVER_IP is not set",
                "the exporter's host in SERVER_IP, --server-ip or tunnel.server_ip, a list of exporters in tunnel.targets, or (on a tunnel) POLL_PORT for clients that poll or AGENT_PORT for agents",
            ));
        }
        let file = conf_file.unwrap_or(Path::new("the conf file"));
        let mut names: HashSet<&str> = HashSet::with_capacity(specs.len() + 1);
        if top.is_set(Setting::ServerIp) {
            names.insert(DEFAULT_TARGET_NAME);
        }
        for spec in specs {
            let subject = format!("targets[{}] in {}", spec.name, file.display());
            if !targets::valid_name(&spec.name) {
                self.record(ConfigError::other(
                    format!("target name {} in {}", error::shown(&spec.name), file.display()),
                    format!("a name of 1-{} letters, digits, '.', '_', '-' or '~' (it goes in ?target=)", targets::MAX_NAME_LEN),
                ));
                continue;
            }
            if !names.insert(&spec.name) {
                self.record(ConfigError::other(
                    subject,
                    if spec.name == DEFAULT_TARGET_NAME {
                        "another name: \"default\" is the SERVER_IP exporter's"
                    } else {
                        "a name no other target has"
                    },
                ));
                continue;
            }
            if let Some(bad) = spec.labels.keys().find(|k| !targets::valid_label_name(k)) {
                self.record(ConfigError::other(
                    format!("label {} of {subject}", error::shown(bad)),
                    "label names of letters, digits and '_', not starting with a digit or \"__\"",
                ));
                continue;
            }
            let overrides = match spec.overrides(file) {
                Ok(overrides) => overrides,
                Err(e) => {
                    self.record(e);
                    continue;
                }
            };
            let scope = Scope::target(chosen, overrides);
            if let Ok(exporter) = self.exporter(&scope, env, proxy_port) {
                targets.push(TargetConfig {
                    name: spec.name.clone(),
                    exporter,
                    labels: spec.labels.clone(),
                });
            }
        }
        targets
    }

    /// `DEFAULT_TARGET`, or the `SERVER_IP` exporter, or the only target.
    fn default_target(
        &mut self,
        top: &Scope<'_>,
        targets: &[TargetConfig],
    ) -> Checked<Option<String>> {
        if let Some(raw) = top.raw(Setting::DefaultTarget) {
            if targets.iter().any(|t| t.name == raw.text) {
                return Ok(Some(raw.text.clone()));
            }
            let names: Vec<&str> = targets.iter().take(10).map(|t| t.name.as_str()).collect();
            return Err(self.record(ConfigError::value(
                raw,
                format!(
                    "the name of a target ({}{})",
                    names.join(", "),
                    if targets.len() > 10 { ", ..." } else { "" }
                ),
            )));
        }
        Ok(match targets {
            [only] => Some(only.name.clone()),
            _ => targets
                .iter()
                .find(|t| t.name == DEFAULT_TARGET_NAME && top.is_set(Setting::ServerIp))
                .map(|t| t.name.clone()),
        })
    }
}

/// A default port as the type ports have; the constants are never zero.
fn default_port(port: u16) -> NonZeroU16 {
    NonZeroU16::new(port).unwrap_or(NonZeroU16::MIN)
}

/// The raw value of `setting` for a message, or its default spelled as text.
fn raw_or_default(scope: &Scope<'_>, setting: Setting, value: impl ToString) -> RawValue {
    scope.raw(setting).cloned().unwrap_or(RawValue {
        setting,
        origin: Origin::Default,
        text: value.to_string(),
    })
}
