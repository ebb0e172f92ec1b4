//! The `events` view over a Delta `events` table and its hot tail: rows counted once when tail
//! and table overlap, tenants apart, narrowed to some entities, only in sessions with the audit
//! trail, and no secret or credential of a payload ever shown.

use deltalake_core::arrow::array::RecordBatch;
use serde_json::json;
use thinglake_lake::partition::month_of;
use thinglake_lake::table::{RowBuilder, events};
use thinglake_queries::TenantViews;

use crate::engine::{Lake, commit_to, tenant};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";
const DEVICE_A1: &str = "00000000-0000-0000-0000-0000000000a1";
const DEVICE_A2: &str = "00000000-0000-0000-0000-0000000000a2";
const USER_A: &str = "00000000-0000-0000-0000-0000000000e1";
const DEVICE_B: &str = "00000000-0000-0000-0000-0000000000b1";
const T0: i64 = 1_700_000_000_000;

/// One event row at `seq` (its own version), recorded at `T0 + seq`.
fn event(b: &mut RowBuilder, tenant: &str, entity_type: &str, entity: &str, seq: i64, event_type: &str, payload: serde_json::Value) {
    let at = T0 + seq;
    b.str(Some(tenant)).str(Some(&month_of(at))).i64(Some(seq)).str(Some(&format!("00000000-0000-7000-8000-{seq:012}")));
    b.str(Some(entity_type)).str(Some(entity)).i64(Some(seq)).str(Some(event_type)).i32(Some(1)).i64(Some(at)).i64(Some(at));
    b.str(Some("user")).str(Some(USER_A)).str(Some("admin@a.io")).str(Some(&payload.to_string()));
    b.end_row();
}

fn batch(rows: &[(&str, &str, &str, i64, &str, serde_json::Value)]) -> RecordBatch {
    let mut b = RowBuilder::new(events().schema);
    for (tenant, entity_type, entity, seq, event_type, payload) in rows {
        event(&mut b, tenant, entity_type, entity, *seq, event_type, payload.clone());
    }
    b.finish().expect("valid batch")
}

