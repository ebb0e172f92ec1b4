//! Relation use cases: save, read, find by either end, query the relation graph, delete; and
//! removing every relation of an entity that is deleted.
//!
//! Tenant administrators write relations between live entities of their own tenant; anyone who
//! may read both ends of a relation may read it (customer users see relations among their
//! customer's entities).

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde_json::Value;
use thinglake_domain::relation::{Relation, RelationCommand, RelationKey, RelationState, RelationTypeGroup};
use thinglake_domain::{CustomerId, EntityId, EntityType, TenantId};
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::{Platform, Principal};

pub(crate) fn relations(e: &Entities) -> &Table<RelationState> {
    &e.relations
}

/// A relation with its version, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationView {
    pub relation: Relation,
    pub version: u64,
}

/// A relation with the names of its ends (`GET /api/relations/info`).
#[derive(Debug, Clone, PartialEq)]
pub struct RelationInfo {
    pub view: RelationView,
    pub from_name: String,
    pub to_name: String,
}

/// What a save of a relation carries.
#[derive(Debug, Clone)]
pub struct RelationInput {
    pub from: EntityId,
    pub to: EntityId,
    pub relation_type: String,
    /// ThingsBoard's default is `COMMON`.
    pub type_group: Option<RelationTypeGroup>,
    pub additional_info: Value,
}

/// Which way a search follows relations from its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Relations starting at the root (the root is their `from`).
    From,
    /// Relations ending at the root.
    To,
}

/// One filter of a relations query: a relation matches when its type matches (or the filter has
/// none) and the entity at its far end has one of the types (or the filter lists none).
#[derive(Debug, Clone, Default)]
pub struct RelationFilter {
    pub relation_type: Option<String>,
    pub entity_types: Vec<EntityType>,
}

/// ThingsBoard's `EntityRelationsQuery`.
#[derive(Debug, Clone)]
pub struct RelationsQuery {
    pub root: EntityId,
    pub direction: Direction,
    pub type_group: Option<RelationTypeGroup>,
    /// Levels to follow; 0 is unlimited.
    pub max_level: u32,
    /// Keep only the relations of the last level (or of leaves when the walk ends earlier).
    pub fetch_last_level_only: bool,
    pub filters: Vec<RelationFilter>,
}

/// What the relation rules need to know about an entity at one end.
#[derive(Debug, Clone)]
struct EndFacts {
    tenant: TenantId,
    customer: CustomerId,
    live: bool,
    name: String,
}

/// The owner, liveness and name of an entity, live or deleted; `None` when it never existed or
/// cannot be related.
fn end_facts(e: &Entities, id: EntityId) -> Option<EndFacts> {
    fn facts<T>(state: &thinglake_domain::Lifecycle<T>, f: impl Fn(&T) -> (TenantId, CustomerId, String)) -> Option<EndFacts> {
        let t = state.any()?;
        let (tenant, customer, name) = f(t);
        Some(EndFacts { tenant, customer, live: state.as_live().is_some(), name })
    }
    let key = &id.id;
    match id.entity_type {
        EntityType::Tenant => facts(&e.tenants.get(key)?.state, |t| (t.id, CustomerId::NULL, t.fields.title.clone())),
        EntityType::Customer => facts(&e.customers.get(key)?.state, |c| (c.tenant_id, c.id, c.fields.title.clone())),
        EntityType::User => facts(&e.users.get(key)?.state, |u| (u.tenant_id, u.customer_id, u.fields.email.clone())),
        EntityType::Device => facts(&e.devices.get(key)?.state, |d| (d.tenant_id, d.customer_id, d.fields.name.clone())),
        EntityType::Asset => facts(&e.assets.get(key)?.state, |a| (a.tenant_id, a.customer_id, a.fields.name.clone())),
        EntityType::DeviceProfile => {
            facts(&e.device_profiles.get(key)?.state, |p| (p.tenant_id, CustomerId::NULL, p.fields.name.clone()))
        }
        EntityType::AssetProfile => {
            facts(&e.asset_profiles.get(key)?.state, |p| (p.tenant_id, CustomerId::NULL, p.fields.name.clone()))
        }
        _ => None,
    }
}

