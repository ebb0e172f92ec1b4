//! Test fixtures shared by the decoders' and the JSON scanner's tests: envelopes, payloads and
//! payload texts of every kind, random JSON values, and a payload of every entity event type.

use serde_json::{Value, json};
use thinglake_domain::DomainEvent as _;
use thinglake_domain::{Actor, EntityId, EntityType, EventEnvelope, TenantEntityId, TenantId};
use uuid::Uuid;

/// A device of the nil tenant.
pub(super) fn key(id: Uuid) -> TenantEntityId {
    TenantEntityId::new(TenantId(Uuid::nil()), EntityId::new(EntityType::Device, id))
}

pub(super) fn envelope_of(entity: Uuid, version: u64, event_type: &str, payload: Value) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7(),
        tenant_id: Uuid::from_u128(7),
        entity_type: EntityType::Device,
        entity_id: entity,
        version,
        event_type: event_type.to_string(),
        schema_version: 1,
        occurred_at: 1_700_000_000_000,
        recorded_at: 1_700_000_000_001,
        actor: Actor::user(Uuid::from_u128(9), "ann@example.com"),
        payload,
    }
}

pub(super) fn payloads() -> Vec<Value> {
    vec![
        json!({"name": "pump \"1\"", "type": "default", "label": null, "info": {"a": [1, 2.5, -0.0, 1e300]}}),
        json!({"label": "Ünïcødé \u{1F600} \n\t", "z": true, "a\"key\\": 12345678901234567i64}),
        json!({"name": "pump 2", "info": {"nested": {"deep": "x"}}}),
        json!("not an object"),
        json!({}),
        json!({"type": "other", "extra": 3.25}),
    ]
}

/// Payload texts not written as serde_json writes them: whitespace, other escapes, other
/// number forms.
pub(super) const IRREGULAR: [&str; 14] = [
    r#"{ "name": "spaced" }"#,
    r#"{"name" :"a","label":"b"}"#,
    r#"{"path":"a\/b"}"#,
    r#"{"name":"\u00e9t\u00C9"}"#,
    r#"{"c":"\u001F\u0008"}"#,
    r#"{"n":1.50}"#,
    r#"{"n":1E2}"#,
    r#"{"n":1e300}"#,
    r#"{"n":-0}"#,
    r#"{"n":123456789012345678901234567890}"#,
    r#"{"n":[1, 2]}"#,
    r#"{"\u0041":"escaped key"}"#,
    r#" {"lead":"space"}"#,
    r#"{"del":"\u007f"}"#,
];

/// Payload texts written as serde_json writes them, with every kind of value and escape.
pub(super) const REGULAR: [&str; 5] = [
    r#"{"k\"ey\\":"v\"\\\b\f\n\r\t\u0000\u001f","e":"","t":true,"f":false,"z":null}"#,
    r#"{"a":1,"a":2,"b":{"a":3},"b":null}"#,
    r#"{"n":[-1,0,1.5,-2.5e-10,1e+300,18446744073709551615,-9223372036854775808,[],{}],"o":{"a":{"b":[{"c":null}]}}}"#,
    r#"{"ünï":"cødé 😀","name":"pump 9"}"#,
    "{}",
];

