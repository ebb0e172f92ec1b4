//! Telemetry and attributes: ThingsBoard's device payloads parsed into typed key-value entries,
//! and the message that carries them on the telemetry stream.
//!
//! Typing follows ThingsBoard's `ts_kv`: JSON booleans are `Bool`, whole numbers that fit an
//! `i64` are `Long`, other numbers `Double`, strings `String`, objects and arrays `Json`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::Actor;
use crate::id::EntityType;

/// Longest key ThingsBoard accepts.
pub const MAX_KEY_LEN: usize = 255;

/// A typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KvValue {
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "l")]
    Long(i64),
    #[serde(rename = "d")]
    Double(f64),
    #[serde(rename = "s")]
    String(String),
    #[serde(rename = "j")]
    Json(Value),
}

impl KvValue {
    /// Types a JSON value as ThingsBoard does.
    pub fn from_json(value: &Value) -> Option<KvValue> {
        match value {
            Value::Null => None,
            Value::Bool(b) => Some(KvValue::Bool(*b)),
            Value::Number(n) => Some(match n.as_i64() {
                Some(l) => KvValue::Long(l),
                None => KvValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            }),
            Value::String(s) => Some(KvValue::String(s.clone())),
            Value::Array(_) | Value::Object(_) => Some(KvValue::Json(value.clone())),
        }
    }

    /// The value as JSON, typed (`useStrictDataTypes=true`, attribute reads, device pushes).
    pub fn to_json(&self) -> Value {
        match self {
            KvValue::Bool(b) => Value::Bool(*b),
            KvValue::Long(l) => Value::from(*l),
            KvValue::Double(d) => serde_json::Number::from_f64(*d).map(Value::Number).unwrap_or(Value::Null),
            KvValue::String(s) => Value::String(s.clone()),
            KvValue::Json(j) => j.clone(),
        }
    }

    /// The value as ThingsBoard's timeseries API renders it without strict types: a string.
    pub fn to_text(&self) -> String {
        match self {
            KvValue::String(s) => s.clone(),
            KvValue::Json(j) => j.to_string(),
            other => other.to_json().to_string(),
        }
    }
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(flatten)]
    pub value: KvValue,
}

/// Values reported for one timestamp (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TsBatch {
    pub ts: i64,
    pub values: Vec<KvEntry>,
}

impl TsBatch {
    pub fn point_count(&self) -> usize {
        self.values.len()
    }
}

/// ThingsBoard's attribute scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttributeScope {
    /// Set by the device.
    ClientScope,
    /// Set by the platform, invisible to the device.
    ServerScope,
    /// Set by the platform, pushed to the device.
    SharedScope,
}

impl std::str::FromStr for AttributeScope {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "CLIENT_SCOPE" | "CLIENT" => Ok(AttributeScope::ClientScope),
            "SERVER_SCOPE" | "SERVER" => Ok(AttributeScope::ServerScope),
            "SHARED_SCOPE" | "SHARED" => Ok(AttributeScope::SharedScope),
            _ => Err(TelemetryError::UnknownScope { scope: s.to_string() }),
        }
    }
}

impl AttributeScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeScope::ClientScope => "CLIENT_SCOPE",
            AttributeScope::ServerScope => "SERVER_SCOPE",
            AttributeScope::SharedScope => "SHARED_SCOPE",
        }
    }
}

/// Why a payload was refused. Nothing of a refused payload is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    #[error("payload must be a JSON object or an array of objects")]
    NotAnObject,
    #[error("'values' must be a JSON object")]
    ValuesNotAnObject,
    #[error("'ts' must be a whole number of milliseconds")]
    BadTimestamp,
    #[error("key must not be empty")]
    EmptyKey,
    #[error("key is longer than {MAX_KEY_LEN} characters")]
    KeyTooLong,
    #[error("unknown attribute scope '{scope}'")]
    UnknownScope { scope: String },
}

fn entries(object: &serde_json::Map<String, Value>) -> Result<Vec<KvEntry>, TelemetryError> {
    let mut out = Vec::with_capacity(object.len());
    for (key, value) in object {
        if key.trim().is_empty() {
            return Err(TelemetryError::EmptyKey);
        }
        if key.chars().count() > MAX_KEY_LEN {
            return Err(TelemetryError::KeyTooLong);
        }
        // ThingsBoard skips null values.
        if let Some(v) = KvValue::from_json(value) {
            out.push(KvEntry { key: key.clone(), value: v });
        }
    }
    Ok(out)
}

fn batch(item: &Value, now: i64) -> Result<TsBatch, TelemetryError> {
    let object = item.as_object().ok_or(TelemetryError::NotAnObject)?;
    match (object.get("ts"), object.get("values")) {
        (Some(ts), Some(values)) if object.len() == 2 => {
            let ts = ts.as_i64().ok_or(TelemetryError::BadTimestamp)?;
            let values = values.as_object().ok_or(TelemetryError::ValuesNotAnObject)?;
            Ok(TsBatch { ts, values: entries(values)? })
        }
        _ => Ok(TsBatch { ts: now, values: entries(object)? }),
    }
}

/// Parses a telemetry payload in any shape ThingsBoard accepts: `{"k": v}`,
/// `{"ts": ms, "values": {...}}`, or an array of either. `now` stamps values without `ts`.
pub fn parse_telemetry(payload: &Value, now: i64) -> Result<Vec<TsBatch>, TelemetryError> {
    match payload {
        Value::Array(items) => items.iter().map(|i| batch(i, now)).collect(),
        Value::Object(_) => Ok(vec![batch(payload, now)?]),
        _ => Err(TelemetryError::NotAnObject),
    }
}

