//! Telemetry and attributes: ThingsBoard's device payloads parsed into typed key-value entries,
//! and the message that carries them on the telemetry stream.
//!
//! Typing follows ThingsBoard's `ts_kv`: JSON booleans are `Bool`, whole numbers that fit an
//! `i64` are `Long`, other numbers `Double`, strings `String`, objects and arrays `Json`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::Actor;
use crate::id::{EntityId, EntityType, TenantEntityId, TenantId};

/// Longest key ThingsBoard accepts.
pub const MAX_KEY_LEN: usize = 255;

/// Earliest point timestamp accepted: 0001-01-01T00:00:00Z, in ms since the Unix epoch.
pub const MIN_TS: i64 = -62_135_596_800_000;
/// Latest point timestamp accepted: 9999-12-31T23:59:59.999Z, in ms since the Unix epoch.
///
/// ThingsBoard takes any `long`; the lake partitions points by calendar day, and dates beyond
/// the years 1..=9999 (those of SQL's `DATE` and ISO 8601) cannot be written or read back.
pub const MAX_TS: i64 = 253_402_300_799_999;

/// `ts` when it lies within [`MIN_TS`]..=[`MAX_TS`].
pub fn check_ts(ts: i64) -> Result<i64, TelemetryError> {
    if (MIN_TS..=MAX_TS).contains(&ts) { Ok(ts) } else { Err(TelemetryError::TimestampOutOfRange { ts }) }
}

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

/// One key and its value. On the wire `{"k": key, "<type letter>": value}`; encoded and decoded
/// by hand ([`wire`]) rather than through serde's `flatten` (which buffers on decoding and goes
/// through an adapter per entry on encoding: a stored message holds one entry per point).
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub key: String,
    pub value: KvValue,
}

impl Serialize for KvEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("k", &self.key)?;
        match &self.value {
            KvValue::Bool(b) => map.serialize_entry("b", b)?,
            KvValue::Long(l) => map.serialize_entry("l", l)?,
            KvValue::Double(d) => map.serialize_entry("d", d)?,
            KvValue::String(v) => map.serialize_entry("s", v)?,
            KvValue::Json(j) => map.serialize_entry("j", j)?,
        }
        map.end()
    }
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
    #[error(
        "'ts' {ts} is outside the supported range {MIN_TS}..={MAX_TS} ms (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z)"
    )]
    TimestampOutOfRange { ts: i64 },
    #[error("key must not be empty")]
    EmptyKey,
    #[error("key is longer than {MAX_KEY_LEN} characters")]
    KeyTooLong,
    #[error("unknown attribute scope '{scope}'")]
    UnknownScope { scope: String },
    /// Not JSON at all (the parser's message).
    #[error("{0}")]
    Json(String),
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
            let ts = check_ts(ts.as_i64().ok_or(TelemetryError::BadTimestamp)?)?;
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

/// [`parse_telemetry`] straight from the payload's bytes, with the same result: a JSON object's
/// members are typed as they are read — no map of the payload, no JSON tree of its values.
/// Arrays, and the odd object with a `values` member that is not `{"ts", "values"}`, take the
/// general path.
pub fn parse_telemetry_slice(payload: &[u8], now: i64) -> Result<Vec<TsBatch>, TelemetryError> {
    let json_error = |e: serde_json::Error| TelemetryError::Json(e.to_string());
    match serde_json::from_slice::<Payload>(payload).map_err(json_error)? {
        Payload::Flat(entries) => Ok(vec![TsBatch { ts: now, values: typed_entries(entries)? }]),
        Payload::Stamped { ts, values } => {
            let KvValue::Long(ts) = ts else { return Err(TelemetryError::BadTimestamp) };
            let ts = check_ts(ts)?;
            let ValuesMember::Object(values) = values else { return Err(TelemetryError::ValuesNotAnObject) };
            Ok(vec![TsBatch { ts, values: typed_entries(values)? }])
        }
        Payload::Other(value) => parse_telemetry(&value, now),
        Payload::General => parse_telemetry(&serde_json::from_slice(payload).map_err(json_error)?, now),
    }
}

