//! TLS for the door: the certificate chain and key from PEM files, HTTP/2 and HTTP/1.1 by
//! ALPN, and, with `client_ca`, client certificates required and verified against it. The
//! same loading serves `pitd --check`, which also says when a certificate has expired.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::spec::types::HttpSpec;

/// The rustls configuration of a door with TLS; the error names the file at fault.
pub fn server_config(spec: &HttpSpec) -> Result<Option<Arc<ServerConfig>>, String> {
    let Some(files) = &spec.tls else { return Ok(None) };
    let certs = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("tls_key {}: no usable private key ({e})", files.key.display()))?;
    let provider = Arc::new(provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &spec.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs_of(ca, "client_ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client_ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "tls_key {} does not match tls_cert {} (the key of another certificate?)",
            files.key.display(),
            files.cert.display()
        ),
        e => format!(
            "tls_cert {} and tls_key {}: {e}",
            files.cert.display(),
            files.key.display()
        ),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The crypto of the door: *ring*, which builds with the C compiler alone (the default,
/// aws-lc-rs, needs CMake). Its key exchanges are the classical ones (X25519, P-256,
/// P-384), without a post-quantum hybrid: rustls marks it deprecated for that reason.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// `pitd --check`: the door's files load, the key matches the certificate, and no
/// certificate of the chain (nor of `client_ca`) is expired or not yet valid.
pub fn check(spec: &HttpSpec) -> Result<(), String> {
    let Some(files) = &spec.tls else { return Ok(()) };
    // Loading the configuration already refuses a key of another certificate.
    server_config(spec)?;
    let chain = certs(&files.cert)?;
    for cert in &chain {
        valid_now(cert, "tls_cert", &files.cert)?;
    }
    if let Some(ca) = &spec.client_ca {
        for cert in certs_of(ca, "client_ca")? {
            valid_now(&cert, "client_ca", ca)?;
        }
    }
    Ok(())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certs_of(path, "tls_cert")
}

fn certs_of(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn valid_now(cert: &CertificateDer<'_>, key: &str, path: &Path) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("{key} {}: unreadable certificate ({e})", path.display()))?;
    let validity = parsed.validity();
    if validity.is_valid() {
        return Ok(());
    }
    Err(format!(
        "{key} {}: the certificate for {} is valid from {} to {}, not now",
        path.display(),
        parsed.subject(),
        validity.not_before,
        validity.not_after
    ))
}

/// The common name of a client certificate, naming its holder when no token does.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