/// Parses an attributes payload: a flat JSON object.
pub fn parse_attributes(payload: &Value) -> Result<Vec<KvEntry>, TelemetryError> {
    entries(payload.as_object().ok_or(TelemetryError::NotAnObject)?)
}

/// What one message on the telemetry stream reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TelemetryData {
    /// Time-series points.
    Timeseries { batches: Vec<TsBatch> },
    /// Attribute values of one scope, as of `ts`.
    Attributes { scope: AttributeScope, ts: i64, values: Vec<KvEntry> },
    /// Attribute keys removed from one scope.
    AttributesDeleted { scope: AttributeScope, keys: Vec<String> },
}

/// One message on the telemetry stream (`<prefix>.tel.<tenant>.<device>`): what a device or a
/// REST call reported at once. The message id is the de-duplication key (`Nats-Msg-Id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryMessage {
    pub message_id: Uuid,
    pub schema_version: u32,
    pub tenant_id: Uuid,
    pub entity_type: EntityType,
    pub entity_id: Uuid,
    /// When the platform received it (ms).
    pub received_at: i64,
    pub actor: Actor,
    #[serde(flatten)]
    pub data: TelemetryData,
}

impl TelemetryMessage {
    pub const SCHEMA_VERSION: u32 = 1;

    /// How many key-value points the message carries.
    pub fn point_count(&self) -> usize {
        match &self.data {
            TelemetryData::Timeseries { batches } => batches.iter().map(TsBatch::point_count).sum(),
            TelemetryData::Attributes { values, .. } => values.len(),
            TelemetryData::AttributesDeleted { keys, .. } => keys.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_typed_like_thingsboards_ts_kv() {
        let batches = parse_telemetry(&json!({"a": true, "b": 42, "c": 21.5, "d": "on", "e": {"x": 1}, "f": [1], "g": null}), 7)
            .expect("valid");
        let values: Vec<(&str, &KvValue)> = batches[0].values.iter().map(|e| (e.key.as_str(), &e.value)).collect();
        assert_eq!(
            values,
            vec![
                ("a", &KvValue::Bool(true)),
                ("b", &KvValue::Long(42)),
                ("c", &KvValue::Double(21.5)),
                ("d", &KvValue::String("on".into())),
                ("e", &KvValue::Json(json!({"x": 1}))),
                ("f", &KvValue::Json(json!([1]))),
            ]
        );
        assert_eq!(batches[0].ts, 7);
    }

    #[test]
    fn every_payload_shape_thingsboard_accepts_parses() {
        let flat = parse_telemetry(&json!({"t": 1}), 5).expect("flat");
        assert_eq!(flat[0].ts, 5);
        let stamped = parse_telemetry(&json!({"ts": 1000, "values": {"t": 1}}), 5).expect("stamped");
        assert_eq!(stamped[0].ts, 1000);
        let array = parse_telemetry(&json!([{"ts": 1, "values": {"t": 1}}, {"t": 2}]), 5).expect("array");
        assert_eq!(array.iter().map(|b| b.ts).collect::<Vec<_>>(), vec![1, 5]);
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert_eq!(parse_telemetry(&json!(5), 0), Err(TelemetryError::NotAnObject));
        assert_eq!(parse_telemetry(&json!([1]), 0), Err(TelemetryError::NotAnObject));
        assert_eq!(parse_telemetry(&json!({"ts": "x", "values": {}}), 0), Err(TelemetryError::BadTimestamp));
        assert_eq!(parse_telemetry(&json!({"ts": 1, "values": 3}), 0), Err(TelemetryError::ValuesNotAnObject));
        assert_eq!(parse_telemetry(&json!({"": 1}), 0), Err(TelemetryError::EmptyKey));
        assert_eq!(parse_attributes(&json!("x")), Err(TelemetryError::NotAnObject));
    }

    #[test]
    fn the_wire_form_is_compact_and_round_trips() {
        let message = TelemetryMessage {
            message_id: Uuid::nil(),
            schema_version: TelemetryMessage::SCHEMA_VERSION,
            tenant_id: Uuid::nil(),
            entity_type: EntityType::Device,
            entity_id: Uuid::nil(),
            received_at: 9,
            actor: Actor::device(Uuid::nil()),
            data: TelemetryData::Timeseries {
                batches: vec![TsBatch { ts: 1, values: vec![KvEntry { key: "t".into(), value: KvValue::Double(1.5) }] }],
            },
        };
        let json = serde_json::to_value(&message).expect("serializes");
        assert_eq!(json["kind"], "timeseries");
        assert_eq!(json["batches"][0]["values"][0], json!({"k": "t", "d": 1.5}));
        let back: TelemetryMessage = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, message);
        assert_eq!(back.point_count(), 1);
    }

    #[test]
    fn text_rendering_matches_thingsboards_strings() {
        assert_eq!(KvValue::Double(21.5).to_text(), "21.5");
        assert_eq!(KvValue::Long(3).to_text(), "3");
        assert_eq!(KvValue::Bool(false).to_text(), "false");
        assert_eq!(KvValue::String("a".into()).to_text(), "a");
    }

    #[test]
    fn scopes_parse_from_their_wire_names() {
        assert_eq!("SHARED_SCOPE".parse::<AttributeScope>().ok(), Some(AttributeScope::SharedScope));
        assert!("ANY".parse::<AttributeScope>().is_err());
    }
}
