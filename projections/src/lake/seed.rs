//! Seeding the latest values from the lake after the telemetry stream was trimmed.
//!
//! The latest values ([`crate::latest`]) are rebuilt at start by replaying the telemetry stream.
//! Retention ([`crate::lake::retention`]) trims that stream, but only up to what every lake table
//! reading it has committed; so whatever was trimmed is in the `telemetry` and
//! `attribute_versions` tables. [`seed_latest_values`] reads, from those tables, the latest point
//! per (tenant, entity, key) and the last change per (tenant, entity, scope, key) among the rows of messages
//! before the stream's first sequence, each with the stream sequence it came from, and marks the
//! sequence before the first as seen: following the stream then starts at its first sequence,
//! and a newer message wins by the same (ts, seq) and seq ordering as when nothing was trimmed. A
//! deletion in `attribute_versions` seeds a tombstone, so a deleted attribute stays deleted.

use std::time::Instant;

use deltalake_core::arrow::array::{Array, AsArray, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use deltalake_core::arrow::datatypes::{Float64Type, Int64Type};
use deltalake_core::kernel::LogicalFileView;
use thinglake_domain::telemetry::{AttributeScope, KvValue};
use thinglake_domain::{EntityId, EntityType, TenantEntityId, TenantId, UnknownEntityType};
use thinglake_infra::telemetry_store::TelemetryStore;
use thinglake_lake::scan::read_file;
use thinglake_lake::table::{LAKE_ATTRIBUTE_VERSIONS, LAKE_TELEMETRY};
use thinglake_lake::{LakeError, LakeLocation};
use tracing::info;
use uuid::Uuid;

use crate::error::{BoxError, ProjectionError, Result};
use crate::latest::LatestValues;

/// What a seeding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// The stream's first sequence: rows of messages before it were seeded (1 or less: the
    /// stream was never trimmed and nothing was read).
    pub first_seq: u64,
    /// `telemetry` rows read below the first sequence.
    pub points: u64,
    /// `attribute_versions` rows read below the first sequence.
    pub attribute_changes: u64,
}

/// Seeds `latest` from the lake with everything before the telemetry stream's first sequence
/// and marks that part of the stream as seen; call it before [`crate::latest::start`].
///
/// The first sequence is read before the tables, so the tables' snapshots hold every message
/// before it (a trim never passes what they committed). Should a trim move the first sequence
/// while the tables are read, the seeding runs again up to the new one.
pub async fn seed_latest_values(location: &LakeLocation, store: &TelemetryStore, latest: &LatestValues) -> Result<SeedReport> {
    let started = Instant::now();
    let first_sequence = async || {
        store.first_sequence().await.map_err(ProjectionError::log("latest values"))
    };
    let mut report = SeedReport { first_seq: first_sequence().await?, ..SeedReport::default() };
    loop {
        if report.first_seq <= 1 {
            return Ok(report);
        }
        report.points = seed_points(location, latest, report.first_seq).await?;
        report.attribute_changes = seed_attributes(location, latest, report.first_seq).await?;
        latest.mark_seen(report.first_seq - 1);
        let now = first_sequence().await?;
        if now <= report.first_seq {
            break;
        }
        report.first_seq = now;
    }
    info!(
        first_seq = report.first_seq,
        points = report.points,
        attribute_changes = report.attribute_changes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "latest values seeded from the lake for the trimmed part of the telemetry stream"
    );
    Ok(report)
}

/// The current data files of `table` (none when the table does not exist).
async fn files(location: &LakeLocation, table: &str) -> Result<Option<(deltalake_core::DeltaTable, Vec<LogicalFileView>)>> {
    let Some(delta) = location.open(table).await? else { return Ok(None) };
    let files = delta.snapshot().map_err(LakeError::delta(table))?.log_data().iter().collect();
    Ok(Some((delta, files)))
}

fn column<'a>(batch: &'a RecordBatch, table: &str, name: &'static str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| ProjectionError::ColumnMissing { table: table.to_string(), column: name })
}

/// A value of `table`'s `column` that does not parse.
fn bad_value(table: &str, column: &'static str, value: &str, source: impl Into<BoxError>) -> ProjectionError {
    ProjectionError::BadValue { table: table.to_string(), column, value: value.to_string(), source: source.into() }
}

/// The typed value columns of a batch (ThingsBoard's `ts_kv` layout: one is set per row).
struct Values<'a> {
    table: &'a str,
    bool_v: &'a BooleanArray,
    long_v: &'a PrimitiveArray<Int64Type>,
    dbl_v: &'a PrimitiveArray<Float64Type>,
    str_v: &'a StringArray,
    json_v: &'a StringArray,
}

impl<'a> Values<'a> {
    fn of(batch: &'a RecordBatch, table: &'a str) -> Result<Self> {
        Ok(Self {
            table,
            bool_v: column(batch, table, "bool_v")?.as_boolean(),
            long_v: column(batch, table, "long_v")?.as_primitive::<Int64Type>(),
            dbl_v: column(batch, table, "dbl_v")?.as_primitive::<Float64Type>(),
            str_v: column(batch, table, "str_v")?.as_string::<i32>(),
            json_v: column(batch, table, "json_v")?.as_string::<i32>(),
        })
    }

