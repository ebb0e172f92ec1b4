//! Framing of MQTT 3.1.1 and 5 on one socket: the first CONNECT decides the protocol version,
//! then rumqttc's packet types (`mqttbytes::v4`, `v5::mqttbytes::v5`) read and write every
//! packet. The session sees one version-neutral vocabulary ([`Inbound`], [`Outbound`]); the
//! differences between the versions (reason codes, properties) are settled here.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::v5::{ConnAckProperties, DisconnectReasonCode, PubAckReason, SubscribeReasonCode};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{Error, Result};

/// The protocol version a client connected with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// A packet from the client, whatever its version.
#[derive(Debug)]
pub(crate) enum Inbound {
    Connect(ConnectRequest),
    Publish { topic: String, qos: u8, pkid: u16, payload: Bytes },
    /// The client acknowledged one of our QoS 1 publishes (or sent another QoS 2 step).
    Ack,
    Subscribe { pkid: u16, filters: Vec<(String, u8)> },
    Unsubscribe { pkid: u16, count: usize },
    PingReq,
    Disconnect,
}

/// What a CONNECT carries that the transport uses.
#[derive(Debug)]
pub(crate) struct ConnectRequest {
    pub(crate) version: Version,
    pub(crate) client_id: String,
    pub(crate) clean_session: bool,
    pub(crate) keep_alive: u16,
    pub(crate) username: Option<String>,
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectRefusal {
    /// Unknown access token: 3.1.1 return code 5, MQTT 5 reason 0x86.
    BadCredentials,
    /// An empty client id with a persistent session under 3.1.1.
    BadClientId,
}

/// How a publish was received, for its PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckReason {
    Success,
    /// 0x80: stored nothing, for a reason the client cannot fix (the log refused).
    UnspecifiedError,
    /// 0x87: a topic this device may not use (a gateway topic of a plain device).
    NotAuthorized,
    /// 0x90: a topic the platform does not serve.
    TopicNameInvalid,
    /// 0x99: not JSON, or JSON of the wrong shape.
    PayloadFormatInvalid,
    /// 0x97: over the device's or tenant's message rate, or the tenant's entity cap.
    QuotaExceeded,
}

/// Why the server closes a connection (sent as DISCONNECT under MQTT 5; 3.1.1 just closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client sent DISCONNECT or closed its side: nothing is sent back.
    ClientLeft,
    ProtocolError,
    NotAuthorized,
    ServerShuttingDown,
    KeepAliveTimeout,
    TopicNameInvalid,
    PacketTooLarge,
    PayloadFormatInvalid,
    QoSNotSupported,
    UnspecifiedError,
    /// 0x96: a QoS 0 publish over the device's or tenant's message rate.
    MessageRateTooHigh,
    /// 0x97: over a quota (entity cap).
    QuotaExceeded,
}

/// A packet to the client.
#[derive(Debug)]
pub(crate) enum Outbound {
    ConnAck { refusal: Option<ConnectRefusal>, assigned_client_id: Option<String>, max_packet_size: u32, receive_max: u16 },
    PubAck { pkid: u16, reason: AckReason },
    SubAck { pkid: u16, granted: Vec<Option<u8>> },
    UnsubAck { pkid: u16, count: usize },
    PingResp,
    /// A message for the client, sent at QoS 0.
    Publish { topic: String, payload: Bytes },
    Disconnect(CloseReason),
}

/// Both directions of one connection. Before CONNECT the version is unknown; the decoder finds
/// it in the CONNECT's protocol level byte.
#[derive(Debug, Clone)]
pub(crate) struct MqttCodec {
    version: Option<Version>,
    max_packet_size: usize,
}

impl MqttCodec {
    pub(crate) fn new(max_packet_size: usize) -> Self {
        Self { version: None, max_packet_size }
    }

    pub(crate) fn with_version(version: Version, max_packet_size: usize) -> Self {
        Self { version: Some(version), max_packet_size }
    }
}

/// The protocol level of a CONNECT at the start of `src`: `Ok(None)` until enough bytes arrived.
fn connect_level(src: &[u8]) -> Result<Option<u8>> {
    let Some(&first) = src.first() else { return Ok(None) };
    if first >> 4 != 1 {
        return Err(Error::Protocol { reason: "the first packet must be CONNECT" });
    }
    // Remaining length: up to four 7-bit groups.
    let mut pos = 1;
    loop {
        let Some(&byte) = src.get(pos) else { return Ok(None) };
        pos += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if pos > 4 {
            return Err(Error::Protocol { reason: "malformed remaining length" });
        }
    }
    // Protocol name (length-prefixed), then the level byte.
    let (Some(&hi), Some(&lo)) = (src.get(pos), src.get(pos + 1)) else { return Ok(None) };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    Ok(src.get(pos + 2 + name_len).copied())
}

