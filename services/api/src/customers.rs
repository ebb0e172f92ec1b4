//! `/api/customer…`: ThingsBoard's customer endpoints.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::CustomerId;
use thinglake_domain::contact::Contact;
use thinglake_domain::customer::CustomerFields;
use thinglake_platform::customers::{CustomerInput, CustomerView};
use thinglake_queries::paginate;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, common_sort_key};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/customer", post(save_customer))
        .route("/api/customer/{id}", get(get_customer).delete(delete_customer))
        .route("/api/customers", get(list_customers))
        .route("/api/tenant/customers", get(customer_by_title))
}

/// The customer JSON of ThingsBoard.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerBody {
    id: Option<CustomerId>,
    title: Option<String>,
    #[serde(flatten)]
    contact: Contact,
    #[serde(default)]
    additional_info: Value,
    version: Option<u64>,
}

impl CustomerBody {
    fn into_input(self) -> Result<CustomerInput> {
        let title = self.title.ok_or_else(|| ApiError::invalid_argument("Customer title should be specified!"))?;
        Ok(CustomerInput {
            id: self.id,
            fields: CustomerFields { title, contact: self.contact, additional_info: self.additional_info },
            version: self.version,
        })
    }
}

fn customer_json(v: &CustomerView) -> Value {
    let c = &v.customer;
    let mut json = json!({
        "id": c.id,
        "createdTime": c.created_time,
        "tenantId": c.tenant_id,
        "title": c.fields.title,
        "name": c.fields.title,
        "additionalInfo": if c.fields.additional_info.is_null() { json!({}) } else { c.fields.additional_info.clone() },
        "isPublic": false,
        "externalId": null,
        "version": v.version,
    });
    if let (Value::Object(map), Ok(Value::Object(contact))) = (&mut json, serde_json::to_value(&c.fields.contact)) {
        map.extend(contact);
    }
    json
}

async fn save_customer(State(state): State<ApiState>, Auth(p): Auth, Json(body): Json<CustomerBody>) -> Result<axum::Json<Value>> {
    let view = state.platform.save_customer(&p, body.into_input()?).await?;
    Ok(axum::Json(customer_json(&view)))
}

async fn get_customer(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = CustomerId(parse_id(&id, "customerId")?);
    Ok(axum::Json(customer_json(&state.platform.customer(&p, id)?)))
}

async fn delete_customer(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    let id = CustomerId(parse_id(&id, "customerId")?);
    state.platform.delete_customer(&p, id).await?;
    Ok(())
}

async fn list_customers(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<PageParams>) -> Result<axum::Json<Value>> {
    let views = state.platform.customers(&p)?;
    let page = paginate(
        views,
        &params.link()?,
        |v| {
            let c = &v.customer.fields;
            vec![c.title.as_str(), c.contact.email.as_deref().unwrap_or(""), c.contact.city.as_deref().unwrap_or("")]
        },
        |v, prop| {
            let c = &v.customer;
            match prop {
                "email" => common_sort_key("name", 0, c.fields.contact.email.as_deref().unwrap_or(""), None, None),
                "country" | "city" => {
                    let value = if prop == "city" { &c.fields.contact.city } else { &c.fields.contact.country };
                    common_sort_key("name", 0, value.as_deref().unwrap_or(""), None, None)
                }
                _ => common_sort_key(prop, c.created_time, &c.fields.title, None, None),
            }
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| customer_json(&v))).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitleParams {
    customer_title: Option<String>,
}

async fn customer_by_title(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<TitleParams>) -> Result<axum::Json<Value>> {
    let title =
        params.customer_title.ok_or_else(|| ApiError::bad_request("Required request parameter 'customerTitle' is not present"))?;
    Ok(axum::Json(customer_json(&state.platform.customer_by_title(&p, &title)?)))
}
