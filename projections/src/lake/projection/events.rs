//! The `events` table's decoder: every entity event, as the audit trail and the replay archive.
//! Envelopes written as serde_json writes them go into the row from their texts; others are
//! parsed and written again, to the same row.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use thinglake_domain::{ActorKind, EntityType};
use thinglake_lake::partition::{day_of, month_of};
use thinglake_lake::table::{self, LAKE_EVENTS, RowBuilder, TableSpec};
use uuid::Uuid;

use super::contract::{KNOWN_EVENT_SCHEMA_VERSION, LogMessage, Projection, Source, check_event_schema, seq};
use super::json_text::{Member, Shape, keys_in_order, object_members};
use crate::error::DecodeError;

/// `events`: every entity event, as the audit trail and the replay archive.
#[derive(Debug, Default)]
pub struct EventsProjection {
    /// Where the members of the envelope being decoded are (reused from event to event).
    members: Vec<Member>,
    /// The day of the last event's `recorded_at` and its month partition's text.
    month: Option<(i32, String)>,
}

impl EventsProjection {
    /// The `month` partition of `recorded_at`, kept from the previous event of the same day.
    fn month(&mut self, recorded_at: i64) -> &str {
        let day = day_of(recorded_at);
        if self.month.as_ref().is_none_or(|(d, _)| *d != day) {
            self.month = Some((day, month_of(recorded_at)));
        }
        &self.month.as_ref().expect("set just above").1
    }

    /// The row of an envelope written as serde_json writes an
    /// [`EventEnvelope`](thinglake_domain::EventEnvelope) (ids as lower-case hyphenated UUIDs,
    /// the payload as serde_json writes a `Value`), from the texts of the message as they are; `None` for any other envelope, which [`Self::decode_parsed`] reads.
    /// The row is the same either way.
    fn decode_text(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Option<Result<(), DecodeError>> {
        // serde_json checks the JSON (the payload too, without building it) and reads the fields.
        let e: EnvelopeText<'_> = serde_json::from_slice(&message.payload).ok()?;
        if e.schema_version > KNOWN_EVENT_SCHEMA_VERSION {
            return None;
        }
        let uuid_text = |text: &Cow<'_, str>| is_hyphenated_lower_uuid(text);
        if !(uuid_text(&e.event_id) && uuid_text(&e.tenant_id) && uuid_text(&e.entity_id))
            || e.actor.id.as_ref().is_some_and(|id| !uuid_text(id))
        {
            return None;
        }
        // The payload's text: a member of the envelope written as serde_json writes it, whose
        // objects list their keys in serde_json's order.
        let text = std::str::from_utf8(&message.payload).ok()?;
        if object_members(text, &mut self.members) != Shape::Object {
            return None;
        }
        let member = self.members.iter().find(|m| &text[m.key.clone()] == "\"payload\"")?;
        let payload = &text[member.key.end + 1..member.end];
        if !keys_in_order(payload) {
            return None;
        }
        let row = EventRow {
            tenant_id: &e.tenant_id,
            month: self.month(e.recorded_at),
            event_id: &e.event_id,
            entity_type: e.entity_type.as_str(),
            entity_id: &e.entity_id,
            version: e.version,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor_kind: e.actor.kind.as_str(),
            actor_id: e.actor.id.as_deref(),
            actor_name: e.actor.name.as_deref(),
            payload,
        };
        row.push(seq(message), rows);
        Some(Ok(()))
    }

    /// The row of any envelope, its payload parsed into a `Value` and written again.
    fn decode_parsed(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        // Borrowed from the message where the row takes the text as it is.
        let e: EnvelopeRef<'_> = serde_json::from_slice(&message.payload)
            .map_err(|source| DecodeError::NotA { what: "an event envelope", source })?;
        check_event_schema(e.schema_version, &e.event_type)?;
        let (mut tenant, mut event_id, mut entity_id) =
            ([0; uuid::fmt::Hyphenated::LENGTH], [0; uuid::fmt::Hyphenated::LENGTH], [0; uuid::fmt::Hyphenated::LENGTH]);
        let actor_id = e.actor.id.map(|id| id.to_string());
        let payload = e.payload.to_string();
        let row = EventRow {
            tenant_id: e.tenant_id.hyphenated().encode_lower(&mut tenant),
            month: self.month(e.recorded_at),
            event_id: e.event_id.hyphenated().encode_lower(&mut event_id),
            entity_type: e.entity_type.as_str(),
            entity_id: e.entity_id.hyphenated().encode_lower(&mut entity_id),
            version: e.version,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor_kind: e.actor.kind.as_str(),
            actor_id: actor_id.as_deref(),
            actor_name: e.actor.name.as_deref(),
            payload: &payload,
        };
        row.push(seq(message), rows);
        Ok(())
    }
}

/// One `events` row: an envelope's fields as text, however they were read.
struct EventRow<'a> {
    tenant_id: &'a str,
    month: &'a str,
    event_id: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    version: u64,
    event_type: &'a str,
    schema_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    actor_kind: &'a str,
    actor_id: Option<&'a str>,
    actor_name: Option<&'a str>,
    payload: &'a str,
}

