//! TLS to the database: rustls (on ring, the process's provider) verifying the server's
//! certificate chain and name against the system's roots plus an operator's CA file.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresOptions;
use crate::store::{StoreError, StoreResult};

/// The connector for `sslmode=require`.
pub(super) fn connector(options: &PostgresOptions) -> StoreResult<MakeRustlsConnect> {
    let mut roots = RootCertStore::empty();
    // The system's roots; a store that cannot be read leaves only the CA file to trust.
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be read");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &options.ca_file {
        let unreadable = |e: &dyn std::fmt::Display| {
            StoreError::InvalidInput(format!("CA file {}: {e}", path.display()))
        };
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| unreadable(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| unreadable(&e))?;
        if certificates.is_empty() {
            return Err(unreadable(&"no PEM certificate in it"));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| unreadable(&e))?;
        }
    }
    if roots.is_empty() {
        return Err(StoreError::InvalidInput(
            "sslmode=require: no certificate to verify the server with (no system roots could \
             be read and no CA file is configured)"
                .to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::InvalidInput(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
