//! The names a client's certificate carries (subject common names and DNS subject alternative
//! names), to which `POLL_BIND_NAMES` binds the names a client may poll and push as.

use pingora_core::protocols::Stream;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The names of the certificate `client` presented, lower-cased; empty without TLS or without
/// a certificate.
pub fn certificate_names(client: &Stream) -> Vec<String> {
    client
        .get_ssl()
        .and_then(|tls| tls.peer_certificate_der())
        .map(names_of)
        .unwrap_or_default()
}

/// The subject CNs and DNS SANs of the DER certificate `der`.
pub fn names_of(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Whether `names` (from [`certificate_names`]) include `name`.
pub fn carries(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The first subject CN of the DER certificate `der`, as written.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