impl EventRow<'_> {
    /// Appends the row of the message at stream sequence `seq`, in the table's column order.
    fn push(&self, seq: i64, rows: &mut RowBuilder) {
        rows.str(Some(self.tenant_id))
            .str(Some(self.month))
            .i64(Some(seq))
            .str(Some(self.event_id))
            .str(Some(self.entity_type))
            .str(Some(self.entity_id))
            .i64(Some(self.version as i64))
            .str(Some(self.event_type))
            .i32(Some(self.schema_version as i32))
            .i64(Some(self.occurred_at))
            .i64(Some(self.recorded_at))
            .str(Some(self.actor_kind))
            .str(self.actor_id)
            .str(self.actor_name)
            .str(Some(self.payload));
        rows.end_row();
    }
}

impl Projection for EventsProjection {
    fn name(&self) -> &'static str {
        LAKE_EVENTS
    }
    fn spec(&self) -> TableSpec {
        table::events()
    }
    fn source(&self) -> Source {
        Source::Events
    }
    /// The platform writes envelopes as serde_json writes them: their texts go into the row as
    /// they are ([`EventsProjection::decode_text`]); anything else is parsed and written again.
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        match self.decode_text(message, rows) {
            Some(decoded) => decoded,
            None => self.decode_parsed(message, rows),
        }
    }
}

/// An [`EventEnvelope`](thinglake_domain::EventEnvelope) read with its strings borrowed from the
/// message where it can.
#[derive(Deserialize)]
struct EnvelopeRef<'a> {
    event_id: Uuid,
    tenant_id: Uuid,
    entity_type: EntityType,
    entity_id: Uuid,
    version: u64,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    #[serde(borrow)]
    actor: ActorRef<'a>,
    payload: Value,
}

#[derive(Deserialize)]
struct ActorRef<'a> {
    kind: ActorKind,
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

/// An [`EventEnvelope`](thinglake_domain::EventEnvelope) with its ids as text and its payload
/// only checked to be JSON: what [`EventsProjection::decode_text`] takes as it is.
#[derive(Deserialize)]
struct EnvelopeText<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    tenant_id: Cow<'a, str>,
    entity_type: EntityType,
    #[serde(borrow)]
    entity_id: Cow<'a, str>,
    version: u64,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    #[serde(borrow)]
    actor: ActorText<'a>,
    #[allow(dead_code)]
    payload: IgnoredAny,
}

#[derive(Deserialize)]
struct ActorText<'a> {
    kind: ActorKind,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

