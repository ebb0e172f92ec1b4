//! The TLS listeners' server configuration (MQTT over TLS, the PostgreSQL wire protocol): a PEM
//! certificate chain and private key, with rustls' ring provider (the crypto provider already in
//! the tree; no aws-lc).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{BoxError, Error, Result};

/// A TLS server configuration for a listener, shared by its connections.
#[derive(Clone)]
pub struct TlsConfig(Arc<ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (the server's certificate first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3; no client certificates.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        let fail = |what: &Path, source: BoxError| Error::Tls { what: what.display().to_string(), source };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| fail(cert, e.into()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(cert, e.into()))?;
        if certs.is_empty() {
            return Err(fail(cert, "no certificate in the file".into()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| fail(key, e.into()))?;
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(cert, e.into()))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| fail(key, format!("does not fit the certificate: {e}").into()))?;
        Ok(Self(Arc::new(config)))
    }

    /// The rustls configuration, for a `TlsAcceptor`.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.0.clone()
    }
}
