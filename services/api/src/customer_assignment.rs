//! The routes devices, assets and dashboards share as entities a tenant assigns to customers:
//! read one (plain and as an info), delete it, list one customer's, assign and unassign.
//!
//! Each kind names its paths and renders its JSON in a [`RouteTable`]; [`routes`] builds the
//! routes over the platform's [`thinglake_platform::customer_assignment`] use cases.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thinglake_domain::CustomerId;
use thinglake_platform::Principal;
use thinglake_platform::customer_assignment::Assignable;

use crate::ApiState;
use crate::error::Result;
use crate::extract::{Auth, Query, parse_id};

/// A kind of entity with customer-assignment routes.
pub(crate) trait AssignableResource: Assignable {
    const ROUTES: RouteTable<Self>;
    /// The query parameters of the kind's lists (paging, filters).
    type ListParams: DeserializeOwned + Send + 'static;

    /// One page of the caller's entities (of `customer`, if given) as `render` shows them.
    fn page(
        state: &ApiState,
        p: &Principal,
        customer: Option<CustomerId>,
        params: &Self::ListParams,
        render: Render<Self>,
    ) -> Result<axum::Json<Value>>;
}

/// How a kind's entity is shown: ThingsBoard's JSON of it.
pub(crate) type Render<K> = fn(&<K as Assignable>::View) -> Value;

/// Where a kind's customer-assignment routes are, and how they render its entities.
pub(crate) struct RouteTable<K: Assignable> {
    /// The id's name in a bad-request answer, `deviceId`.
    pub(crate) id_param: &'static str,
    pub(crate) json: Render<K>,
    /// The entity with the names of what it refers to.
    pub(crate) info_json: Render<K>,
    /// Read and delete one: `/api/device/{id}`.
    pub(crate) entity: &'static str,
    /// Read one as an info: `/api/device/info/{id}`.
    pub(crate) info: &'static str,
    /// One customer's entities, each path with its rendering: `/api/customer/{customer_id}/devices`.
    pub(crate) customer_lists: &'static [(&'static str, Render<K>)],
    /// `POST` assigns: `/api/customer/{customer_id}/device/{id}`.
    pub(crate) assign: &'static str,
    /// `DELETE` unassigns, from `{customer_id}` when the path names one: `/api/customer/device/{id}`.
    pub(crate) unassign: &'static str,
}

/// The customer-assignment routes of `K`.
pub(crate) fn routes<K: AssignableResource>() -> Router<ApiState> {
    let table = &K::ROUTES;
    let mut router = Router::new()
        .route(table.entity, get(get_entity::<K>).delete(delete_entity::<K>))
        .route(table.info, get(get_info::<K>))
        .route(table.assign, post(assign::<K>))
        .route(table.unassign, delete(unassign::<K>));
    for &(path, render) in table.customer_lists {
        router = router.route(
            path,
            get(move |State(s): State<ApiState>, Auth(p): Auth, Path(c): Path<String>, Query(q): Query<K::ListParams>| async move {
                let customer = CustomerId(parse_id(&c, "customerId")?);
                K::page(&s, &p, Some(customer), &q, render)
            }),
        );
    }
    router
}

/// The path of an unassignment: the entity's id, and the customer's when the kind names it.
#[derive(Debug, Deserialize)]
struct UnassignPath {
    customer_id: Option<String>,
    id: String,
}

fn id_of<K: AssignableResource>(raw: &str) -> Result<K::Id> {
    Ok(K::Id::from(parse_id(raw, K::ROUTES.id_param)?))
}

async fn get_entity<K: AssignableResource>(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let view = state.platform.entity::<K>(&p, id_of::<K>(&id)?)?;
    Ok(axum::Json((K::ROUTES.json)(&view)))
}

async fn get_info<K: AssignableResource>(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let view = state.platform.entity::<K>(&p, id_of::<K>(&id)?)?;
    Ok(axum::Json((K::ROUTES.info_json)(&view)))
}

async fn delete_entity<K: AssignableResource>(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    state.platform.delete_entity::<K>(&p, id_of::<K>(&id)?).await?;
    Ok(())
}

async fn assign<K: AssignableResource>(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((customer_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let customer = CustomerId(parse_id(&customer_id, "customerId")?);
    let view = state.platform.assign::<K>(&p, customer, id_of::<K>(&id)?).await?;
    Ok(axum::Json((K::ROUTES.json)(&view)))
}

async fn unassign<K: AssignableResource>(State(state): State<ApiState>, Auth(p): Auth, Path(path): Path<UnassignPath>) -> Result<axum::Json<Value>> {
    let customer = path.customer_id.map(|c| parse_id(&c, "customerId").map(CustomerId)).transpose()?;
    let view = state.platform.unassign::<K>(&p, customer, id_of::<K>(&path.id)?).await?;
    Ok(axum::Json((K::ROUTES.json)(&view)))
}
