//! The `relation_versions` table's decoder: every version of every relation, with its ends.

use std::collections::HashMap;

use thinglake_domain::relation::RelationEvent;
use thinglake_domain::{DomainEvent, EntityType, EventEnvelope, is_deletion};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::table::{self, LAKE_RELATION_VERSIONS, RowBuilder, TableSpec};
use uuid::Uuid;

use super::contract::{LogMessage, Projection, Source, envelope};
use crate::error::DecodeError;

/// A relation's identity, known from its creation event.
#[derive(Debug, Clone)]
struct RelationRow {
    from_type: String,
    from_id: String,
    to_type: String,
    to_id: String,
    relation_type: String,
    type_group: String,
    additional_info: Option<String>,
}

/// `relation_versions`: every version of every relation, with its ends (kept in memory from
/// the creation events, rebuilt from the relation subjects at start).
#[derive(Debug, Default)]
pub struct RelationVersionsProjection {
    relations: HashMap<Uuid, RelationRow>,
}

impl RelationVersionsProjection {
    fn fold(&mut self, e: &EventEnvelope) -> Result<&RelationRow, DecodeError> {
        let event = RelationEvent::from_envelope(e)?;
        match event {
            RelationEvent::RelationCreated { key, additional_info, .. } => {
                let type_group = serde_json::to_value(key.type_group)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let row = RelationRow {
                    from_type: key.from.entity_type.to_string(),
                    from_id: key.from.id.to_string(),
                    to_type: key.to.entity_type.to_string(),
                    to_id: key.to.id.to_string(),
                    relation_type: key.relation_type,
                    type_group,
                    additional_info: Some(additional_info.to_string()),
                };
                self.relations.insert(e.entity_id, row);
            }
            RelationEvent::RelationUpdated { additional_info } => {
                if let Some(row) = self.relations.get_mut(&e.entity_id) {
                    row.additional_info = Some(additional_info.to_string());
                }
            }
            RelationEvent::RelationDeleted {} => {}
        }
        self.relations.get(&e.entity_id).ok_or(DecodeError::NoCreation { relation: e.entity_id })
    }
}

impl Projection for RelationVersionsProjection {
    fn name(&self) -> &'static str {
        LAKE_RELATION_VERSIONS
    }
    fn spec(&self) -> TableSpec {
        table::relation_versions()
    }
    fn source(&self) -> Source {
        Source::Events
    }
    fn filter_subject(&self, subjects: &Subjects) -> Option<String> {
        Some(subjects.all_relation_events())
    }
    fn needs_priming(&self) -> bool {
        true
    }
    fn prime(&mut self, message: &LogMessage) {
        if let Ok(e) = envelope(message) {
            let _ = self.fold(&e);
        }
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        let e = envelope(message)?;
        self.decode_event(message.seq, &e, rows)
    }
    fn decode_event(&mut self, seq: u64, e: &EventEnvelope, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        if e.entity_type != EntityType::Relation {
            return Ok(());
        }
        let row = self.fold(e)?.clone();
        rows.str(Some(&e.tenant_id.to_string()))
            .str(Some(&e.entity_id.to_string()))
            .i64(Some(e.version as i64))
            .i64(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
            .str(Some(&row.from_type))
            .str(Some(&row.from_id))
            .str(Some(&row.to_type))
            .str(Some(&row.to_id))
            .str(Some(&row.relation_type))
            .str(Some(&row.type_group))
            .str(row.additional_info.as_deref())
            .bool(Some(is_deletion(&e.event_type)))
            .i64(Some(e.recorded_at));
        rows.end_row();
        Ok(())
    }
}