impl Decoder for MqttCodec {
    type Item = Inbound;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>> {
        let version = match self.version {
            Some(v) => v,
            None => match connect_level(src)? {
                None => return Ok(None),
                Some(4) => Version::V311,
                Some(5) => Version::V5,
                Some(level) => return Err(Error::UnsupportedVersion { level }),
            },
        };
        let packet = match version {
            Version::V311 => match v4::Packet::read(src, self.max_packet_size) {
                Ok(p) => from_v4(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(n)) => {
                    src.reserve(n);
                    return Ok(None);
                }
                Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => return Err(Error::PacketTooLarge { size }),
                Err(e) => return Err(Error::Decode { reason: e.to_string() }),
            },
            Version::V5 => match v5::Packet::read(src, Some(self.max_packet_size as u32)) {
                Ok(p) => from_v5(p),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(n)) => {
                    src.reserve(n);
                    return Ok(None);
                }
                Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
                    return Err(Error::PacketTooLarge { size: pkt_size });
                }
                // rumqttc reads a zero-length packet other than PINGREQ as an error; from a
                // client that is MQTT 5's short DISCONNECT (normal disconnection).
                Err(rumqttc::v5::mqttbytes::Error::PayloadRequired) => Inbound::Disconnect,
                Err(e) => return Err(Error::Decode { reason: e.to_string() }),
            },
        };
        if let Inbound::Connect(c) = &packet {
            self.version = Some(c.version);
        }
        Ok(Some(packet))
    }
}

fn from_v4(packet: v4::Packet) -> Inbound {
    match packet {
        v4::Packet::Connect(c) => Inbound::Connect(ConnectRequest {
            version: Version::V311,
            client_id: c.client_id,
            clean_session: c.clean_session,
            keep_alive: c.keep_alive,
            username: c.login.map(|l| l.username).filter(|u| !u.is_empty()),
        }),
        v4::Packet::Publish(p) => Inbound::Publish { topic: p.topic, qos: p.qos as u8, pkid: p.pkid, payload: p.payload },
        v4::Packet::Subscribe(s) => {
            Inbound::Subscribe { pkid: s.pkid, filters: s.filters.into_iter().map(|f| (f.path, f.qos as u8)).collect() }
        }
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe { pkid: u.pkid, count: u.topics.len() },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect,
        v4::Packet::PubAck(_) | v4::Packet::PubRec(_) | v4::Packet::PubRel(_) | v4::Packet::PubComp(_) => Inbound::Ack,
        // Server-to-client packets from a client: ignored like a stray acknowledgement.
        v4::Packet::ConnAck(_) | v4::Packet::SubAck(_) | v4::Packet::UnsubAck(_) | v4::Packet::PingResp => Inbound::Ack,
    }
}

fn from_v5(packet: v5::Packet) -> Inbound {
    match packet {
        v5::Packet::Connect(c, _will, login) => Inbound::Connect(ConnectRequest {
            version: Version::V5,
            client_id: c.client_id,
            clean_session: c.clean_start,
            keep_alive: c.keep_alive,
            username: login.map(|l| l.username).filter(|u| !u.is_empty()),
        }),
        v5::Packet::Publish(p) => Inbound::Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            qos: p.qos as u8,
            pkid: p.pkid,
            payload: p.payload,
        },
        v5::Packet::Subscribe(s) => {
            Inbound::Subscribe { pkid: s.pkid, filters: s.filters.into_iter().map(|f| (f.path, f.qos as u8)).collect() }
        }
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe { pkid: u.pkid, count: u.filters.len() },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(_) => Inbound::Disconnect,
        _ => Inbound::Ack,
    }
}

impl Encoder<Outbound> for MqttCodec {
    type Error = Error;

    fn encode(&mut self, item: Outbound, dst: &mut BytesMut) -> Result<()> {
        match self.version {
            Some(Version::V5) => to_v5(item, dst),
            // Before a CONNECT was understood nothing is sent but a 3.1.1 CONNACK.
            _ => to_v4(item, dst),
        }
    }
}

