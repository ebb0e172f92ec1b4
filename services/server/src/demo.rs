//! Demo mode (`--demo`): on start, the tenant "Demo" with its administrator
//! `tenant@thinglake.local` / `tenant`, three devices and a dashboard showing them are created if
//! absent (so a restart duplicates nothing), and the devices publish simulated telemetry through
//! the platform's publish API, one message each per second, until shutdown.

use std::time::Duration;

use serde_json::{Value, json};
use thinglake_domain::contact::Contact;
use thinglake_domain::dashboard::Dashboard;
use thinglake_domain::device::Device;
use thinglake_domain::tenant::TenantFields;
use thinglake_domain::user::{Authority, normalize_email};
use thinglake_domain::{CustomerId, TenantId, UserId};
use thinglake_platform::dashboards::DashboardInput;
use thinglake_platform::devices::DeviceInput;
use thinglake_platform::tenants::TenantInput;
use thinglake_platform::users::UserInput;
use thinglake_platform::{Error, Platform, Principal, Result, now_ms};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub const DEMO_TENANT: &str = "Demo";
pub const DEMO_ADMIN_EMAIL: &str = "tenant@thinglake.local";
pub const DEMO_ADMIN_PASSWORD: &str = "tenant";
pub const DEMO_DASHBOARD: &str = "Demo: thermometers and tracker";

/// How often each simulated device publishes.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The demo devices: name and type (device profile).
const DEVICES: [(&str, &str); 3] = [("Thermometer A", "thermometer"), ("Thermometer B", "thermometer"), ("Tracker", "tracker")];

/// Creates whatever of the demo is missing and returns its devices.
pub(crate) async fn prepare(platform: &Platform, sysadmin_email: &str) -> Result<Vec<Device>> {
    let sys = principal_of(platform, sysadmin_email)?;
    let tenant = match platform.tenants(&sys)?.into_iter().find(|t| t.tenant.fields.title == DEMO_TENANT) {
        Some(t) => t.tenant.id,
        None => {
            let fields =
                TenantFields { title: DEMO_TENANT.into(), region: None, contact: Contact::default(), additional_info: Value::Null };
            let created = platform.save_tenant(&sys, TenantInput { id: None, fields, version: None }).await?;
            info!(tenant = %created.tenant.id, "demo tenant created");
            created.tenant.id
        }
    };
    let admin = demo_admin(platform, &sys, tenant).await?;
    let mut devices = Vec::new();
    for (name, kind) in DEVICES {
        let device = match platform.device_by_name(&admin, name) {
            Ok(v) => v.device,
            Err(Error::NotFound { .. }) => {
                let input = DeviceInput { name: name.into(), device_type: Some(kind.into()), ..DeviceInput::default() };
                platform.save_device(&admin, input, None).await?.device
            }
            Err(e) => return Err(e),
        };
        devices.push(device);
    }
    if !platform.entities::<Dashboard>(&admin, None)?.iter().any(|d| d.dashboard.fields.title == DEMO_DASHBOARD) {
        let input = DashboardInput {
            title: DEMO_DASHBOARD.into(),
            configuration: dashboard_configuration(&devices),
            ..DashboardInput::default()
        };
        platform.save_dashboard(&admin, input).await?;
        info!("demo dashboard created");
    }
    Ok(devices)
}

/// The demo tenant's administrator, created and activated if absent.
async fn demo_admin(platform: &Platform, sys: &Principal, tenant: TenantId) -> Result<Principal> {
    let existing = user_of(platform, DEMO_ADMIN_EMAIL);
    let (id, activated) = match existing {
        Some((id, activated)) => (id, activated),
        None => {
            let input = UserInput {
                email: DEMO_ADMIN_EMAIL.into(),
                authority: Some(Authority::TenantAdmin),
                tenant_id: Some(tenant),
                id: None,
                customer_id: None,
                first_name: Some("Demo".into()),
                last_name: Some("Administrator".into()),
                phone: None,
                additional_info: Value::Null,
                version: None,
            };
            (platform.save_user(sys, input).await?.user.id, false)
        }
    };
    if !activated {
        let link = platform.activation_link(sys, id).await?;
        let token = link.rsplit("activateToken=").next().unwrap_or_default();
        // ThingsBoard's well-known demo password, shorter than the policy asks of users.
        platform.activate_user_with_platform_password(token, DEMO_ADMIN_PASSWORD).await?;
        info!(email = DEMO_ADMIN_EMAIL, "demo tenant administrator created");
    }
    Ok(Principal {
        user_id: id,
        email: DEMO_ADMIN_EMAIL.into(),
        authority: Authority::TenantAdmin,
        tenant_id: tenant,
        customer_id: CustomerId::NULL,
        token_version: 0,
    })
}

