//! `/api/dashboard…`: ThingsBoard's dashboard endpoints. Lists answer dashboard infos (the
//! dashboard without its `configuration`), as ThingsBoard does.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::dashboard::Dashboard;
use thinglake_domain::{CustomerId, DashboardId};
use thinglake_platform::Principal;
use thinglake_platform::dashboards::{DashboardInput, DashboardView};
use thinglake_queries::{SortKey, paginate};

use crate::ApiState;
use crate::customer_assignment::{self, AssignableResource, Render, RouteTable};
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query};
use crate::page::{PageParams, common_sort_key};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/dashboard", post(save_dashboard))
        .route("/api/tenant/dashboards", get(tenant_dashboards))
        .merge(customer_assignment::routes::<Dashboard>())
}

/// A dashboard may be assigned to several customers, so its unassignment names the customer.
impl AssignableResource for Dashboard {
    const ROUTES: RouteTable<Dashboard> = RouteTable {
        id_param: "dashboardId",
        json: dashboard_json,
        info_json: dashboard_info_json,
        entity: "/api/dashboard/{id}",
        info: "/api/dashboard/info/{id}",
        customer_lists: &[("/api/customer/{customer_id}/dashboards", dashboard_info_json)],
        assign: "/api/customer/{customer_id}/dashboard/{id}",
        unassign: "/api/customer/{customer_id}/dashboard/{id}",
    };
    type ListParams = PageParams;

    fn page(
        state: &ApiState,
        p: &Principal,
        customer: Option<CustomerId>,
        params: &PageParams,
        render: Render<Dashboard>,
    ) -> Result<axum::Json<Value>> {
        let views = state.platform.entities::<Dashboard>(p, customer)?;
        let page = paginate(
            views,
            &params.link()?,
            |v| vec![v.dashboard.fields.title.as_str()],
            |v, prop| match prop {
                "title" => Some(SortKey::Text(v.dashboard.fields.title.to_lowercase())),
                _ => common_sort_key(prop, v.dashboard.created_time, &v.dashboard.fields.title, None, None),
            },
        )?;
        Ok(axum::Json(serde_json::to_value(page.map(|v| render(&v))).unwrap_or_default()))
    }
}

/// The dashboard JSON of ThingsBoard.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DashboardBody {
    id: Option<DashboardId>,
    title: Option<String>,
    image: Option<String>,
    #[serde(default)]
    mobile_hide: bool,
    mobile_order: Option<i64>,
    #[serde(default)]
    configuration: Value,
    version: Option<u64>,
}

impl DashboardBody {
    fn into_input(self) -> Result<DashboardInput> {
        let title = self.title.ok_or_else(|| ApiError::invalid_argument("Dashboard title should be specified!"))?;
        Ok(DashboardInput {
            id: self.id,
            title,
            image: self.image,
            mobile_hide: self.mobile_hide,
            mobile_order: self.mobile_order,
            configuration: self.configuration,
            version: self.version,
        })
    }
}

/// ThingsBoard's dashboard info: everything but the configuration.
fn dashboard_info_json(v: &DashboardView) -> Value {
    let d = &v.dashboard;
    let assigned: Vec<Value> = v
        .assigned_customers
        .iter()
        .map(|(id, title)| json!({"customerId": id, "title": title, "public": false}))
        .collect();
    json!({
        "id": d.id,
        "createdTime": d.created_time,
        "tenantId": d.tenant_id,
        "title": d.fields.title,
        "name": d.fields.title,
        "image": d.fields.image,
        "mobileHide": d.fields.mobile_hide,
        "mobileOrder": d.fields.mobile_order,
        "assignedCustomers": assigned,
        "externalId": null,
        "version": v.version,
    })
}

fn dashboard_json(v: &DashboardView) -> Value {
    let mut json = dashboard_info_json(v);
    if let Value::Object(map) = &mut json {
        let configuration = &v.dashboard.fields.configuration;
        map.insert("configuration".into(), if configuration.is_null() { json!({}) } else { configuration.clone() });
        map.insert("resources".into(), Value::Null);
    }
    json
}

async fn save_dashboard(State(state): State<ApiState>, Auth(p): Auth, Json(body): Json<DashboardBody>) -> Result<axum::Json<Value>> {
    let view = state.platform.save_dashboard(&p, body.into_input()?).await?;
    Ok(axum::Json(dashboard_json(&view)))
}

async fn tenant_dashboards(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<PageParams>) -> Result<axum::Json<Value>> {
    Dashboard::page(&state, &p, None, &params, dashboard_info_json)
}