fn qos_v4(level: u8) -> rumqttc::QoS {
    match level {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos_v5(level: u8) -> rumqttc::v5::mqttbytes::QoS {
    match level {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn to_v4(item: Outbound, dst: &mut BytesMut) -> Result<()> {
    use v4::ConnectReturnCode as Code;
    let packet = match item {
        Outbound::ConnAck { refusal, .. } => v4::Packet::ConnAck(v4::ConnAck::new(
            match refusal {
                None => Code::Success,
                Some(ConnectRefusal::BadCredentials) => Code::NotAuthorized,
                Some(ConnectRefusal::BadClientId) => Code::BadClientId,
            },
            false,
        )),
        // 3.1.1 has no negative PUBACK: a refused publish closes the connection instead (the
        // session decides that), so only successes reach here.
        Outbound::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Outbound::SubAck { pkid, granted } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            granted
                .into_iter()
                .map(|g| match g {
                    Some(level) => v4::SubscribeReasonCode::Success(qos_v4(level)),
                    None => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        Outbound::PingResp => v4::Packet::PingResp,
        Outbound::Publish { topic, payload } => {
            v4::Packet::Publish(v4::Publish::from_bytes(topic, rumqttc::QoS::AtMostOnce, payload))
        }
        // 3.1.1 has no server DISCONNECT: the session closes the socket.
        Outbound::Disconnect(_) => return Ok(()),
    };
    packet.write(dst, usize::MAX).map_err(|e| Error::Encode { reason: e.to_string() })?;
    Ok(())
}

fn to_v5(item: Outbound, dst: &mut BytesMut) -> Result<()> {
    use v5::ConnectReturnCode as Code;
    let packet = match item {
        Outbound::ConnAck { refusal, assigned_client_id, max_packet_size, receive_max } => {
            let code = match refusal {
                None => Code::Success,
                Some(ConnectRefusal::BadCredentials) => Code::BadUserNamePassword,
                Some(ConnectRefusal::BadClientId) => Code::ClientIdentifierNotValid,
            };
            let properties = refusal.is_none().then(|| ConnAckProperties {
                receive_max: Some(receive_max),
                max_qos: Some(1),
                retain_available: Some(0),
                max_packet_size: Some(max_packet_size),
                assigned_client_identifier: assigned_client_id,
                topic_alias_max: Some(0),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                session_expiry_interval: None,
                reason_string: None,
                user_properties: Vec::new(),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            });
            v5::Packet::ConnAck(v5::ConnAck { session_present: false, code, properties })
        }
        Outbound::PubAck { pkid, reason } => v5::Packet::PubAck(v5::PubAck {
            pkid,
            reason: match reason {
                AckReason::Success => PubAckReason::Success,
                AckReason::UnspecifiedError => PubAckReason::UnspecifiedError,
                AckReason::NotAuthorized => PubAckReason::NotAuthorized,
                AckReason::TopicNameInvalid => PubAckReason::TopicNameInvalid,
                AckReason::PayloadFormatInvalid => PubAckReason::PayloadFormatInvalid,
                AckReason::QuotaExceeded => PubAckReason::QuotaExceeded,
            },
            properties: None,
        }),
        Outbound::SubAck { pkid, granted } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: granted
                .into_iter()
                .map(|g| match g {
                    Some(level) => SubscribeReasonCode::Success(qos_v5(level)),
                    None => SubscribeReasonCode::TopicFilterInvalid,
                })
                .collect(),
            properties: None,
        }),
        Outbound::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::Success; count],
            properties: None,
        }),
        Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
        Outbound::Publish { topic, payload } => {
            v5::Packet::Publish(v5::Publish::new(topic, rumqttc::v5::mqttbytes::QoS::AtMostOnce, payload, None))
        }
        Outbound::Disconnect(reason) => v5::Packet::Disconnect(v5::Disconnect::new(match reason {
            CloseReason::ClientLeft => DisconnectReasonCode::NormalDisconnection,
            CloseReason::ProtocolError => DisconnectReasonCode::ProtocolError,
            CloseReason::NotAuthorized => DisconnectReasonCode::NotAuthorized,
            CloseReason::ServerShuttingDown => DisconnectReasonCode::ServerShuttingDown,
            CloseReason::KeepAliveTimeout => DisconnectReasonCode::KeepAliveTimeout,
            CloseReason::TopicNameInvalid => DisconnectReasonCode::TopicNameInvalid,
            CloseReason::PacketTooLarge => DisconnectReasonCode::PacketTooLarge,
            CloseReason::PayloadFormatInvalid => DisconnectReasonCode::PayloadFormatInvalid,
            CloseReason::QoSNotSupported => DisconnectReasonCode::QoSNotSupported,
            CloseReason::UnspecifiedError => DisconnectReasonCode::UnspecifiedError,
            CloseReason::MessageRateTooHigh => DisconnectReasonCode::MessageRateTooHigh,
            CloseReason::QuotaExceeded => DisconnectReasonCode::QuotaExceeded,
        })),
    };
    packet.write(dst, None).map_err(|e| Error::Encode { reason: e.to_string() })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_v4_connect(client_id: &str, user: Option<&str>) -> BytesMut {
        let mut connect = v4::Connect::new(client_id);
        if let Some(u) = user {
            connect.set_login(u, "");
        }
        let mut buf = BytesMut::new();
        v4::Packet::Connect(connect).write(&mut buf, usize::MAX).expect("encodes");
        buf
    }

    #[test]
    fn the_connect_decides_the_version_of_the_whole_connection() {
        let mut codec = MqttCodec::new(1024);
        let mut buf = encode_v4_connect("c1", Some("TOKEN"));
        v4::Packet::PingReq.write(&mut buf, usize::MAX).expect("encodes");
        match codec.decode(&mut buf).expect("decodes") {
            Some(Inbound::Connect(c)) => {
                assert_eq!(c.version, Version::V311);
                assert_eq!(c.username.as_deref(), Some("TOKEN"));
                assert_eq!(c.client_id, "c1");
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
        assert!(matches!(codec.decode(&mut buf).expect("decodes"), Some(Inbound::PingReq)));
    }

    #[test]
    fn a_v5_connect_is_read_with_the_v5_codec() {
        let mut buf = BytesMut::new();
        let connect = v5::Connect { keep_alive: 30, client_id: String::new(), clean_start: true, properties: None };
        v5::Packet::Connect(connect, None, Some(v5::Login::new("TOKEN", "")))
            .write(&mut buf, None)
            .expect("encodes");
        let mut codec = MqttCodec::new(1024);
        match codec.decode(&mut buf).expect("decodes") {
            Some(Inbound::Connect(c)) => {
                assert_eq!(c.version, Version::V5);
                assert_eq!(c.client_id, "");
                assert_eq!(c.username.as_deref(), Some("TOKEN"));
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    #[test]
    fn a_partial_connect_waits_for_more_bytes() {
        let full = encode_v4_connect("client", Some("TOKEN"));
        for cut in 0..full.len() {
            let mut codec = MqttCodec::new(1024);
            let mut part = BytesMut::from(&full[..cut]);
            assert!(codec.decode(&mut part).expect("no error on a prefix").is_none(), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn anything_but_connect_first_is_a_protocol_error() {
        let mut buf = BytesMut::new();
        v4::Packet::PingReq.write(&mut buf, usize::MAX).expect("encodes");
        assert!(MqttCodec::new(1024).decode(&mut buf).is_err());
    }

    #[test]
    fn a_packet_over_the_limit_is_refused() {
        let mut codec = MqttCodec::with_version(Version::V311, 64);
        let mut buf = BytesMut::new();
        v4::Packet::Publish(v4::Publish::new("t", rumqttc::QoS::AtMostOnce, vec![b'x'; 200]))
            .write(&mut buf, usize::MAX)
            .expect("encodes");
        assert!(matches!(codec.decode(&mut buf), Err(Error::PacketTooLarge { .. })));
    }

    #[test]
    fn refusals_carry_each_versions_code() {
        let refusal = || Outbound::ConnAck {
            refusal: Some(ConnectRefusal::BadCredentials),
            assigned_client_id: None,
            max_packet_size: 1,
            receive_max: 1,
        };
        let mut buf = BytesMut::new();
        MqttCodec::with_version(Version::V311, 1024).encode(refusal(), &mut buf).expect("encodes");
        assert_eq!(&buf[..], &[0x20, 2, 0, 5]);
        let mut buf = BytesMut::new();
        MqttCodec::with_version(Version::V5, 1024).encode(refusal(), &mut buf).expect("encodes");
        assert_eq!(buf[3], 0x86, "{buf:?}");
    }
}