/// A user's id and whether it is activated.
fn user_of(platform: &Platform, email: &str) -> Option<(UserId, bool)> {
    let entities = platform.view().read();
    let id = entities.user_by_email.get(&normalize_email(email))?;
    let user = entities.users.get(id)?.state.as_live()?;
    Some((user.id, user.is_activated()))
}

/// The system administrator acting for the demo setup.
fn principal_of(platform: &Platform, email: &str) -> Result<Principal> {
    let entities = platform.view().read();
    let user = entities
        .user_by_email
        .get(&normalize_email(email))
        .and_then(|id| entities.users.get(id))
        .and_then(|v| v.state.as_live())
        .filter(|u| u.authority == Authority::SysAdmin)
        .ok_or(Error::Forbidden)?;
    Ok(Principal {
        user_id: user.id,
        email: user.fields.email.clone(),
        authority: Authority::SysAdmin,
        tenant_id: TenantId::SYSTEM,
        customer_id: CustomerId::NULL,
        token_version: user.token_version,
    })
}

/// The demo dashboard: a time-series chart, a latest-value card, a table and a map, each with
/// its data sources (entity, keys), its time window and aggregation, and its place on a 24-column
/// grid (`layout`).
fn dashboard_configuration(devices: &[Device]) -> Value {
    let source = |d: &Device, keys: &[&str]| json!({"entityId": d.id, "entityName": d.fields.name, "keys": keys});
    let (a, b, tracker) = (&devices[0], &devices[1], &devices[2]);
    let realtime = json!({"realtime": {"timewindowMs": 300_000}, "aggregation": {"type": "NONE", "limit": 1000}});
    json!({
        "description": "Simulated devices of the demo tenant",
        "timewindow": realtime,
        "widgets": [
            {
                "id": "temperature-chart",
                "type": "timeseries",
                "title": "Temperature",
                "datasources": [source(a, &["temperature"]), source(b, &["temperature"])],
                "timewindow": realtime,
                "layout": {"col": 0, "row": 0, "sizeX": 16, "sizeY": 8},
            },
            {
                "id": "humidity-card",
                "type": "latest",
                "title": "Humidity (Thermometer A)",
                "datasources": [source(a, &["humidity"])],
                "layout": {"col": 16, "row": 0, "sizeX": 8, "sizeY": 4},
            },
            {
                "id": "latest-table",
                "type": "table",
                "title": "Latest values",
                "datasources": [source(a, &["temperature", "humidity"]), source(b, &["temperature", "humidity"])],
                "layout": {"col": 16, "row": 4, "sizeX": 8, "sizeY": 4},
            },
            {
                "id": "tracker-map",
                "type": "map",
                "title": "Tracker",
                "datasources": [source(tracker, &["latitude", "longitude"])],
                "layout": {"col": 0, "row": 8, "sizeX": 24, "sizeY": 8},
            },
        ],
    })
}

/// Publishes simulated telemetry of the demo devices until `shutdown`.
pub(crate) async fn simulate(platform: Platform, devices: Vec<Device>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = now_ms() as f64 / 1000.0;
        for (i, device) in devices.iter().enumerate() {
            let payload = reading(i, t);
            if let Err(e) = platform.publish_telemetry_json(device, &payload).await {
                warn!(device = %device.fields.name, error = %e, "demo publish failed");
            }
        }
    }
}

/// Device `i`'s reading at `t` seconds: slow waves for the thermometers, a circle for the tracker.
fn reading(i: usize, t: f64) -> Value {
    let phase = i as f64 * 1.7;
    if i < 2 {
        let temperature = 21.0 + 3.0 * (t / 60.0 + phase).sin() + 0.3 * (t / 7.0).sin();
        let humidity = 45.0 + 10.0 * (t / 90.0 + phase).cos();
        json!({"temperature": round(temperature), "humidity": round(humidity)})
    } else {
        let angle = t / 120.0;
        json!({"latitude": 52.52 + 0.01 * angle.sin(), "longitude": 13.405 + 0.015 * angle.cos()})
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_carry_the_keys_the_dashboard_shows() {
        assert!(reading(0, 1.0)["temperature"].is_number() && reading(1, 1.0)["humidity"].is_number());
        assert!(reading(2, 1.0)["latitude"].is_number() && reading(2, 1.0)["longitude"].is_number());
    }
}
