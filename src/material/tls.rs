//! TLS material: for the exporter, the CA bundle and the client certificate and key; for the
//! proxy port, its certificate and key and the CAs of client certificates. Loaded and checked at
//! start-up so that a bad file is a refusal to start, never a panic or a silent downgrade.

use std::path::Path;
use std::sync::Arc;

use pingora_core::protocols::tls::CaType;
use pingora_core::utils::tls::{parse_x509, CertKey, WrappedX509};
use pingora_rustls::{
    CertificateDer, ClientCertVerifier, ClientConfig, PrivateKeyDer, RootCertStore, ServerConfig,
    WebPkiClientVerifier,
};
use rustls_pemfile::Item;

/// The certificates of TLS to the exporter, loaded: what its certificate is checked against
/// and what the tunnel presents.
#[derive(Clone, Default)]
pub struct ExporterCerts {
    /// CAs from `TLS_CA_FILE`; the system roots when `None`.
    pub ca: Option<Arc<CaType>>,
    /// Client certificate and key for mutual TLS.
    pub client: Option<Arc<CertKey>>,
}

impl std::fmt::Debug for ExporterCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterCerts")
            .field("ca_certificates", &self.ca.as_ref().map(|ca| ca.len()))
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// Reads the PEM items of `path`.
fn pem_items(path: &Path) -> Result<Vec<Item>, String> {
    let data = std::fs::read(path).map_err(|e| format!("a readable PEM file ({e})"))?;
    rustls_pemfile::read_all(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a PEM file ({e})"))
}

/// DER certificates of `items`, each checked to parse as X.509.
fn certificates(items: &[Item]) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = items
        .iter()
        .filter_map(|item| match item {
            Item::X509Certificate(der) => Some(der.to_vec()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err("a PEM file with at least one CERTIFICATE block".into());
    }
    for (i, der) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            format!(
                "valid X.509 certificates (certificate {} does not parse: {e})",
                i + 1
            )
        })?;
    }
    Ok(certs)
}

/// A refused certificate or key file: whether it is the key file, and what was expected.
pub type PairError = (bool, String);

/// DER certificates (leaf first) and the DER private key that goes with them.
type DerPair = (Vec<Vec<u8>>, Vec<u8>);

/// The DER certificates of `cert` and the DER private key (PKCS#8, PKCS#1 or SEC1) of `key`.
fn pem_pair(cert: &Path, key: &Path) -> Result<DerPair, PairError> {
    let certs = pem_items(cert)
        .and_then(|items| certificates(&items))
        .map_err(|e| (false, e))?;
    let key_der = pem_items(key)
        .map_err(|e| (true, e))?
        .into_iter()
        .find_map(|item| match item {
            Item::Pkcs8Key(k) => Some(k.secret_pkcs8_der().to_vec()),
            Item::Pkcs1Key(k) => Some(k.secret_pkcs1_der().to_vec()),
            Item::Sec1Key(k) => Some(k.secret_sec1_der().to_vec()),
            _ => None,
        })
        .ok_or((
            true,
            "a PEM file with a PRIVATE KEY block (PKCS#8, RSA or EC)".to_string(),
        ))?;
    Ok((certs, key_der))
}

/// `TLS_CA_FILE`: every certificate of a PEM bundle.
pub fn load_ca(path: &Path) -> Result<Arc<CaType>, String> {
    let certs = certificates(&pem_items(path)?)?;
    let wrapped: Vec<WrappedX509> = certs
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    Ok(wrapped.into())
}

/// `TLS_CERT_FILE` (leaf first, then intermediates) and `TLS_KEY_FILE` (PKCS#8, PKCS#1 or SEC1).
/// Errors say which file is at fault: `Err((is_key_file, expected))`.
pub fn load_client(cert: &Path, key: &Path) -> Result<Arc<CertKey>, PairError> {
    let (certs, key_der) = pem_pair(cert, key)?;
    // Pingora converts the key like this on every handshake and panics if it fails.
    let private_key = PrivateKeyDer::try_from(key_der.clone())
        .map_err(|e| (true, format!("a private key rustls can use ({e})")))?;
    // The same check rustls makes when the first handshake builds its client config.
    pingora_rustls::install_default_crypto_provider();
    let chain = certs
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(chain, private_key)
        .map_err(|e| {
            (
                true,
                format!("the private key of an X.509 v3 certificate in the certificate file named with it ({e})"),
            )
        })?;
    Ok(Arc::new(CertKey::new(certs, key_der)))
}

/// TLS on the proxy port: the server certificate and key (files Pingora loads itself once
/// they are checked here) and, for client-certificate verification, the verifier of
/// `LISTEN_TLS_CLIENT_CA_FILE`.
#[derive(Clone)]
pub struct ListenerTls {
    /// `LISTEN_TLS_CERT_FILE`.
    pub cert_file: String,
    /// `LISTEN_TLS_KEY_FILE`.
    pub key_file: String,
    /// Requires a client certificate signed by these CAs, when set.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("cert_file", &self.cert_file)
            .field("verifies_clients", &self.client_verifier.is_some())
            .finish()
    }
}

/// Checks the listener's certificate and key the way Pingora will load them (it panics on a bad
/// pair). Errors say which file is at fault: `Err((is_key_file, expected))`.
pub fn check_listener_pair(cert: &Path, key: &Path) -> Result<(), PairError> {
    let (certs, key_der) = pem_pair(cert, key)?;
    let key_der = PrivateKeyDer::try_from(key_der)
        .map_err(|e| (true, format!("a private key rustls can use ({e})")))?;
    pingora_rustls::install_default_crypto_provider();
    let chain = certs.into_iter().map(CertificateDer::from).collect();
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            (
                true,
                format!("the private key of the certificate in LISTEN_TLS_CERT_FILE ({e})"),
            )
        })?;
    Ok(())
}

/// A verifier that requires client certificates signed by the CAs of `path`.
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for der in certificates(&pem_items(path)?)? {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| format!("CA certificates usable as trust anchors ({e})"))?;
    }
    pingora_rustls::install_default_crypto_provider();
    WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("CA certificates that can verify clients ({e})"))
}
