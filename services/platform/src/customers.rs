//! Customer use cases: save (title unique within the tenant), read, list, and delete, which — as
//! in ThingsBoard — unassigns the customer's devices and assets and deletes its users.
//!
//! Also home of [`Platform::live_for_write`], reading a live entity the caller may change.


use thinglake_domain::asset::Asset;
use thinglake_domain::customer::{Customer, CustomerCommand, CustomerFields, CustomerState};
use thinglake_domain::device::Device;
use thinglake_domain::user::UserCommand;
use thinglake_domain::{CustomerId, DomainError, EntityType, Lifecycle, TenantId};
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::quotas::LimitedEntity;
use crate::execute::{DecideChecked, Outcome};
use crate::uniqueness::{NameClaim, OwnerState, owner_state};
use crate::users::users;
use crate::{Platform, Principal};

/// A customer as the API shows it.
#[derive(Debug, Clone)]
pub struct CustomerView {
    pub customer: Customer,
    pub version: u64,
}

/// What a save of a customer carries.
#[derive(Debug, Clone)]
pub struct CustomerInput {
    /// Present to update an existing customer.
    pub id: Option<CustomerId>,
    pub fields: CustomerFields,
    /// The version the caller read; a stale one is refused.
    pub version: Option<u64>,
}

pub(crate) fn customers(e: &Entities) -> &Table<CustomerState> {
    &e.customers
}

impl Platform {
    /// The live entity `id` of `table`, if the caller may change it (`live` reads it out of its
    /// state, `tenant_of` tells whose it is).
    pub(crate) fn live_for_write<S, T: Clone>(
        &self,
        p: &Principal,
        table: fn(&Entities) -> &Table<S>,
        live: fn(&S) -> Option<&T>,
        entity_type: EntityType,
        id: Uuid,
        tenant_of: fn(&T) -> TenantId,
    ) -> Result<T> {
        let entities = self.view().read();
        let entity = table(&entities)
            .get(&id)
            .and_then(|v| live(&v.state))
            .ok_or_else(|| Error::not_found(entity_type, id))?;
        p.check_write(tenant_of(entity))?;
        Ok(entity.clone())
    }

    /// Creates a customer (no id) or updates one (with id), ThingsBoard's `POST /api/customer`:
    /// an id that names no customer of the caller is 404, never a customer created with that id.
    pub async fn save_customer(&self, p: &Principal, input: CustomerInput) -> Result<CustomerView> {
        let tenant = p.require_tenant_admin()?;
        match input.id {
            Some(id) => self.update_customer(p, id, input).await,
            None => self.create_customer(p, tenant, input).await,
        }
    }

    async fn create_customer(&self, p: &Principal, tenant: TenantId, input: CustomerInput) -> Result<CustomerView> {
        self.check_entity_limit(tenant, LimitedEntity::Customer)?;
        let id = CustomerId(Uuid::now_v7());
        let claim = title_claim(tenant, id, &input.fields.title);
        let command = CustomerCommand::CreateCustomer { id, tenant_id: tenant, fields: input.fields, now: self.now_ms() };
        // Validate before claiming, so bad input reserves nothing.
        CustomerState::Absent.decide_checked(&command)?;
        let actor = p.actor();
        let save = Box::pin(self.execute(tenant.0, id.0, None, &actor, customers, |_| Ok(command.clone())));
        let outcome = self.save_claimed(Some(claim), save).await?;
        customer_view(outcome)
    }

    async fn update_customer(&self, p: &Principal, id: CustomerId, input: CustomerInput) -> Result<CustomerView> {
        let current = self.customer_for_write(p, id)?;
        let tenant = current.tenant_id;
        let fields = input.fields;
        let renamed = fields.title != current.fields.title;
        if renamed {
            CustomerState::Live(current.clone()).decide_checked(&CustomerCommand::UpdateCustomer { fields: fields.clone() })?;
        }
        let claim = renamed.then(|| title_claim(tenant, id, &fields.title));
        let actor = p.actor();
        let save = Box::pin(self.execute(tenant.0, id.0, input.version, &actor, customers, |_| {
            Ok(CustomerCommand::UpdateCustomer { fields: fields.clone() })
        }));
        let outcome = self.save_claimed(claim, save).await?;
        if renamed {
            self.release_key(&ClaimKey::customer_title(tenant.0, &current.fields.title), id.0).await;
        }
        customer_view(outcome)
    }

