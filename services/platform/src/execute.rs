//! Running one command against one entity: read, check version, decide, append, apply.

use thinglake_domain::{Actor, Aggregate, DomainEvent, EntityId};
use thinglake_infra::AppendError;
use thinglake_infra::event_store::{EntityPosition, PendingEvent};
use thinglake_projections::entities::{Entities, Table};
use tracing::debug;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::Platform;

/// How many times a command without an expected version is decided again after a concurrent
/// change.
const MAX_ATTEMPTS: usize = 5;

/// An entity's state after a command, with its new position.
#[derive(Debug, Clone)]
pub(crate) struct Outcome<S> {
    pub state: S,
    pub position: EntityPosition,
}

impl Platform {
    /// Decides `command` against the entity's current state and appends the events.
    ///
    /// With `expected_version`, a stale version is a [`Error::VersionConflict`] (ThingsBoard's
    /// 409). Without it the command is decided again on the fresh state after a concurrent change,
    /// so a save without a version overwrites, as ThingsBoard's does.
    pub(crate) async fn execute<S: Aggregate>(
        &self,
        tenant: Uuid,
        id: Uuid,
        expected_version: Option<u64>,
        actor: &Actor,
        table: fn(&Entities) -> &Table<S>,
        mut command: impl FnMut(&S) -> Result<S::Command>,
    ) -> Result<Outcome<S>> {
        let entity = EntityId::new(S::ENTITY_TYPE, id);
        let (mut state, mut position) = self.current(id, table);
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some(expected) = expected_version
                && expected != position.version {
                    return Err(Error::VersionConflict { entity_type: S::ENTITY_TYPE, id });
                }
            let events = state.decide(command(&state)?)?;
            if events.is_empty() {
                return Ok(Outcome { state, position });
            }
            let now = self.now_ms();
            let pending: Vec<PendingEvent> =
                events.iter().map(|e| PendingEvent::new(e, Uuid::now_v7(), now, actor.clone())).collect();
            match self.store().append(tenant, entity, position, pending).await {
                Ok(appended) => {
                    for (seq, envelope) in &appended.events {
                        // Our own events decode by construction; a failure here is only logged by
                        // the follower, which applies the same events again.
                        let _ = self.view().apply(*seq, envelope);
                    }
                    let state = events.iter().fold(state, |s, e| s.evolve(e));
                    return Ok(Outcome { state, position: appended.position });
                }
                Err(AppendError::Conflict { .. }) if expected_version.is_none() && attempt < MAX_ATTEMPTS => {
                    debug!(%entity, attempt, "concurrent change; deciding again");
                    (state, position) = self.reload::<S>(tenant, entity).await?;
                }
                Err(AppendError::Conflict { .. }) => {
                    return Err(Error::VersionConflict { entity_type: S::ENTITY_TYPE, id });
                }
                Err(AppendError::Log(e)) => return Err(e.into()),
            }
        }
        Err(Error::VersionConflict { entity_type: S::ENTITY_TYPE, id })
    }

    /// The entity's state and position in the read model.
    pub(crate) fn current<S: Aggregate>(&self, id: Uuid, table: fn(&Entities) -> &Table<S>) -> (S, EntityPosition) {
        let entities = self.view().read();
        match table(&entities).get(&id) {
            Some(v) => (v.state.clone(), v.position),
            None => (S::default(), EntityPosition::NEW),
        }
    }

    /// Replays the entity from the log, bringing the read model up to date on the way.
    async fn reload<S: Aggregate>(&self, tenant: Uuid, entity: EntityId) -> Result<(S, EntityPosition)> {
        let (events, position) = self.store().load(tenant, entity).await?;
        let mut state = S::default();
        for (seq, envelope) in &events {
            let _ = self.view().apply(*seq, envelope);
            let event = S::Event::from_envelope(envelope)?;
            state = state.evolve(&event);
        }
        Ok((state, position))
    }
}

/// Checks a command against a state without keeping the events: used to refuse bad input before
/// any unique key is reserved.
pub(crate) trait DecideChecked: Aggregate
where
    Self::Command: Clone,
{
    fn decide_checked(&self, command: &Self::Command) -> Result<()> {
        self.decide(command.clone()).map(|_| ()).map_err(Error::from)
    }
}

impl<S: Aggregate> DecideChecked for S where S::Command: Clone {}
