//! A directed, typed relation between two entities (`Contains`, `Manages`, ...). Its identity is
//! its key (from, to, type, type group), so saving the same relation twice updates it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_text};
use crate::id::{EntityId, EntityType};

/// ThingsBoard's relation type groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RelationTypeGroup {
    #[default]
    Common,
    Dashboard,
    RuleChain,
    RuleNode,
    Edge,
    EdgeAutoAssignRuleChain,
}

impl RelationTypeGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationTypeGroup::Common => "COMMON",
            RelationTypeGroup::Dashboard => "DASHBOARD",
            RelationTypeGroup::RuleChain => "RULE_CHAIN",
            RelationTypeGroup::RuleNode => "RULE_NODE",
            RelationTypeGroup::Edge => "EDGE",
            RelationTypeGroup::EdgeAutoAssignRuleChain => "EDGE_AUTO_ASSIGN_RULE_CHAIN",
        }
    }
}

impl std::str::FromStr for RelationTypeGroup {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(Value::String(s.to_ascii_uppercase()))
            .map_err(|_| DomainError::Invalid { field: "relationTypeGroup", reason: format!("unknown type group '{s}'") })
    }
}

/// What identifies a relation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelationKey {
    pub from: EntityId,
    pub to: EntityId,
    #[serde(rename = "type")]
    pub relation_type: String,
    pub type_group: RelationTypeGroup,
}

/// Namespace of relation ids (UUID v5 of the key), so one key always maps to one log subject.
const RELATION_NAMESPACE: Uuid = Uuid::from_u128(0x5b1c_6a7e_2f0d_4c8a_9e3b_7d21_0f4a_6c11);

impl RelationKey {
    /// The relation's stable id, derived from its key.
    pub fn relation_id(&self) -> Uuid {
        let name = format!(
            "{}:{}|{}:{}|{}|{}",
            self.from.entity_type, self.from.id, self.to.entity_type, self.to.id, self.type_group.as_str(), self.relation_type
        );
        Uuid::new_v5(&RELATION_NAMESPACE, name.as_bytes())
    }

    pub fn validate(&self) -> Result<()> {
        check_text("type", &self.relation_type, 255)?;
        if self.from == self.to {
            return Err(DomainError::Invalid { field: "to", reason: "an entity cannot be related to itself".into() });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub key: RelationKey,
    pub additional_info: Value,
    pub created_time: i64,
}

pub type RelationState = Lifecycle<Relation>;

#[derive(Debug, Clone)]
pub enum RelationCommand {
    /// Creates the relation, or updates its additional info when it exists.
    SaveRelation { key: RelationKey, additional_info: Value, now: i64 },
    DeleteRelation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum RelationEvent {
    RelationCreated {
        #[serde(flatten)]
        key: RelationKey,
        additional_info: Value,
        created_time: i64,
    },
    RelationUpdated {
        additional_info: Value,
    },
    RelationDeleted {},
}

impl DomainEvent for RelationEvent {}

impl Aggregate for RelationState {
    const ENTITY_TYPE: EntityType = EntityType::Relation;
    type Command = RelationCommand;
    type Event = RelationEvent;

    fn decide(&self, command: RelationCommand) -> Result<Vec<RelationEvent>> {
        match command {
            RelationCommand::SaveRelation { key, additional_info, now } => {
                key.validate()?;
                match self {
                    Lifecycle::Live(r) if r.additional_info == additional_info => Ok(vec![]),
                    Lifecycle::Live(_) => Ok(vec![RelationEvent::RelationUpdated { additional_info }]),
                    // A deleted relation can be made again; its subject keeps the whole history.
                    Lifecycle::Absent | Lifecycle::Deleted(_) => {
                        Ok(vec![RelationEvent::RelationCreated { key, additional_info, created_time: now }])
                    }
                }
            }
            RelationCommand::DeleteRelation => {
                let id = self.any().map(|r| r.key.relation_id()).unwrap_or_default();
                self.live(EntityType::Relation, id)?;
                Ok(vec![RelationEvent::RelationDeleted {}])
            }
        }
    }

    fn evolve(self, event: &RelationEvent) -> Self {
        match event {
            RelationEvent::RelationCreated { key, additional_info, created_time } => Lifecycle::Live(Relation {
                key: key.clone(),
                additional_info: additional_info.clone(),
                created_time: *created_time,
            }),
            RelationEvent::RelationUpdated { additional_info } => {
                self.map_live(|r| Relation { additional_info: additional_info.clone(), ..r })
            }
            RelationEvent::RelationDeleted {} => self.into_deleted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(relation_type: &str) -> RelationKey {
        RelationKey {
            from: EntityId::new(EntityType::Asset, Uuid::from_u128(1)),
            to: EntityId::new(EntityType::Device, Uuid::from_u128(2)),
            relation_type: relation_type.into(),
            type_group: RelationTypeGroup::Common,
        }
    }

    #[test]
    fn the_relation_id_depends_on_the_whole_key() {
        assert_eq!(key("Contains").relation_id(), key("Contains").relation_id());
        assert_ne!(key("Contains").relation_id(), key("Manages").relation_id());
    }

    #[test]
    fn saving_an_existing_relation_updates_its_info() {
        let save = |info: Value| RelationCommand::SaveRelation { key: key("Contains"), additional_info: info, now: 1 };
        let state = RelationState::replay(&RelationState::Absent.decide(save(Value::Null)).expect("valid"));
        let events = state.decide(save(serde_json::json!({"a": 1}))).expect("valid");
        assert_eq!(events, vec![RelationEvent::RelationUpdated { additional_info: serde_json::json!({"a": 1}) }]);
        assert!(state.decide(save(Value::Null)).expect("valid").is_empty());
    }

    #[test]
    fn a_deleted_relation_can_be_created_again() {
        let save = RelationCommand::SaveRelation { key: key("Contains"), additional_info: Value::Null, now: 1 };
        let state = RelationState::replay(&RelationState::Absent.decide(save.clone()).expect("valid"))
            .evolve(&RelationEvent::RelationDeleted {});
        assert!(matches!(state.decide(save).expect("valid")[0], RelationEvent::RelationCreated { .. }));
    }

    #[test]
    fn a_relation_needs_a_type() {
        let err = RelationState::Absent
            .decide(RelationCommand::SaveRelation { key: key(""), additional_info: Value::Null, now: 1 })
            .unwrap_err();
        assert_eq!(err, DomainError::Required { field: "type" });
    }

    #[test]
    fn type_groups_parse_from_their_wire_names() {
        assert_eq!("common".parse::<RelationTypeGroup>().ok(), Some(RelationTypeGroup::Common));
        assert!("nonsense".parse::<RelationTypeGroup>().is_err());
    }
}
