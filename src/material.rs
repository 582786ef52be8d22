//! Loaded material, the crate's second layer: the files that settings name (CA bundles,
//! certificates and keys, secrets) read and checked once the settings are known, so that a bad
//! file is a refusal to start in the words of the setting that named it (exit code 2), never a
//! panic or a failing scrape. `upstream`, `listener` and `access` are built from the
//! configuration and this; nothing here imports them.
//!
//! Each file is read once per load however many targets name it: ten thousand targets with
//! one CA bundle share one copy, and one token file is watched once.

pub mod secret;
pub mod stamp;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pingora_core::protocols::tls::CaType;
use pingora_core::utils::tls::CertKey;

use crate::config::{
    self, cli::Cli, CertificateFiles, ConfigError, Credentials, EnvSource, ExporterConfig,
    ListenerTlsFiles, LoadedConfig, NamedFile, SettingFile, TunnelConfig,
};
use secret::AuthHeader;
use tls::{ExporterCerts, ListenerTls};

/// What one exporter needs loaded.
#[derive(Clone, Default)]
pub struct ExporterMaterial {
    /// Its TLS certificates.
    pub certs: ExporterCerts,
    /// Its credentials' header, kept fresh from their file.
    pub auth: Option<Arc<AuthHeader>>,
}

/// What the proxy port itself needs loaded.
#[derive(Default)]
pub struct PortMaterial {
    /// Its TLS certificate and key, and the verifier of client certificates.
    pub listener_tls: Option<ListenerTls>,
    /// The header clients must send, kept fresh from its file.
    pub client_auth: Option<Arc<AuthHeader>>,
}

/// Everything loaded for one configuration.
pub struct Material {
    /// For each of the configuration's `targets`, in its order.
    pub exporters: Vec<ExporterMaterial>,
    /// For the proxy port.
    pub port: PortMaterial,
    /// TLS on the poll port (reverse mode).
    pub poll_tls: Option<ListenerTls>,
    /// TLS on the agent port (agent mode, tunnel side).
    pub agent_tls: Option<ListenerTls>,
    /// The certificates an agent dials the tunnel with (agent role).
    pub tunnel: Option<ExporterMaterial>,
}

impl Material {
    /// Reads every file `config` names.
    pub fn load(config: &TunnelConfig) -> Result<Material, Vec<ConfigError>> {
        let mut loader = Loader::default();
        let exporters = config
            .targets
            .iter()
            .map(|target| loader.exporter(&target.exporter))
            .collect();
        let listener_tls = config
            .listen
            .tls
            .as_ref()
            .and_then(|tls| loader.listener_tls(tls));
        let client_auth = config
            .access
            .credentials
            .as_ref()
            .and_then(|c| loader.secret(c, CLIENT_CREDENTIALS));
        let poll_tls = config
            .poll
            .as_ref()
            .and_then(|poll| poll.tls.as_ref())
            .and_then(|tls| loader.listener_tls(tls));
        let agent_tls = config
            .agent_port
            .as_ref()
            .and_then(|agent| loader.listener_tls(&agent.tls));
        let tunnel = config
            .agent_role
            .as_ref()
            .map(|role| loader.exporter(&role.tunnel));
        if !loader.errors.is_empty() {
            return Err(loader.errors);
        }
        Ok(Material {
            exporters,
            port: PortMaterial {
                listener_tls,
                client_auth,
            },
            poll_tls,
            agent_tls,
            tunnel,
        })
    }
}

/// Loads the configuration, then the files it names: what `main` starts from and a reload
/// swaps in. When settings are refused, the files they name are still checked, so every
/// problem of both layers is reported in one go.
pub fn load(cli: &Cli, env: &impl EnvSource) -> Result<(LoadedConfig, Material), Vec<ConfigError>> {
    match config::load(cli, env) {
        Ok(loaded) => {
            let material = Material::load(&loaded.tunnel)?;
            Ok((loaded, material))
        }
        Err(refused) => {
            let mut errors = refused.errors;
            errors.extend(check(&refused.files));
            Err(errors)
        }
    }
}

/// The problems of `files`, each read as [`Material::load`] reads it.
pub fn check(files: &[NamedFile]) -> Vec<ConfigError> {
    let mut loader = Loader::default();
    for file in files {
        match file {
            NamedFile::ExporterCa(ca) => {
                loader.ca(ca);
            }
            NamedFile::ExporterClientCert(pair) => {
                loader.client_cert(pair);
            }
            NamedFile::Secret(credentials) => {
                loader.secret(credentials, EXPORTER_CREDENTIALS);
            }
            NamedFile::ListenerTls(tls) => {
                loader.listener_tls(tls);
            }
        }
    }
    loader.errors
}