fn may_read(p: &Principal, e: &Entities, id: EntityId) -> bool {
    end_facts(e, id).is_some_and(|f| p.can_read(f.tenant, f.customer))
}

fn view_of(e: &Entities, relation: &Relation) -> RelationView {
    let version = e.relations.get(&relation.key.relation_id()).map(|v| v.position.version).unwrap_or(0);
    RelationView { relation: relation.clone(), version }
}

/// The entity at the far end of a relation, seen from the root of a walk.
fn far_end(relation: &Relation, direction: Direction) -> EntityId {
    match direction {
        Direction::From => relation.key.to,
        Direction::To => relation.key.from,
    }
}

fn neighbours<'a>(e: &'a Entities, entity: EntityId, direction: Direction) -> Box<dyn Iterator<Item = &'a Relation> + 'a> {
    match direction {
        Direction::From => Box::new(e.relations_from(entity)),
        Direction::To => Box::new(e.relations_to(entity)),
    }
}

fn matches_filters(filters: &[RelationFilter], relation: &Relation, direction: Direction) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            f.relation_type.as_deref().is_none_or(|t| t.is_empty() || t == relation.key.relation_type)
                && (f.entity_types.is_empty() || f.entity_types.contains(&far_end(relation, direction).entity_type))
        })
}

/// Walks the relation graph breadth first from `query.root`, visiting each entity once (so
/// cycles end), and returns the matching relations in the order found.
fn walk(e: &Entities, query: &RelationsQuery) -> Vec<Relation> {
    let group = query.type_group.unwrap_or_default();
    let max_level = if query.max_level == 0 { u32::MAX } else { query.max_level };
    let mut visited: HashSet<EntityId> = HashSet::from([query.root]);
    let mut queue: VecDeque<(EntityId, u32)> = VecDeque::from([(query.root, 1)]);
    let mut found: Vec<Relation> = Vec::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    while let Some((entity, level)) = queue.pop_front() {
        let hop: Vec<&Relation> = neighbours(e, entity, query.direction).filter(|r| r.key.type_group == group).collect();
        for relation in hop {
            let next = far_end(relation, query.direction);
            let first_visit = visited.insert(next);
            let has_more = level < max_level;
            if first_visit && has_more {
                queue.push_back((next, level + 1));
            }
            if !matches_filters(&query.filters, relation, query.direction) || !seen.insert(relation.key.relation_id()) {
                continue;
            }
            let keep = !query.fetch_last_level_only
                || !has_more
                || neighbours(e, next, query.direction).all(|r| r.key.type_group != group);
            if keep {
                found.push(relation.clone());
            }
        }
    }
    found
}

impl Platform {
    /// Creates a relation or updates its additional info (`POST /api/relation`).
    pub async fn save_relation(&self, p: &Principal, input: RelationInput) -> Result<RelationView> {
        let tenant = p.require_tenant_admin()?;
        self.check_ends_writable(p, input.from, input.to)?;
        let key = RelationKey {
            from: input.from,
            to: input.to,
            relation_type: input.relation_type,
            type_group: input.type_group.unwrap_or_default(),
        };
        let id = key.relation_id();
        let now = self.now_ms();
        let additional_info = input.additional_info;
        let outcome = self
            .execute(tenant.0, id, None, &p.actor(), relations, |_| {
                Ok(RelationCommand::SaveRelation { key: key.clone(), additional_info: additional_info.clone(), now })
            })
            .await?;
        match outcome.state.as_live() {
            Some(r) => Ok(RelationView { relation: r.clone(), version: outcome.position.version }),
            None => Err(Error::not_found(EntityType::Relation, id)),
        }
    }

    /// One relation by its key, if the caller may read both its ends.
    pub fn relation(&self, p: &Principal, key: &RelationKey) -> Result<RelationView> {
        p.require_tenant_user()?;
        let id = key.relation_id();
        let entities = self.view().read();
        let relation = entities
            .relations
            .get(&id)
            .and_then(|v| v.state.as_live())
            .ok_or_else(|| Error::not_found(EntityType::Relation, id))?;
        if !may_read(p, &entities, key.from) || !may_read(p, &entities, key.to) {
            return Err(Error::Forbidden);
        }
        Ok(view_of(&entities, relation))
    }