    /// The row's value (`None`: no value column is set).
    fn at(&self, row: usize) -> Result<Option<KvValue>> {
        Ok(if self.bool_v.is_valid(row) {
            Some(KvValue::Bool(self.bool_v.value(row)))
        } else if self.long_v.is_valid(row) {
            Some(KvValue::Long(self.long_v.value(row)))
        } else if self.dbl_v.is_valid(row) {
            Some(KvValue::Double(self.dbl_v.value(row)))
        } else if self.str_v.is_valid(row) {
            Some(KvValue::String(self.str_v.value(row).to_string()))
        } else if self.json_v.is_valid(row) {
            let json = serde_json::from_str(self.json_v.value(row))
                .map_err(|e| bad_value(self.table, "json_v", self.json_v.value(row), e))?;
            Some(KvValue::Json(json))
        } else {
            None
        })
    }
}

/// The tenant, entity type and entity id columns of a batch: what a row's values belong to.
struct Owners<'a> {
    table: &'a str,
    tenants: &'a StringArray,
    types: &'a StringArray,
    ids: &'a StringArray,
}

impl<'a> Owners<'a> {
    fn of(batch: &'a RecordBatch, table: &'a str) -> Result<Self> {
        Ok(Self {
            table,
            tenants: column(batch, table, "tenant_id")?.as_string::<i32>(),
            types: column(batch, table, "entity_type")?.as_string::<i32>(),
            ids: column(batch, table, "entity_id")?.as_string::<i32>(),
        })
    }

    fn at(&self, row: usize) -> Result<TenantEntityId> {
        let uuid = |column: &'static str, values: &StringArray| {
            Uuid::parse_str(values.value(row)).map_err(|e| bad_value(self.table, column, values.value(row), e))
        };
        let entity_type: EntityType = self
            .types
            .value(row)
            .parse()
            .map_err(|e: UnknownEntityType| bad_value(self.table, "entity_type", self.types.value(row), e))?;
        Ok(TenantEntityId::new(TenantId(uuid("tenant_id", self.tenants)?), EntityId::new(entity_type, uuid("entity_id", self.ids)?)))
    }
}

/// Calls `seed` with each batch of `table`'s current files and the rows of it (with their
/// sequence) below `first_seq`; returns the sum of what `seed` counted.
async fn seed_rows_below(
    location: &LakeLocation,
    table: &str,
    first_seq: u64,
    mut seed: impl FnMut(&RecordBatch, &[(usize, u64)]) -> Result<u64>,
) -> Result<u64> {
    let Some((delta, files)) = files(location, table).await? else { return Ok(0) };
    let mut seeded = 0;
    for file in &files {
        for batch in read_file(&delta, table, file).await? {
            let seqs = column(&batch, table, "seq")?.as_primitive::<Int64Type>();
            let rows: Vec<(usize, u64)> = (0..batch.num_rows())
                .map(|row| (row, u64::try_from(seqs.value(row)).unwrap_or(0)))
                .filter(|(_, seq)| *seq < first_seq)
                .collect();
            seeded += seed(&batch, &rows)?;
        }
    }
    Ok(seeded)
}

/// Seeds the latest point of every (entity, key) from `telemetry` rows below `first_seq`.
async fn seed_points(location: &LakeLocation, latest: &LatestValues, first_seq: u64) -> Result<u64> {
    let table = LAKE_TELEMETRY;
    seed_rows_below(location, table, first_seq, |batch, rows| {
        let owners = Owners::of(batch, table)?;
        let keys = column(batch, table, "key")?.as_string::<i32>();
        let ts = column(batch, table, "ts")?.as_primitive::<Int64Type>();
        let values = Values::of(batch, table)?;
        let mut seeded = 0;
        for &(row, seq) in rows {
            let Some(value) = values.at(row)? else { continue };
            latest.seed_point(owners.at(row)?, keys.value(row), ts.value(row), value, seq);
            seeded += 1;
        }
        Ok(seeded)
    })
    .await
}

/// Seeds the current value (or deletion) of every (entity, scope, key) from `attribute_versions`
/// rows below `first_seq`.
async fn seed_attributes(location: &LakeLocation, latest: &LatestValues, first_seq: u64) -> Result<u64> {
    let table = LAKE_ATTRIBUTE_VERSIONS;
    seed_rows_below(location, table, first_seq, |batch, rows| {
        let owners = Owners::of(batch, table)?;
        let scopes = column(batch, table, "scope")?.as_string::<i32>();
        let keys = column(batch, table, "key")?.as_string::<i32>();
        let updated = column(batch, table, "last_update_ts")?.as_primitive::<Int64Type>();
        let deleted = column(batch, table, "deleted")?.as_boolean();
        let values = Values::of(batch, table)?;
        let mut seeded = 0;
        for &(row, seq) in rows {
            let scope: AttributeScope =
                scopes.value(row).parse().map_err(|e| bad_value(table, "scope", scopes.value(row), e))?;
            let value = if deleted.value(row) {
                None
            } else {
                // A set without a value cannot be written; skipped rather than read as a deletion.
                let Some(value) = values.at(row)? else { continue };
                Some((value, updated.value(row)))
            };
            latest.seed_attribute(owners.at(row)?, scope, keys.value(row), value, seq);
            seeded += 1;
        }
        Ok(seeded)
    })
    .await
}