/// Payload texts that are not objects (no fields), then texts that are not JSON at all.
pub(super) const NOT_OBJECTS: [&str; 11] =
    ["null", "[1,2]", r#""text""#, "12", "{\"a\":", "{\"a\":1}x", "", r#"{"a":"\ud800"}"#, r#"{"n":1e400}"#, "{\"a\"}", "nul"];

/// Every payload text of the tests, in an order that changes and adds fields.
pub(super) fn payload_texts() -> Vec<String> {
    let mut texts: Vec<String> = payloads().iter().map(Value::to_string).collect();
    texts.extend(IRREGULAR.iter().chain(&REGULAR).chain(&NOT_OBJECTS).map(|t| t.to_string()));
    texts
}

/// A fixed sequence of pseudo-random numbers below the bound asked (xorshift).
pub(super) fn random_numbers() -> impl FnMut(u64) -> u64 {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// A random JSON value: nulls, booleans, integers of every size, floats, strings with
/// escapes and unicode, arrays and objects up to four levels deep.
pub(super) fn random_value(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
    let strings = ["", "a", "é", "\"", "\\", "\n", "\u{1}", "\u{7f}", "😀", "key", "a b"];
    match next(if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(next(2) == 0),
        2 => json!(next(u64::MAX) as i64),
        3 => json!((next(2_000_001) as f64 - 1e6) / 8.0),
        4 => json!(next(u64::MAX)),
        5 => Value::String(strings[next(strings.len() as u64) as usize].repeat(next(3) as usize + 1)),
        6 => Value::Array((0..next(4)).map(|_| random_value(next, depth + 1)).collect()),
        _ => Value::Object(
            (0..next(5)).map(|i| (format!("{}{i}", strings[next(strings.len() as u64) as usize]), random_value(next, depth + 1))).collect(),
        ),
    }
}

/// (event type, payload) of every entity event type as the platform writes it (the typed
/// event encoded), with every optional field set and with none, nulls, unicode, escapes and
/// nested values.
pub(super) fn domain_payloads() -> Vec<(String, Value)> {
    use thinglake_domain::asset::{AssetEvent, AssetFields};
    use thinglake_domain::contact::Contact;
    use thinglake_domain::customer::{CustomerEvent, CustomerFields};
    use thinglake_domain::dashboard::{DashboardEvent, DashboardFields};
    use thinglake_domain::device::{DeviceCredentials, DeviceEvent, DeviceFields};
    use thinglake_domain::profile::{AssetProfileEvent, AssetProfileFields, DeviceProfileEvent, DeviceProfileFields, ProfileEvent};
    use thinglake_domain::tenant::{TenantEvent, TenantFields};
    use thinglake_domain::user::{Authority, UserEvent, UserFields};
    use thinglake_domain::{AssetId, AssetProfileId, CustomerId, DashboardId, DeviceId, DeviceProfileId, TenantId, UserId};

    let id = Uuid::from_u128;
    let text = |s: &str| Some(s.to_string());
    let info = json!({"description": "Ünïcødé 😀 \"quoted\" \\ \n\u{1}", "nested": {"list": [1, 2.5, -0.0, null, true], "empty": {}}});
    let contact = Contact {
        country: text("Deutschland"),
        city: text("Köln"),
        zip: text("50667"),
        phone: text("+49 221"),
        email: text("a@b.de"),
        ..Contact::default()
    };
    let device = DeviceFields {
        name: "pump ü \"1\"".to_string(),
        label: text("Label"),
        device_profile_id: DeviceProfileId(id(5)),
        additional_info: info.clone(),
        device_data: json!({"configuration": {"type": "DEFAULT"}}),
        firmware_id: Some(id(6)),
        software_id: None,
    };
    let device_min = DeviceFields {
        name: "pump 2".to_string(),
        label: None,
        device_profile_id: DeviceProfileId(id(5)),
        additional_info: Value::Null,
        device_data: Value::Null,
        firmware_id: None,
        software_id: None,
    };
    let asset = AssetFields { name: "hall\t1".to_string(), label: text(""), asset_profile_id: AssetProfileId(id(7)), additional_info: info.clone() };
    let asset_min = AssetFields { name: "hall 2".to_string(), label: None, asset_profile_id: AssetProfileId(id(7)), additional_info: Value::Null };
    let customer = CustomerFields { title: "Kunde ß".to_string(), contact: contact.clone(), additional_info: info.clone() };
    let customer_min = CustomerFields { title: "c".to_string(), contact: Contact::default(), additional_info: Value::Null };
    let tenant = TenantFields { title: "Mandant".to_string(), region: text("EU"), contact, additional_info: info.clone() };
    let tenant_min = TenantFields { title: "t".to_string(), region: None, contact: Contact::default(), additional_info: Value::Null };
    let user = UserFields {
        email: "ann@example.com".to_string(),
        first_name: text("Änn"),
        last_name: text("O'Brien"),
        phone: None,
        additional_info: info.clone(),
    };
    let user_min = UserFields { email: "bob@example.com".to_string(), first_name: None, last_name: None, phone: None, additional_info: Value::Null };
    let dashboard = DashboardFields {
        title: "Übersicht".to_string(),
        image: text("data:image/png;base64,AAAA"),
        mobile_hide: true,
        mobile_order: Some(-3),
        configuration: json!({"widgets": {"w1": {"config": {"datasources": [{"type": "entity"}]}}}, "timewindow": {"realtime": {"timewindowMs": 60000}}}),
    };
    let dashboard_min =
        DashboardFields { title: "d".to_string(), image: None, mobile_hide: false, mobile_order: None, configuration: Value::Null };
    let device_profile = DeviceProfileFields {
        name: "Thermostat".to_string(),
        description: text("ünï"),
        image: None,
        profile_type: "DEFAULT".to_string(),
        transport_type: "MQTT".to_string(),
        provision_type: "DISABLED".to_string(),
        provision_device_key: None,
        profile_data: json!({"alarms": [{"id": "a", "createRules": {"CRITICAL": {"condition": {"spec": {"type": "SIMPLE"}}}}}]}),
        default_rule_chain_id: Some(id(8)),
        default_dashboard_id: None,
        default_queue_name: text("Main"),
    };
    let asset_profile = AssetProfileFields {
        name: "Building".to_string(),
        description: None,
        image: None,
        default_rule_chain_id: None,
        default_dashboard_id: Some(id(9)),
        default_queue_name: None,
    };
    let credentials = DeviceCredentials { id: id(10), access_token: "tok\"en".to_string(), created_time: 1_700_000_000_000 };
    let (tenant_id, customer_id, t) = (TenantId(id(1)), CustomerId(id(2)), 1_700_000_000_123);
    let mut events = vec![
        DeviceEvent::DeviceCreated {
            id: DeviceId(id(3)),
            tenant_id,
            customer_id,
            fields: device.clone(),
            credentials,
            created_time: t,
        }
        .encode(),
        DeviceEvent::DeviceUpdated { fields: device_min }.encode(),
        DeviceEvent::DeviceUpdated { fields: device }.encode(),
        DeviceEvent::DeviceAssignedToCustomer { customer_id }.encode(),
        DeviceEvent::DeviceUnassignedFromCustomer { customer_id }.encode(),
        DeviceEvent::DeviceCredentialsUpdated { access_token: "ünï\u{0}".to_string() }.encode(),
        DeviceEvent::DeviceDeleted {}.encode(),
        AssetEvent::AssetCreated { id: AssetId(id(4)), tenant_id, customer_id, fields: asset_min.clone(), created_time: t }.encode(),
        AssetEvent::AssetUpdated { fields: asset }.encode(),
        AssetEvent::AssetUpdated { fields: asset_min }.encode(),
        AssetEvent::AssetAssignedToCustomer { customer_id }.encode(),
        AssetEvent::AssetUnassignedFromCustomer { customer_id }.encode(),
        AssetEvent::AssetDeleted {}.encode(),
        CustomerEvent::CustomerCreated { id: customer_id, tenant_id, fields: customer_min.clone(), created_time: t }.encode(),
        CustomerEvent::CustomerUpdated { fields: customer }.encode(),
        CustomerEvent::CustomerUpdated { fields: customer_min }.encode(),
        CustomerEvent::CustomerDeleted {}.encode(),
        TenantEvent::TenantCreated { id: tenant_id, fields: tenant.clone(), created_time: t }.encode(),
        TenantEvent::TenantUpdated { fields: tenant_min }.encode(),
        TenantEvent::TenantUpdated { fields: tenant }.encode(),
        TenantEvent::TenantDeleted {}.encode(),
        UserEvent::UserCreated {
            id: UserId(id(11)),
            tenant_id,
            customer_id,
            authority: Authority::TenantAdmin,
            fields: user_min.clone(),
            password_hash: None,
            activation_token_hash: text("hash"),
            created_time: t,
        }
        .encode(),
        UserEvent::UserUpdated { fields: user }.encode(),
        UserEvent::UserUpdated { fields: user_min }.encode(),
        UserEvent::UserActivationTokenIssued { token_hash: "h1".to_string(), expires_time: None }.encode(),
        UserEvent::UserActivated { password_hash: "$argon2id$v=19$m=19456".to_string() }.encode(),
        UserEvent::UserPasswordChanged { password_hash: "p2".to_string() }.encode(),
        UserEvent::UserDeleted {}.encode(),
        DashboardEvent::DashboardCreated { id: DashboardId(id(12)), tenant_id, fields: dashboard.clone(), created_time: t }.encode(),
        DashboardEvent::DashboardUpdated { fields: dashboard_min }.encode(),
        DashboardEvent::DashboardUpdated { fields: dashboard }.encode(),
        DashboardEvent::DashboardAssignedToCustomer { customer_id }.encode(),
        DashboardEvent::DashboardUnassignedFromCustomer { customer_id }.encode(),
        DashboardEvent::DashboardDeleted {}.encode(),
    ];
    events.extend([
        DeviceProfileEvent::created(id(13), tenant_id, device_profile.clone(), true, t).encode(),
        DeviceProfileEvent::updated(device_profile).encode(),
        DeviceProfileEvent::made_default().encode(),
        DeviceProfileEvent::default_cleared().encode(),
        DeviceProfileEvent::deleted().encode(),
        AssetProfileEvent::created(id(14), tenant_id, asset_profile.clone(), false, t).encode(),
        AssetProfileEvent::updated(asset_profile).encode(),
        AssetProfileEvent::made_default().encode(),
        AssetProfileEvent::default_cleared().encode(),
        AssetProfileEvent::deleted().encode(),
    ]);
    events
}