    /// Deletes a relation and returns it as it was.
    pub async fn delete_relation(&self, p: &Principal, key: &RelationKey) -> Result<RelationView> {
        p.require_tenant_admin()?;
        let id = key.relation_id();
        let (tenant, view) = {
            let entities = self.view().read();
            let v = entities.relations.get(&id).ok_or_else(|| Error::not_found(EntityType::Relation, id))?;
            let relation = v.state.as_live().ok_or_else(|| Error::not_found(EntityType::Relation, id))?;
            for end in [key.from, key.to] {
                // An end deleted without its relations is no reason to keep the relation.
                if let Some(f) = end_facts(&entities, end) {
                    p.check_write(f.tenant)?;
                }
            }
            (v.tenant_id, view_of(&entities, relation))
        };
        p.check_write(TenantId(tenant))?;
        self.execute(tenant, id, None, &p.actor(), relations, |_| Ok(RelationCommand::DeleteRelation)).await?;
        Ok(view)
    }

    /// The live relations from (or to) `entity` in `type_group` (default `COMMON`), optionally of
    /// one type, whose far end the caller may read.
    pub fn relations_of(
        &self,
        p: &Principal,
        entity: EntityId,
        direction: Direction,
        relation_type: Option<&str>,
        type_group: Option<RelationTypeGroup>,
    ) -> Result<Vec<RelationView>> {
        p.require_tenant_user()?;
        let group = type_group.unwrap_or_default();
        let entities = self.view().read();
        self.check_root_readable(p, &entities, entity)?;
        let mut out: Vec<RelationView> = neighbours(&entities, entity, direction)
            .filter(|r| r.key.type_group == group && relation_type.is_none_or(|t| r.key.relation_type == t))
            .filter(|r| may_read(p, &entities, far_end(r, direction)))
            .map(|r| view_of(&entities, r))
            .collect();
        out.sort_by_key(|v| (v.relation.created_time, v.relation.key.clone()));
        Ok(out)
    }

    /// ThingsBoard's relations query (`POST /api/relations`): a breadth-first walk from the root.
    pub fn find_relations(&self, p: &Principal, query: &RelationsQuery) -> Result<Vec<RelationView>> {
        p.require_tenant_user()?;
        let entities = self.view().read();
        self.check_root_readable(p, &entities, query.root)?;
        Ok(walk(&entities, query)
            .iter()
            .filter(|r| may_read(p, &entities, r.key.from) && may_read(p, &entities, r.key.to))
            .map(|r| view_of(&entities, r))
            .collect())
    }

    /// Adds the names (titles, emails) of each relation's ends.
    pub fn relation_infos(&self, views: Vec<RelationView>) -> Vec<RelationInfo> {
        let entities = self.view().read();
        let name = |id: EntityId| end_facts(&entities, id).map(|f| f.name).unwrap_or_default();
        views
            .into_iter()
            .map(|view| {
                let from_name = name(view.relation.key.from);
                let to_name = name(view.relation.key.to);
                RelationInfo { view, from_name, to_name }
            })
            .collect()
    }

    /// Deletes every live relation from or to `entity` (as ThingsBoard does when an entity is
    /// deleted).
    pub(crate) async fn delete_relations_of(&self, p: &Principal, entity: EntityId) -> Result<()> {
        let ids: BTreeMap<Uuid, Uuid> = {
            let entities = self.view().read();
            entities
                .relations_from(entity)
                .chain(entities.relations_to(entity))
                .map(|r| {
                    let id = r.key.relation_id();
                    (id, entities.relations.get(&id).map(|v| v.tenant_id).unwrap_or_default())
                })
                .collect()
        };
        for (id, tenant) in ids {
            self.execute(tenant, id, None, &p.actor(), relations, |_| Ok(RelationCommand::DeleteRelation)).await?;
        }
        Ok(())
    }