/// How the exporters' secrets are named in log lines.
const EXPORTER_CREDENTIALS: &str = "exporter credentials";
/// How the clients' secret is named in log lines.
const CLIENT_CREDENTIALS: &str = "client credentials";

/// A secret by its file, user name (for basic auth) and whose it is.
type SecretKey = (PathBuf, Option<String>, &'static str);

/// Reads files, each once, collecting every problem. A file that failed is remembered as
/// `None`, so it is reported once, not once per target naming it.
#[derive(Default)]
struct Loader {
    errors: Vec<ConfigError>,
    cas: HashMap<PathBuf, Option<Arc<CaType>>>,
    client_certs: HashMap<(PathBuf, PathBuf), Option<Arc<CertKey>>>,
    secrets: HashMap<SecretKey, Option<Arc<AuthHeader>>>,
}

impl Loader {
    fn exporter(&mut self, exporter: &ExporterConfig) -> ExporterMaterial {
        let certs = match exporter.tls.as_deref() {
            Some(tls) => ExporterCerts {
                ca: tls.ca_file.as_ref().and_then(|ca| self.ca(ca)),
                client: tls
                    .client_cert
                    .as_ref()
                    .and_then(|pair| self.client_cert(pair)),
            },
            None => ExporterCerts::default(),
        };
        ExporterMaterial {
            certs,
            auth: exporter
                .auth
                .as_ref()
                .and_then(|c| self.secret(c, EXPORTER_CREDENTIALS)),
        }
    }

    fn ca(&mut self, file: &SettingFile) -> Option<Arc<CaType>> {
        if let Some(loaded) = self.cas.get(file.path()) {
            return loaded.clone();
        }
        let loaded = tls::load_ca(file.path())
            .map_err(|expected| self.errors.push(ConfigError::value(&file.source, expected)))
            .ok();
        self.cas.insert(file.path().to_path_buf(), loaded.clone());
        loaded
    }

    fn client_cert(&mut self, pair: &CertificateFiles) -> Option<Arc<CertKey>> {
        let key = (
            pair.cert.path().to_path_buf(),
            pair.key.path().to_path_buf(),
        );
        if let Some(loaded) = self.client_certs.get(&key) {
            return loaded.clone();
        }
        let loaded = tls::load_client(pair.cert.path(), pair.key.path())
            .map_err(|(is_key, expected)| {
                let file = if is_key { &pair.key } else { &pair.cert };
                self.errors.push(ConfigError::value(&file.source, expected));
            })
            .ok();
        self.client_certs.insert(key, loaded.clone());
        loaded
    }

    fn secret(&mut self, credentials: &Credentials, what: &'static str) -> Option<Arc<AuthHeader>> {
        let username = match credentials {
            Credentials::Bearer { .. } => None,
            Credentials::Basic { username, .. } => Some(username.clone()),
        };
        let key = (credentials.file().path().to_path_buf(), username, what);
        if let Some(loaded) = self.secrets.get(&key) {
            return loaded.clone();
        }
        let loaded = match AuthHeader::load(credentials.clone(), what) {
            Ok(header) => Some(Arc::new(header)),
            Err(expected) => {
                self.errors
                    .push(ConfigError::value(&credentials.file().source, expected));
                None
            }
        };
        self.secrets.insert(key, loaded.clone());
        loaded
    }

    fn listener_tls(&mut self, files: &ListenerTlsFiles) -> Option<ListenerTls> {
        let pair = &files.server_cert;
        if let Err((is_key, expected)) = tls::check_listener_pair(pair.cert.path(), pair.key.path())
        {
            let file = if is_key { &pair.key } else { &pair.cert };
            self.errors.push(ConfigError::value(&file.source, expected));
            return None;
        }
        let client_verifier = match &files.client_ca_file {
            Some(ca) => match tls::client_verifier(ca.path()) {
                Ok(verifier) => Some(verifier),
                Err(expected) => {
                    self.errors.push(ConfigError::value(&ca.source, expected));
                    return None;
                }
            },
            None => None,
        };
        Some(ListenerTls {
            cert_file: pair.cert.source.text.clone(),
            key_file: pair.key.source.text.clone(),
            client_verifier,
        })
    }
}