/// A payload as read by [`parse_telemetry_slice`]. Entries are in the order read, repeated keys
/// included, a JSON `null` held as [`NULL`].
enum Payload {
    /// `{"k": v, …}` without a `values` member.
    Flat(Vec<KvEntry>),
    /// `{"ts": …, "values": …}`.
    Stamped { ts: KvValue, values: ValuesMember },
    /// Not an object.
    Other(Value),
    /// An object with a `values` member beside others, or a repeated one.
    General,
}

/// A `null` read in place of a value: a JSON value is only ever an object or an array, so this
/// marks what [`typed_entries`] leaves out once repeated keys are settled.
const NULL: KvValue = KvValue::Json(Value::Null);

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                let mut values = None;
                let mut general = false;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "values" {
                        general |= values.is_some();
                        values = Some(map.next_value::<ValuesMember>()?);
                    } else {
                        entries.push(KvEntry { key, value: map.next_value_seed(Typed)? });
                    }
                }
                Ok(match values {
                    None => Payload::Flat(entries),
                    Some(values) if !general && entries.len() == 1 && entries[0].key == "ts" => {
                        let ts = entries.pop().map_or(NULL, |e| e.value);
                        Payload::Stamped { ts, values }
                    }
                    Some(_) => Payload::General,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Payload, A::Error> {
                let value = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Payload::Other(value))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Payload, E> {
                Ok(Payload::Other(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Payload, E> {
                Ok(Payload::Other(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Payload, E> {
                Ok(Payload::Other(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Payload, E> {
                Ok(Payload::Other(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Payload, E> {
                Ok(Payload::Other(Value::from(v)))
            }
            fn visit_unit<E>(self) -> Result<Payload, E> {
                Ok(Payload::Other(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `values` member: its entries when it is an object.
enum ValuesMember {
    Object(Vec<KvEntry>),
    Other,
}

impl<'de> Deserialize<'de> for ValuesMember {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ValuesMember;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ValuesMember, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(key) = map.next_key::<String>()? {
                    entries.push(KvEntry { key, value: map.next_value_seed(Typed)? });
                }
                Ok(ValuesMember::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ValuesMember, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(ValuesMember::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<ValuesMember, E> {
                Ok(ValuesMember::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<ValuesMember, E> {
                Ok(ValuesMember::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<ValuesMember, E> {
                Ok(ValuesMember::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<ValuesMember, E> {
                Ok(ValuesMember::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<ValuesMember, E> {
                Ok(ValuesMember::Other)
            }
            fn visit_unit<E>(self) -> Result<ValuesMember, E> {
                Ok(ValuesMember::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads one member's value typed as [`KvValue::from_json`] types it; `null` reads as [`NULL`].
struct Typed;

impl<'de> serde::de::DeserializeSeed<'de> for Typed {
    type Value = KvValue;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<KvValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Typed {
    type Value = KvValue;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<KvValue, E> {
        Ok(KvValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<KvValue, E> {
        Ok(KvValue::Long(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<KvValue, E> {
        // Beyond i64, JSON's number is a double, as `Value::as_i64` / `as_f64` have it.
        Ok(i64::try_from(v).map_or(KvValue::Double(v as f64), KvValue::Long))
    }
    fn visit_f64<E>(self, v: f64) -> Result<KvValue, E> {
        Ok(KvValue::Double(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<KvValue, E> {
        Ok(KvValue::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<KvValue, E> {
        Ok(KvValue::String(v))
    }
    fn visit_unit<E>(self) -> Result<KvValue, E> {
        Ok(NULL)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<KvValue, A::Error> {
        Ok(KvValue::Json(Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<KvValue, A::Error> {
        Ok(KvValue::Json(Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?))
    }
}

/// [`entries`] of entries read in order: keys sorted and the last of a repeated key kept, as a
/// JSON map would have them, then `null`s left out; nothing copied.
fn typed_entries(mut entries: Vec<KvEntry>) -> Result<Vec<KvEntry>, TelemetryError> {
    // Keys already in order and distinct (what many devices send) need neither sort nor merge.
    if !entries.is_sorted_by(|a, b| a.key < b.key) {
        // Stable: equal keys keep their order; each run then keeps its last value, in the
        // place of its first (dedup removes the later element after the swap).
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries.dedup_by(|later, kept| {
            let same = later.key == kept.key;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
    }
    for entry in &entries {
        if entry.key.trim().is_empty() {
            return Err(TelemetryError::EmptyKey);
        }
        if entry.key.len() > MAX_KEY_LEN && entry.key.chars().count() > MAX_KEY_LEN {
            return Err(TelemetryError::KeyTooLong);
        }
    }
    // ThingsBoard skips null values.
    entries.retain(|e| !matches!(e.value, KvValue::Json(Value::Null)));
    Ok(entries)
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
///
/// On the wire the [`TelemetryData`] fields sit beside the others, tagged by `kind`. Decoding
/// is written by hand ([`wire`]): serde's derived `flatten` would first buffer every field of
/// the message into an intermediate tree, on every read of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

    /// A new message of the current schema version; `message_id` is the caller's (a fresh,
    /// time-ordered UUID v7 for a message received now: the log de-duplicates by it).
    pub fn new(
        message_id: Uuid,
        tenant_id: Uuid,
        entity_type: EntityType,
        entity_id: Uuid,
        received_at: i64,
        actor: Actor,
        data: TelemetryData,
    ) -> Self {
        Self {
            message_id,
            schema_version: Self::SCHEMA_VERSION,
            tenant_id,
            entity_type,
            entity_id,
            received_at,
            actor,
            data,
        }
    }

    /// The entity the message is about, with its tenant: what the message may be applied to.
    pub fn tenant_entity(&self) -> TenantEntityId {
        TenantEntityId::new(TenantId(self.tenant_id), EntityId::new(self.entity_type, self.entity_id))
    }

    /// How many key-value points the message carries.
    pub fn point_count(&self) -> usize {
        match &self.data {
            TelemetryData::Timeseries { batches } => batches.iter().map(TsBatch::point_count).sum(),
            TelemetryData::Attributes { values, .. } => values.len(),
            TelemetryData::AttributesDeleted { keys, .. } => keys.len(),
        }
    }
}

/// Hand-written decoding of [`KvEntry`] and [`TelemetryMessage`], reading exactly what their
/// serialisation writes (the stored form every reader of the stream decodes).
mod wire {
    use std::fmt;

    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde::Deserialize;
    use uuid::Uuid;

    use super::{AttributeScope, KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
    use crate::envelope::Actor;
    use crate::id::EntityType;

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum EntryField {
        K,
        B,
        L,
        D,
        S,
        J,
        #[serde(other)]
        Other,
    }

    impl<'de> Deserialize<'de> for KvEntry {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct EntryVisitor;
            impl<'de> Visitor<'de> for EntryVisitor {
                type Value = KvEntry;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(r#"a key-value entry {"k": key, "b"|"l"|"d"|"s"|"j": value}"#)
                }

                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KvEntry, A::Error> {
                    let mut key = None;
                    let mut value = None;
                    while let Some(field) = map.next_key::<EntryField>()? {
                        let typed = match field {
                            EntryField::K => {
                                if key.replace(map.next_value::<String>()?).is_some() {
                                    return Err(de::Error::duplicate_field("k"));
                                }
                                continue;
                            }
                            EntryField::B => KvValue::Bool(map.next_value()?),
                            EntryField::L => KvValue::Long(map.next_value()?),
                            EntryField::D => KvValue::Double(map.next_value()?),
                            EntryField::S => KvValue::String(map.next_value()?),
                            EntryField::J => KvValue::Json(map.next_value()?),
                            EntryField::Other => {
                                map.next_value::<IgnoredAny>()?;
                                continue;
                            }
                        };
                        if value.replace(typed).is_some() {
                            return Err(de::Error::custom("a key-value entry with two values"));
                        }
                    }
                    Ok(KvEntry {
                        key: key.ok_or_else(|| de::Error::missing_field("k"))?,
                        value: value.ok_or_else(|| de::Error::custom("a key-value entry without a value"))?,
                    })
                }
            }
            deserializer.deserialize_map(EntryVisitor)
        }
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "snake_case")]
    enum MessageField {
        MessageId,
        SchemaVersion,
        TenantId,
        EntityType,
        EntityId,
        ReceivedAt,
        Actor,
        Kind,
        Batches,
        Scope,
        Ts,
        Values,
        Keys,
        #[serde(other)]
        Other,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Timeseries,
        Attributes,
        AttributesDeleted,
    }

    fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(slot: &mut Option<T>, map: &mut A, name: &'static str) -> Result<(), A::Error> {
        if slot.replace(map.next_value()?).is_some() {
            return Err(de::Error::duplicate_field(name));
        }
        Ok(())
    }

    impl<'de> Deserialize<'de> for TelemetryMessage {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MessageVisitor;
            impl<'de> Visitor<'de> for MessageVisitor {
                type Value = TelemetryMessage;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a telemetry message")
                }

                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TelemetryMessage, A::Error> {
                    let mut message_id: Option<Uuid> = None;
                    let mut schema_version: Option<u32> = None;
                    let mut tenant_id: Option<Uuid> = None;
                    let mut entity_type: Option<EntityType> = None;
                    let mut entity_id: Option<Uuid> = None;
                    let mut received_at: Option<i64> = None;
                    let mut actor: Option<Actor> = None;
                    let mut kind: Option<Kind> = None;
                    let mut batches: Option<Vec<TsBatch>> = None;
                    let mut scope: Option<AttributeScope> = None;
                    let mut ts: Option<i64> = None;
                    let mut values: Option<Vec<KvEntry>> = None;
                    let mut keys: Option<Vec<String>> = None;
                    while let Some(field) = map.next_key::<MessageField>()? {
                        match field {
                            MessageField::MessageId => once(&mut message_id, &mut map, "message_id")?,
                            MessageField::SchemaVersion => once(&mut schema_version, &mut map, "schema_version")?,
                            MessageField::TenantId => once(&mut tenant_id, &mut map, "tenant_id")?,
                            MessageField::EntityType => once(&mut entity_type, &mut map, "entity_type")?,
                            MessageField::EntityId => once(&mut entity_id, &mut map, "entity_id")?,
                            MessageField::ReceivedAt => once(&mut received_at, &mut map, "received_at")?,
                            MessageField::Actor => once(&mut actor, &mut map, "actor")?,
                            MessageField::Kind => once(&mut kind, &mut map, "kind")?,
                            MessageField::Batches => once(&mut batches, &mut map, "batches")?,
                            MessageField::Scope => once(&mut scope, &mut map, "scope")?,
                            MessageField::Ts => once(&mut ts, &mut map, "ts")?,
                            MessageField::Values => once(&mut values, &mut map, "values")?,
                            MessageField::Keys => once(&mut keys, &mut map, "keys")?,
                            MessageField::Other => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    let data = match kind.ok_or_else(|| de::Error::missing_field("kind"))? {
                        Kind::Timeseries => TelemetryData::Timeseries { batches: batches.ok_or_else(|| de::Error::missing_field("batches"))? },
                        Kind::Attributes => TelemetryData::Attributes {
                            scope: scope.ok_or_else(|| de::Error::missing_field("scope"))?,
                            ts: ts.ok_or_else(|| de::Error::missing_field("ts"))?,
                            values: values.ok_or_else(|| de::Error::missing_field("values"))?,
                        },
                        Kind::AttributesDeleted => TelemetryData::AttributesDeleted {
                            scope: scope.ok_or_else(|| de::Error::missing_field("scope"))?,
                            keys: keys.ok_or_else(|| de::Error::missing_field("keys"))?,
                        },
                    };
                    Ok(TelemetryMessage {
                        message_id: message_id.ok_or_else(|| de::Error::missing_field("message_id"))?,
                        schema_version: schema_version.ok_or_else(|| de::Error::missing_field("schema_version"))?,
                        tenant_id: tenant_id.ok_or_else(|| de::Error::missing_field("tenant_id"))?,
                        entity_type: entity_type.ok_or_else(|| de::Error::missing_field("entity_type"))?,
                        entity_id: entity_id.ok_or_else(|| de::Error::missing_field("entity_id"))?,
                        received_at: received_at.ok_or_else(|| de::Error::missing_field("received_at"))?,
                        actor: actor.ok_or_else(|| de::Error::missing_field("actor"))?,
                        data,
                    })
                }
            }
            deserializer.deserialize_map(MessageVisitor)
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

    /// Timestamps the lake cannot partition by day are refused by both parsers, in every shape;
    /// the first and last millisecond of the range are accepted.
    #[test]
    fn timestamps_outside_the_calendar_are_refused() {
        for ts in [MIN_TS - 1, MAX_TS + 1, 8_400_000_000_000_000, -8_400_000_000_000_000, i64::MIN, i64::MAX] {
            let refused = Err(TelemetryError::TimestampOutOfRange { ts });
            for payload in [json!({"ts": ts, "values": {"t": 1}}), json!([{"t": 2}, {"ts": ts, "values": {"t": 1}}])] {
                assert_eq!(parse_telemetry(&payload, 0), refused, "{payload}");
                let bytes = serde_json::to_vec(&payload).expect("bytes");
                assert_eq!(parse_telemetry_slice(&bytes, 0), refused, "{payload}");
            }
        }
        for ts in [MIN_TS, 0, MAX_TS] {
            let payload = json!({"ts": ts, "values": {"t": 1}});
            assert_eq!(parse_telemetry(&payload, 0).expect("in range")[0].ts, ts);
            let bytes = serde_json::to_vec(&payload).expect("bytes");
            assert_eq!(parse_telemetry_slice(&bytes, 0).expect("in range")[0].ts, ts);
        }
    }

    /// The hand-written decoding reads exactly what the stored messages hold: every kind and
    /// value type, from bytes, fields in any order, and refuses broken entries.
    #[test]
    fn stored_messages_of_every_kind_decode_by_hand_as_derived() {
        let head = r#""message_id":"00000000-0000-0000-0000-000000000000","schema_version":1,"tenant_id":"00000000-0000-0000-0000-000000000000","entity_type":"DEVICE","entity_id":"00000000-0000-0000-0000-000000000000","received_at":9"#;
        let values = vec![
            KvEntry { key: "b".into(), value: KvValue::Bool(true) },
            KvEntry { key: "l".into(), value: KvValue::Long(-3) },
            KvEntry { key: "d".into(), value: KvValue::Double(1.5) },
            KvEntry { key: "s".into(), value: KvValue::String("on".into()) },
            KvEntry { key: "j".into(), value: KvValue::Json(json!({"x": [1]})) },
        ];
        let datas = [
            TelemetryData::Timeseries { batches: vec![TsBatch { ts: 1, values: values.clone() }, TsBatch { ts: 2, values: vec![] }] },
            TelemetryData::Attributes { scope: AttributeScope::SharedScope, ts: 5, values },
            TelemetryData::AttributesDeleted { scope: AttributeScope::ClientScope, keys: vec!["a".into(), "b".into()] },
        ];
        for data in datas {
            let message = TelemetryMessage {
                message_id: Uuid::nil(),
                schema_version: 1,
                tenant_id: Uuid::nil(),
                entity_type: EntityType::Device,
                entity_id: Uuid::nil(),
                received_at: 9,
                actor: Actor::device(Uuid::nil()),
                data,
            };
            let bytes = serde_json::to_vec(&message).expect("serializes");
            assert_eq!(serde_json::from_slice::<TelemetryMessage>(&bytes).expect("decodes"), message);
            // The data fields first and an unknown field: still the same message.
            let Value::Object(mut fields) = serde_json::to_value(&message).expect("to value") else { panic!("an object") };
            let mut reordered = serde_json::Map::new();
            for key in ["keys", "values", "ts", "scope", "batches", "kind"] {
                if let Some(v) = fields.remove(key) {
                    reordered.insert(key.into(), v);
                }
            }
            reordered.insert("future_field".into(), json!({"x": 1}));
            reordered.extend(fields);
            let text = serde_json::to_string(&reordered).expect("text");
            assert_eq!(serde_json::from_str::<TelemetryMessage>(&text).expect("decodes reordered"), message);
        }
        let stored = format!(
            r#"{{{head},"actor":{{"kind":"device","id":"00000000-0000-0000-0000-000000000000"}},"kind":"timeseries","batches":[{{"ts":1,"values":[{{"k":"t","d":1.5}},{{"k":"n","l":2}}]}}]}}"#
        );
        let message: TelemetryMessage = serde_json::from_str(&stored).expect("a stored message decodes");
        assert_eq!(message.point_count(), 2);
        for broken in [r#"{"k":"t"}"#, r#"{"d":1.5}"#, r#"{"k":"t","d":1.5,"l":2}"#, r#"{"k":"t","d":"x"}"#] {
            assert!(serde_json::from_str::<KvEntry>(broken).is_err(), "{broken}");
        }
        let without_kind = format!(r#"{{{head},"actor":{{"kind":"device"}},"batches":[]}}"#);
        assert!(serde_json::from_str::<TelemetryMessage>(&without_kind).is_err());
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
    fn parsing_from_bytes_gives_what_parsing_from_json_gives() {
        for payload in [
            json!({"b": 1, "a": 2.5, "c": "x", "d": null, "e": {"y": [1]}, "f": true}),
            json!({"ts": 1000, "values": {"z": 1, "a": "s", "n": null}}),
            json!({"ts": 1000, "values": {"z": 1}, "extra": 1}),
            json!({"values": {"nested": 1}, "other": 2}),
            json!({"ts": 5}),
            json!([{"ts": 1, "values": {"t": 1}}, {"t": 2}]),
            json!({}),
        ] {
            let bytes = serde_json::to_vec(&payload).expect("bytes");
            assert_eq!(parse_telemetry_slice(&bytes, 7), parse_telemetry(&payload, 7), "{payload}");
        }
        // A repeated key: the last one counts, as in a JSON map.
        assert_eq!(parse_telemetry_slice(br#"{"a": 1, "b": 0, "a": 2}"#, 7), parse_telemetry(&json!({"a": 2, "b": 0}), 7));
        for bad in [&br#"{"ts": "x", "values": {}}"#[..], br#"{"ts": 1, "values": 3}"#, br#"{"": 1}"#, b"5", b"[1]"] {
            let value: Value = serde_json::from_slice(bad).expect("JSON");
            assert_eq!(parse_telemetry_slice(bad, 0), parse_telemetry(&value, 0), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(parse_telemetry_slice(b"{nope", 0), Err(TelemetryError::Json(_))));
    }

    /// Keys in any order, repeated, with nulls, every value type, `ts` and `values` anywhere:
    /// the bytes parse as the JSON map of the same text does.
    #[test]
    fn parsing_from_bytes_agrees_with_json_for_any_keys() {
        use proptest::prelude::*;
        let value = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|l| l.to_string()),
            any::<u64>().prop_map(|u| u.to_string()),
            (-1e9f64..1e9).prop_map(|d| format!("{d:?}")),
            "[a-z]{0,3}".prop_map(|s| format!("\"{s}\"")),
            Just(r#"{"x": [1, null]}"#.to_string()),
        ];
        let key = prop_oneof![4 => "[a-d ]{0,2}", 1 => Just("ts".to_string()), 1 => Just("values".to_string())];
        let members = proptest::collection::vec((key, value), 0..12);
        proptest!(|(members in members, stamped in any::<bool>())| {
            let object = members.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", ");
            let text = if stamped { format!(r#"{{"ts": 5, "values": {{{object}}}}}"#) } else { format!("{{{object}}}") };
            let value: Value = serde_json::from_str(&text).expect("JSON");
            prop_assert_eq!(parse_telemetry_slice(text.as_bytes(), 7), parse_telemetry(&value, 7), "{}", text);
        });
    }

    /// The hand-written encoding of an entry writes the bytes serde's derived `flatten` wrote:
    /// messages stored before and after read the same.
    #[test]
    fn entries_encode_as_the_derived_form_did() {
        #[derive(Serialize)]
        struct Derived<'a> {
            #[serde(rename = "k")]
            key: &'a str,
            #[serde(flatten)]
            value: &'a KvValue,
        }
        for value in [
            KvValue::Bool(false),
            KvValue::Long(i64::MIN),
            KvValue::Double(-0.1),
            KvValue::Double(1e300),
            KvValue::String("a \"quoted\" \u{e9}".into()),
            KvValue::Json(json!({"x": [1, {"y": null}]})),
        ] {
            let entry = KvEntry { key: "k\"ey".into(), value };
            let derived = Derived { key: &entry.key, value: &entry.value };
            assert_eq!(serde_json::to_string(&entry).expect("encodes"), serde_json::to_string(&derived).expect("encodes"));
        }
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
