//! Relation use cases: save, read, find by either end, delete; and removing every relation of
//! an entity that is deleted.

use thinglake_domain::relation::{RelationCommand, RelationState};
use thinglake_domain::{EntityId};
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;

use crate::error::Result;
use crate::{Platform, Principal};

pub(crate) fn relations(e: &Entities) -> &Table<RelationState> {
    &e.relations
}

impl Platform {
    /// Deletes every live relation from or to `entity` (as ThingsBoard does when an entity is
    /// deleted).
    pub(crate) async fn delete_relations_of(&self, p: &Principal, entity: EntityId) -> Result<()> {
        let ids: Vec<(uuid::Uuid, uuid::Uuid)> = {
            let entities = self.view().read();
            entities
                .relations_from(entity)
                .chain(entities.relations_to(entity))
                .map(|r| (r.key.relation_id(), entities.relations.get(&r.key.relation_id()).map(|v| v.tenant_id).unwrap_or_default()))
                .collect()
        };
        for (id, tenant) in ids {
            self.execute(tenant, id, None, &p.actor(), relations, |_| Ok(RelationCommand::DeleteRelation)).await?;
        }
        Ok(())
    }
}
