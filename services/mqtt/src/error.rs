//! Errors of the MQTT transport: what ends a connection, in the transport's terms.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed or closed.
    #[error("connection i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol (for example a second CONNECT).
    #[error("protocol violation: {reason}")]
    Protocol { reason: &'static str },
    /// A CONNECT with a protocol level other than 4 (3.1.1) or 5.
    #[error("unsupported MQTT protocol level {level}")]
    UnsupportedVersion { level: u8 },
    /// A packet that rumqttc's reader refused.
    #[error("malformed packet: {reason}")]
    Decode { reason: String },
    /// A packet larger than the configured limit.
    #[error("packet of {size} bytes exceeds the limit")]
    PacketTooLarge { size: usize },
    /// A packet that could not be written.
    #[error("cannot encode packet: {reason}")]
    Encode { reason: String },
    /// Binding the listener failed.
    #[error("binding MQTT on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
}
