//! The MQTT device transport of Thinglake: ThingsBoard's device and gateway MQTT API over MQTT
//! 3.1.1 and 5, so devices and gateways written for ThingsBoard connect unchanged.
//!
//! It sits at the edge of the write path: [`MqttServer`] accepts connections, each
//! [`session`](crate::session) checks the access token given as the CONNECT user name against
//! the platform's read model, routes every publish by its [`topics`](crate::topics) to a
//! platform use case (telemetry, client attributes, attribute requests, client-side RPC, the
//! [`gateway`](crate::gateway) API), and acknowledges a QoS 1 publish only once JetStream has
//! acknowledged what it stored — so a PUBACK means the point is durable. Packets are read and
//! written with rumqttc's MQTT codec ([`codec`](crate::codec)); refusals map to MQTT 5 reason
//! codes or, under 3.1.1, a closed connection, in one place (`session::refusal`).

mod codec;
mod device_api;
mod rpc;
mod server;
mod session;
mod step;
mod topics;

pub mod config;
pub mod error;
pub mod gateway;
pub mod tls;

pub use codec::Version;
pub use config::MqttConfig;
pub use error::{Error, Result};
pub use server::MqttServer;
pub use tls::TlsConfig;