/// Whether `text` is a UUID as `Uuid`'s `Display` writes it (hyphenated, lower-case hex).
fn is_hyphenated_lower_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == uuid::fmt::Hyphenated::LENGTH
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use deltalake_core::arrow::array::RecordBatch;
    use serde_json::json;
    use thinglake_domain::{Actor, EventEnvelope};

    use super::*;
    use crate::lake::projection::fixtures::{domain_payloads, envelope_of, payload_texts, payloads, random_numbers, random_value};

    /// What a projection's `decode` returned and the rows it made.
    type Decoded = (Result<(), String>, RecordBatch);

    /// The `events` row of a log message by `decode` (from the envelope's texts where they are
    /// as serde_json writes them) and by `decode_parsed` (the envelope parsed, its payload
    /// written again: the old way); and whether `decode` took the texts as they are.
    fn events_rows_both_ways(text: &[u8]) -> (Decoded, Decoded, bool) {
        let message = LogMessage { seq: 42, subject: String::new(), payload: Bytes::copy_from_slice(text) };
        let both = |decode: &dyn Fn(&mut EventsProjection, &mut RowBuilder) -> Result<(), DecodeError>| {
            let mut rows = RowBuilder::new(table::events().schema);
            let decoded = decode(&mut EventsProjection::default(), &mut rows).map_err(|e| e.to_string());
            (decoded, rows.finish().expect("a batch"))
        };
        let as_text = EventsProjection::default().decode_text(&message, &mut RowBuilder::new(table::events().schema)).is_some();
        (both(&|p, rows| p.decode(&message, rows)), both(&|p, rows| p.decode_parsed(&message, rows)), as_text)
    }

    /// Envelopes as the platform writes them go into the `events` row from their texts, and
    /// that row is the one the parsed envelope gives: for every entity event type's payload,
    /// edge-case payloads and random ones. Envelopes written otherwise (whitespace, upper-case
    /// ids, keys out of serde_json's order, escapes it does not write, duplicate keys, deep
    /// nesting, unknown schema versions, invalid JSON) are parsed: the same row or error.
    #[test]
    fn events_rows_from_envelope_texts_equal_those_from_parsed_envelopes() {
        let entity = Uuid::from_u128(0xabc);
        let mut envelopes: Vec<EventEnvelope> = Vec::new();
        for (event_type, payload) in domain_payloads() {
            envelopes.push(envelope_of(entity, 1, &event_type, payload));
        }
        envelopes.extend(payloads().into_iter().map(|p| envelope_of(entity, 2, "DeviceUpdated", p)));
        let mut next = random_numbers();
        for i in 0..2_000u64 {
            let payload = random_value(&mut next, if i % 2 == 0 { 0 } else { 2 });
            let mut e = envelope_of(entity, i, "DeviceUpdated", payload);
            e.actor = if i % 3 == 0 { Actor::system() } else { Actor::device(Uuid::from_u128(u128::from(i))) };
            e.recorded_at = 1_700_000_000_000 + i as i64 * 86_400_000 * 7;
            envelopes.push(e);
        }
        for e in &envelopes {
            let text = serde_json::to_vec(e).expect("serializes");
            let ((decoded, rows), (parsed, parsed_rows), as_text) = events_rows_both_ways(&text);
            assert!(as_text, "taken as it is: {}", String::from_utf8_lossy(&text));
            assert_eq!((&decoded, &rows), (&parsed, &parsed_rows), "{}", String::from_utf8_lossy(&text));
            assert!(decoded.is_ok() && rows.num_rows() == 1);
        }

        // Envelopes written otherwise, and payload texts of every kind inside a canonical one.
        let e = envelope_of(entity, 3, "DeviceUpdated", json!({"name": "pump", "info": {"b": 1, "a": [2, {"y": 1, "x": 2}]}}));
        let canonical = serde_json::to_string(&e).expect("serializes");
        let with_payload = |payload: &str| {
            let at = canonical.find(r#","payload":"#).expect("a payload member");
            format!("{}\"payload\":{payload}}}", &canonical[..at + 1])
        };
        let deep = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let deeper = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        let mut others = vec![
            serde_json::to_string_pretty(&e).expect("serializes"),
            format!("{canonical}\n"),
            canonical.replace(&e.entity_id.to_string(), &e.entity_id.to_string().to_uppercase()),
            canonical.replace(&e.tenant_id.to_string(), &e.tenant_id.simple().to_string()),
            canonical.replace(&e.event_id.to_string(), "not-a-uuid"),
            canonical.replace(r#""schema_version":1"#, r#""schema_version":2"#),
            canonical.replace(r#""payload":"#, r#""p\u0061yload":"#),
            canonical.replace(r#""payload":"#, r#""payload":1,"payload":"#),
            canonical.replace(r#","payload":"#, r#","extra":{"z":[1,2]},"payload":"#),
            canonical.replace(r#""kind":"user","#, r#""kind":"user","id":null,"#),
            canonical.replace(&format!(r#","payload":{}"#, e.payload), ""),
            with_payload(r#"{"info":{"a":[2,{"x":2,"y":1}],"b":1},"name":"pump"}"#),
            with_payload(r#"{"name":"pump","info":{"b":1,"a":[2,{"y":1,"x":2}]}}"#),
            with_payload(r#"{"info":{"a":[2,{"y":1,"x":2}],"b":1},"name":"pump"}"#),
            with_payload(r#"{"a":{"k":1,"k":2}}"#),
            with_payload(&deep),
            with_payload(&deeper),
            String::new(),
        ];
        others.extend(payload_texts().iter().map(|t| with_payload(t)));
        // Bytes that are not UTF-8 inside the payload's strings: refused either way.
        let mut invalid = with_payload(r#"{"name":"pump?"}"#).into_bytes();
        let at = invalid.iter().position(|&b| b == b'?').expect("the marker");
        invalid[at] = 0xff;
        let ((decoded, rows), (parsed, parsed_rows), _) = events_rows_both_ways(&invalid);
        assert!(decoded.is_err() && (&decoded, &rows) == (&parsed, &parsed_rows), "{decoded:?}");
        let mut as_text_count = 0;
        for text in &others {
            let ((decoded, rows), (parsed, parsed_rows), as_text) = events_rows_both_ways(text.as_bytes());
            assert_eq!((&decoded, &rows), (&parsed, &parsed_rows), "{text}");
            as_text_count += usize::from(as_text);
        }
        // Sorted keys, nested too, are taken as they are; keys out of order, duplicates and
        // nesting beyond the scan's depth are not.
        let taken = |text: &str| events_rows_both_ways(text.as_bytes()).2;
        assert!(taken(&with_payload(r#"{"info":{"a":[2,{"x":2,"y":1}],"b":1},"name":"pump"}"#)));
        assert!(taken(&with_payload(&deep)));
        assert!(!taken(&with_payload(r#"{"info":{"a":[2,{"y":1,"x":2}],"b":1},"name":"pump"}"#)));
        assert!(!taken(&with_payload(r#"{"a":{"k":1,"k":2}}"#)));
        assert!(!taken(&with_payload(&deeper)));
        assert!(as_text_count > 5 && as_text_count < others.len(), "{as_text_count} of {}", others.len());
    }
}