    /// Both ends exist, are live and belong to the caller's tenant.
    fn check_ends_writable(&self, p: &Principal, from: EntityId, to: EntityId) -> Result<()> {
        let entities = self.view().read();
        let mut ends = Vec::with_capacity(2);
        for end in [from, to] {
            match end_facts(&entities, end) {
                Some(f) if f.live => ends.push(f),
                _ => return Err(Error::not_found(end.entity_type, end.id)),
            }
        }
        ends.iter().try_for_each(|f| p.check_write(f.tenant))
    }

    fn check_root_readable(&self, p: &Principal, entities: &Entities, root: EntityId) -> Result<()> {
        match end_facts(entities, root) {
            Some(f) if f.live => p.check_read(f.tenant, f.customer),
            _ => Err(Error::not_found(root.entity_type, root.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> EntityId {
        EntityId::new(EntityType::Asset, Uuid::from_u128(n))
    }

    fn relation(from: EntityId, to: EntityId, relation_type: &str) -> Relation {
        Relation {
            key: RelationKey { from, to, relation_type: relation_type.into(), type_group: RelationTypeGroup::Common },
            additional_info: Value::Null,
            created_time: 1,
        }
    }

    /// A read model holding the given relations.
    fn view_with(edges: &[(u128, u128, &str)]) -> thinglake_projections::EntityView {
        use thinglake_domain::relation::RelationEvent;
        use thinglake_domain::{Actor, DomainEvent, EventEnvelope};
        let view = thinglake_projections::EntityView::new();
        for (seq, (from, to, relation_type)) in edges.iter().enumerate() {
            let r = relation(id(*from), id(*to), relation_type);
            let event = RelationEvent::RelationCreated { key: r.key.clone(), additional_info: Value::Null, created_time: 1 };
            let (event_type, payload) = event.encode();
            let envelope = EventEnvelope {
                event_id: Uuid::now_v7(),
                tenant_id: Uuid::from_u128(99),
                entity_type: EntityType::Relation,
                entity_id: r.key.relation_id(),
                version: 1,
                event_type,
                schema_version: 1,
                occurred_at: 1,
                recorded_at: 1,
                actor: Actor::system(),
                payload,
            };
            view.apply(seq as u64 + 1, &envelope).expect("a relation event applies");
        }
        view
    }

    fn query(max_level: u32, fetch_last_level_only: bool) -> RelationsQuery {
        RelationsQuery {
            root: id(1),
            direction: Direction::From,
            type_group: None,
            max_level,
            fetch_last_level_only,
            filters: vec![],
        }
    }

    fn far_ends(found: &[Relation]) -> Vec<u128> {
        let mut ends: Vec<u128> = found.iter().map(|r| r.key.to.id.as_u128()).collect();
        ends.sort();
        ends
    }

    #[test]
    fn the_walk_follows_a_cycle_once() {
        let view = view_with(&[(1, 2, "Contains"), (2, 3, "Contains"), (3, 1, "Contains")]);
        let found = walk(&view.read(), &query(0, false));
        assert_eq!(far_ends(&found), vec![1, 2, 3]);
    }

    #[test]
    fn the_walk_stops_at_max_level_and_can_keep_only_the_last_level() {
        let view = view_with(&[(1, 2, "Contains"), (2, 3, "Contains"), (3, 4, "Contains"), (1, 5, "Contains")]);
        assert_eq!(far_ends(&walk(&view.read(), &query(2, false))), vec![2, 3, 5]);
        // Level 2 ends at 3; the leaf 5 ends its branch at level 1.
        assert_eq!(far_ends(&walk(&view.read(), &query(2, true))), vec![3, 5]);
    }

    #[test]
    fn a_filter_matches_on_type_and_far_end_entity_type() {
        let r = relation(id(1), EntityId::new(EntityType::Device, Uuid::from_u128(2)), "Contains");
        let by_type = RelationFilter { relation_type: Some("Contains".into()), entity_types: vec![] };
        let wrong_end = RelationFilter { relation_type: None, entity_types: vec![EntityType::Asset] };
        assert!(matches_filters(&[by_type], &r, Direction::From));
        assert!(!matches_filters(std::slice::from_ref(&wrong_end), &r, Direction::From));
        // Seen from the other end, the far end is the asset.
        assert!(matches_filters(&[wrong_end], &r, Direction::To));
        assert!(matches_filters(&[], &r, Direction::From));
    }
}
