//! TLS server configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::TurnError;

/// Builds a TLS acceptor from a PEM certificate chain and a PEM private key, using the `ring`
/// provider with its default protocol versions (TLS 1.2 and 1.3).
pub(crate) fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TurnError> {
    let tls_error = |what: &'static str, path: &Path, reason: String| TurnError::Tls {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| tls_error("certificate", cert_path, error.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(
            "certificate",
            cert_path,
            "no certificate in the file".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|error| tls_error("private key", key_path, error.to_string()))?;
    // rustls 0.23.48 deprecates the ring provider because it has no post-quantum key exchange.
    // The workspace builds rustls with ring only, and aws-lc-rs would add a C toolchain build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error("certificate", cert_path, error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| tls_error("certificate", cert_path, error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