    /// A customer the caller may read: a tenant administrator any of the tenant's, a customer
    /// user its own.
    pub fn customer(&self, p: &Principal, id: CustomerId) -> Result<CustomerView> {
        let entities = self.view().read();
        let v = entities.customers.get(&id.0).ok_or_else(|| Error::not_found(EntityType::Customer, id.0))?;
        let customer = v.state.as_live().ok_or_else(|| Error::not_found(EntityType::Customer, id.0))?;
        p.check_read(customer.tenant_id, customer.id)?;
        Ok(CustomerView { customer: customer.clone(), version: v.position.version })
    }

    /// The tenant's customer with exactly this title (`GET /api/tenant/customers?customerTitle=`).
    pub fn customer_by_title(&self, p: &Principal, title: &str) -> Result<CustomerView> {
        let tenant = p.require_tenant_admin()?;
        let id = self
            .view()
            .read()
            .customers
            .values()
            .find_map(|v| v.state.as_live().filter(|c| c.tenant_id == tenant && c.fields.title == title).map(|c| c.id))
            .ok_or_else(|| Error::not_found(EntityType::Customer, Uuid::nil()))?;
        self.customer(p, id)
    }

    /// The tenant's customers, oldest first (tenant administrators only, as in ThingsBoard).
    pub fn customers(&self, p: &Principal) -> Result<Vec<CustomerView>> {
        let tenant = p.require_tenant_admin()?;
        let entities = self.view().read();
        let mut out: Vec<CustomerView> = entities
            .customers
            .values()
            .filter_map(|v| v.state.as_live().map(|c| (c, v.position.version)))
            .filter(|(c, _)| c.tenant_id == tenant)
            .map(|(c, version)| CustomerView { customer: c.clone(), version })
            .collect();
        out.sort_by_key(|v| (v.customer.created_time, v.customer.id));
        Ok(out)
    }

    /// Deletes a customer: its devices and assets become unassigned, its users are deleted, its
    /// relations removed and its title freed.
    pub async fn delete_customer(&self, p: &Principal, id: CustomerId) -> Result<()> {
        let customer = self.customer_for_write(p, id)?;
        let (devices, assets, customer_users) = {
            let e = self.view().read();
            let assigned = |c: CustomerId| c == id;
            let devices: Vec<_> =
                e.devices.values().filter_map(|v| v.state.as_live()).filter(|d| assigned(d.customer_id)).map(|d| d.id).collect();
            let assets: Vec<_> =
                e.assets.values().filter_map(|v| v.state.as_live()).filter(|a| assigned(a.customer_id)).map(|a| a.id).collect();
            let users: Vec<_> = e
                .users
                .values()
                .filter_map(|v| v.state.as_live())
                .filter(|u| u.tenant_id == customer.tenant_id && assigned(u.customer_id))
                .map(|u| (u.id, u.fields.email.clone()))
                .collect();
            (devices, assets, users)
        };
        for device in devices {
            self.unassign::<Device>(p, Some(id), device).await?;
        }
        for asset in assets {
            self.unassign::<Asset>(p, Some(id), asset).await?;
        }
        for (user, email) in customer_users {
            self.execute(customer.tenant_id.0, user.0, None, &p.actor(), users, |_| Ok(UserCommand::DeleteUser)).await?;
            self.release_key(&ClaimKey::user_email(&email), user.0).await;
        }
        self.execute(customer.tenant_id.0, id.0, None, &p.actor(), customers, |_| Ok(CustomerCommand::DeleteCustomer)).await?;
        self.release_key(&ClaimKey::customer_title(customer.tenant_id.0, &customer.fields.title), id.0).await;
        self.delete_relations_of(p, id.entity_id()).await
    }

    fn customer_for_write(&self, p: &Principal, id: CustomerId) -> Result<Customer> {
        self.live_for_write(p, customers, Lifecycle::as_live, EntityType::Customer, id.0, |c| c.tenant_id)
    }
}

fn title_claim(tenant: TenantId, id: CustomerId, title: &str) -> NameClaim<impl Fn(&Entities, Uuid) -> OwnerState + use<>> {
    let owned = title.to_string();
    NameClaim {
        key: ClaimKey::customer_title(tenant.0, title),
        owner: id.0,
        owner_state: owner_state(customers, move |c: &Customer| c.fields.title == owned),
        taken: DomainError::NameTaken { entity_type: EntityType::Customer, name: title.to_string() },
    }
}

fn customer_view(outcome: Outcome<CustomerState>) -> Result<CustomerView> {
    match outcome.state {
        Lifecycle::Live(customer) => Ok(CustomerView { customer, version: outcome.position.version }),
        _ => Err(Error::not_found(EntityType::Customer, Uuid::nil())),
    }
}
