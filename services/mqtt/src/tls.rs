//! The optional TLS listener's server configuration: the platform's ([`thinglake_infra::tls`]),
//! shared with the PostgreSQL wire listener.

pub use thinglake_infra::tls::TlsConfig;