#[tokio::test]
async fn events_are_the_tenants_own_counted_once_and_without_secrets() -> anyhow::Result<()> {
    let Lake { location, tail, engine, .. } = Lake::with_tail(&events())?;
    let committed = batch(&[
        (A, "DEVICE", DEVICE_A1, 1, "DeviceCreated", json!({"name": "a1"})),
        (B, "DEVICE", DEVICE_B, 2, "DeviceCreated", json!({"name": "b1"})),
        (A, "USER", USER_A, 3, "UserCreated", json!({"email": "u@a.io", "password_hash": "$argon2id$secret"})),
    ]);
    // Sequences 1..=3 committed while the tail still holds them, 4..=5 only in the tail.
    tail.push(3, committed.clone());
    commit_to(&location, &events(), vec![committed], 3).await?;
    tail.push(
        5,
        batch(&[
            (A, "DEVICE", DEVICE_A2, 4, "DeviceCreated", json!({"name": "a2", "credentials": {"accessToken": "A2_SECRET_TOKEN"}})),
            (A, "USER", USER_A, 5, "UserPasswordChanged", json!({"passwordHash": "$argon2id$new"})),
        ]),
    );

    let all = TenantViews { audit_trail: true, ..TenantViews::default() };
    let answer = engine.sql(tenant(A), "SELECT seq, entity_id, event_type, payload FROM events ORDER BY seq", all.clone()).await?;
    assert_eq!(answer.columns, vec!["seq", "entity_id", "event_type", "payload"]);
    assert_eq!(
        answer.rows,
        vec![
            vec![json!(1), json!(DEVICE_A1), json!("DeviceCreated"), json!(r#"{"name":"a1"}"#)],
            vec![json!(3), json!(USER_A), json!("UserCreated"), json!(r#"{"email":"u@a.io"}"#)],
            vec![json!(4), json!(DEVICE_A2), json!("DeviceCreated"), json!(r#"{"credentials":{},"name":"a2"}"#)],
            vec![json!(5), json!(USER_A), json!("UserPasswordChanged"), json!("{}")],
        ]
    );
    // No way around the redaction: the secret is in no column, whatever the query asks.
    for secret in ["argon2id", "SECRET_TOKEN"] {
        let leak = engine.sql(tenant(A), &format!("SELECT count(*) FROM events WHERE payload LIKE '%{secret}%'"), all.clone()).await?;
        assert_eq!(leak.rows, vec![vec![json!(0)]], "{secret}");
    }
    // Only a session with the audit trail has the view (customer users' have not).
    let hidden = engine.sql(tenant(A), "SELECT count(*) FROM events", TenantViews::default()).await.expect_err("no events view");
    assert!(hidden.to_string().contains("events"), "{hidden}");
    let theirs = engine.sql(tenant(B), "SELECT tenant_id, entity_id FROM events", all.clone()).await?;
    assert_eq!(theirs.rows, vec![vec![json!(B), json!(DEVICE_B)]]);

    // A customer user's session: only the entities it may see, in the table and in the tail.
    let narrowed = TenantViews { visible_entities: Some(vec![DEVICE_A1.into(), DEVICE_A2.into()]), ..all.clone() };
    let mine = engine.sql(tenant(A), "SELECT entity_id FROM events ORDER BY seq", narrowed.clone()).await?;
    assert_eq!(mine.rows, vec![vec![json!(DEVICE_A1)], vec![json!(DEVICE_A2)]]);
    let none = engine.sql(tenant(A), &format!("SELECT count(*) FROM events WHERE entity_id = '{USER_A}'"), narrowed).await?;
    assert_eq!(none.rows, vec![vec![json!(0)]]);

    // The auditor's functions: what each event changed, and the state as of a time.
    tail.push(6, batch(&[(A, "DEVICE", DEVICE_A1, 6, "DeviceUpdated", json!({"name": "a1 renamed", "label": "x"}))]));
    let changes = engine
        .sql(
            tenant(A),
            &format!(
                "SELECT version, json_changes(array_agg(payload) OVER (PARTITION BY entity_id ORDER BY version \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), payload) FROM events \
                 WHERE entity_id = '{DEVICE_A1}' ORDER BY version"
            ),
            all.clone(),
        )
        .await?;
    let parsed: Vec<(serde_json::Value, serde_json::Value)> = changes
        .rows
        .iter()
        .map(|r| (r[0].clone(), serde_json::from_str(r[1].as_str().expect("text")).expect("JSON")))
        .collect();
    assert_eq!(
        parsed,
        vec![
            (json!(1), json!({"name": {"from": null, "to": "a1"}})),
            (json!(6), json!({"name": {"from": "a1", "to": "a1 renamed"}, "label": {"from": null, "to": "x"}})),
        ]
    );
    let as_of = |ts: i64| {
        format!("SELECT max(version), json_fold(array_agg(payload ORDER BY version)) FROM events WHERE entity_id = '{DEVICE_A1}' AND recorded_at <= {ts}")
    };
    let before = engine.sql(tenant(A), &as_of(T0 + 5), all.clone()).await?;
    assert_eq!(before.rows, vec![vec![json!(1), json!(r#"{"name":"a1"}"#)]]);
    let after = engine.sql(tenant(A), &as_of(T0 + 6), all.clone()).await?;
    assert_eq!(after.rows, vec![vec![json!(6), json!(r#"{"label":"x","name":"a1 renamed"}"#)]]);
    let wrong = engine.sql(tenant(A), "SELECT json_fold(payload) FROM events", all.clone()).await.expect_err("not a list");
    assert!(wrong.to_string().contains("list of payloads"), "{wrong}");
    Ok(())
}
