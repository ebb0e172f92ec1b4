//! The lake's tables: names, Arrow schemas and partitioning (documented in `docs/lake.md`), and
//! a row builder that fills a table's columns in schema order.

use std::sync::Arc;

use deltalake_core::arrow::array::{
    ArrayBuilder, ArrayRef, AsArray as _, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, make_builder,
};
use deltalake_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::arrow::error::ArrowError;

use crate::rollup;

/// The lake's tables. Each is written by the lake projection of the same name, which also names
/// its durable JetStream consumer (`lake_<name>`) and is the Delta `txn` application id of its
/// commits.
pub const LAKE_TELEMETRY: &str = "telemetry";
pub const LAKE_EVENTS: &str = "events";
pub const LAKE_ENTITY_VERSIONS: &str = "entity_versions";
pub const LAKE_ATTRIBUTE_VERSIONS: &str = "attribute_versions";
pub const LAKE_RELATION_VERSIONS: &str = "relation_versions";
/// Per entity, key and hour: counts, sums and extremes of the telemetry points.
pub const LAKE_TELEMETRY_HOURLY: &str = "telemetry_hourly";
/// Table of log messages a lake projection could not read (shared by every projection).
pub const LAKE_DEAD_LETTERS: &str = "dead_letters";

/// A table's name, schema and partition columns.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: &'static str,
    pub comment: &'static str,
    pub schema: SchemaRef,
    pub partition_columns: &'static [&'static str],
    /// For tables of partial aggregates: folds rows that belong together (applied to each decoded
    /// chunk, each committed batch and compacted files).
    pub merge: Option<MergeRows>,
    /// The order of the rows inside each data file (empty: arrival order). A sorted table is
    /// written in bounded row groups and pages with statistics, so that a reader skips the row
    /// groups and pages of other series (see `docs/lake.md`, *File layout*).
    pub sort_by: &'static [&'static str],
    /// Most rows of one data page of a sorted table: the page index's granularity, so about what
    /// a one-series query decodes beyond its own rows (see `docs/lake.md`, *File layout*).
    pub page_rows: usize,
    /// Columns written without a dictionary: their values rarely repeat, so Parquet's dictionary
    /// only grows until it gives up, and every read of any page of the column chunk first
    /// decompresses that dictionary page.
    pub plain_columns: &'static [&'static str],
}

impl TableSpec {
    /// The spec of the table named `name`, if it is one of [`all`].
    pub fn by_name(name: &str) -> Option<TableSpec> {
        all().into_iter().find(|spec| spec.name == name)
    }
}

/// Most rows of one data page of a sorted table unless its spec says otherwise
/// ([`TableSpec::page_rows`]): the page index's granularity. A small page costs a little
/// compression (each page starts its encodings afresh); a large one decodes more rows than a
/// one-series query needs.
pub const PAGE_ROWS: usize = 4 * 1024;

/// Folds a table's rows into fewer rows with the same meaning.
pub type MergeRows = fn(&[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError>;

fn col(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

fn spec(name: &'static str, comment: &'static str, fields: Vec<Field>, partition_columns: &'static [&'static str]) -> TableSpec {
    TableSpec {
        name,
        comment,
        schema: Arc::new(Schema::new(fields)),
        partition_columns,
        merge: None,
        sort_by: &[],
        page_rows: PAGE_ROWS,
        plain_columns: &[],
    }
}

/// The typed value columns of ThingsBoard's `ts_kv`; exactly one is set per row.
fn value_columns() -> Vec<Field> {
    vec![
        col("bool_v", DataType::Boolean, true),
        col("long_v", DataType::Int64, true),
        col("dbl_v", DataType::Float64, true),
        col("str_v", DataType::Utf8, true),
        col("json_v", DataType::Utf8, true),
    ]
}

/// One row per (entity, key, ts) time-series value.
pub fn telemetry() -> TableSpec {
    let mut fields = vec![
        col("tenant_id", DataType::Utf8, false),
        col("day", DataType::Date32, false),
        col("entity_type", DataType::Utf8, false),
        col("entity_id", DataType::Utf8, false),
        col("key", DataType::Utf8, false),
        col("ts", DataType::Int64, false),
    ];
    fields.extend(value_columns());
    fields.extend([col("received_at", DataType::Int64, false), col("seq", DataType::Int64, false)]);
    // Sorted by series, then time: a chart reads one series' pages of each day file, and
    // regular timestamps and slowly moving values of one series compress well side by side.
    TableSpec {
        sort_by: &["entity_id", "key", "ts"],
        ..spec(LAKE_TELEMETRY, "time-series values, typed like ThingsBoard's ts_kv", fields, &["tenant_id", "day"])
    }
}

/// Per entity, key and UTC hour: partial aggregates of the telemetry points, merged by
/// [`rollup::merge`] (several rows of one hour add up); their columns are the rollup's
/// ([`rollup::fields`]).
pub fn telemetry_hourly() -> TableSpec {
    let fields = rollup::fields();
    let mut spec = spec(
        LAKE_TELEMETRY_HOURLY,
        "per entity, key and hour: counts, sums, extremes of the time-series values",
        fields,
        &["tenant_id", "month"],
    );
    spec.merge = Some(rollup::merge);
    // As `telemetry`: a chart reads one series' row groups and pages. A series has 24 rows a day
    // here (one a point there), so a month of it is ~744 rows: pages of 1,024 rows, not 4,096,
    // decode and decompress about what a chart reads.
    spec.sort_by = &["entity_id", "key", "ts"];
    spec.page_rows = ROLLUP_PAGE_ROWS;
    // Sums and extremes of doubles hardly ever repeat: as dictionaries they were pages of up to
    // 224 kB per row group, decompressed by every chart before its few pages of values.
    spec.plain_columns = &["long_sum", "double_sum", "long_min", "long_max", "double_min", "double_max"];
    spec
}

/// Most rows of one data page of `telemetry_hourly`.
pub const ROLLUP_PAGE_ROWS: usize = 1024;

/// One row per entity event: the audit trail and the replay archive.
pub fn events() -> TableSpec {
    let fields = vec![
        col("tenant_id", DataType::Utf8, false),
        col("month", DataType::Utf8, false),
        col("seq", DataType::Int64, false),
        col("event_id", DataType::Utf8, false),
        col("entity_type", DataType::Utf8, false),
        col("entity_id", DataType::Utf8, false),
        col("version", DataType::Int64, false),
        col("event_type", DataType::Utf8, false),
        col("schema_version", DataType::Int32, false),
        col("occurred_at", DataType::Int64, false),
        col("recorded_at", DataType::Int64, false),
        col("actor_kind", DataType::Utf8, false),
        col("actor_id", DataType::Utf8, true),
        col("actor_name", DataType::Utf8, true),
        col("payload", DataType::Utf8, false),
    ];
    spec(LAKE_EVENTS, "every entity event (audit trail, replay archive)", fields, &["tenant_id", "month"])
}

/// One row per version of an entity (relations have their own table).
pub fn entity_versions() -> TableSpec {
    let fields = vec![
        col("tenant_id", DataType::Utf8, false),
        col("entity_type", DataType::Utf8, false),
        col("entity_id", DataType::Utf8, false),
        col("version", DataType::Int64, false),
        col("seq", DataType::Int64, false),
        col("event_type", DataType::Utf8, false),
        col("recorded_at", DataType::Int64, false),
        col("deleted", DataType::Boolean, false),
        col("changes", DataType::Utf8, false),
        col("state", DataType::Utf8, false),
    ];
    spec(LAKE_ENTITY_VERSIONS, "one row per entity version", fields, &["tenant_id"])
}

/// One row per change of an attribute (set or deleted).
pub fn attribute_versions() -> TableSpec {
    let mut fields = vec![
        col("tenant_id", DataType::Utf8, false),
        col("entity_type", DataType::Utf8, false),
        col("entity_id", DataType::Utf8, false),
        col("scope", DataType::Utf8, false),
        col("key", DataType::Utf8, false),
        col("last_update_ts", DataType::Int64, false),
    ];
    fields.extend(value_columns());
    fields.extend([
        col("deleted", DataType::Boolean, false),
        col("received_at", DataType::Int64, false),
        col("seq", DataType::Int64, false),
    ]);
    spec(LAKE_ATTRIBUTE_VERSIONS, "one row per attribute change", fields, &["tenant_id"])
}

/// One row per version of a relation.
pub fn relation_versions() -> TableSpec {
    let fields = vec![
        col("tenant_id", DataType::Utf8, false),
        col("relation_id", DataType::Utf8, false),
        col("version", DataType::Int64, false),
        col("seq", DataType::Int64, false),
        col("from_type", DataType::Utf8, false),
        col("from_id", DataType::Utf8, false),
        col("to_type", DataType::Utf8, false),
        col("to_id", DataType::Utf8, false),
        col("relation_type", DataType::Utf8, false),
        col("type_group", DataType::Utf8, false),
        col("additional_info", DataType::Utf8, true),
        col("deleted", DataType::Boolean, false),
        col("recorded_at", DataType::Int64, false),
    ];
    spec(LAKE_RELATION_VERSIONS, "one row per relation version", fields, &["tenant_id"])
}

/// Log messages a projection could not read.
pub fn dead_letters() -> TableSpec {
    let fields = vec![
        col("projection", DataType::Utf8, false),
        col("seq", DataType::Int64, false),
        col("subject", DataType::Utf8, false),
        col("reason", DataType::Utf8, false),
        col("payload", DataType::Utf8, false),
        col("recorded_at", DataType::Int64, false),
    ];
    spec(LAKE_DEAD_LETTERS, "log messages a projection could not read", fields, &[])
}

/// Every table, for documentation and tests.
pub fn all() -> Vec<TableSpec> {
    vec![telemetry(), telemetry_hourly(), events(), entity_versions(), attribute_versions(), relation_versions(), dead_letters()]
}

/// Builds a record batch row by row, each row's values pushed in schema order.
pub struct RowBuilder {
    schema: SchemaRef,
    columns: Vec<Box<dyn ArrayBuilder>>,
    cursor: usize,
    rows: usize,
}

impl std::fmt::Debug for RowBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowBuilder").field("rows", &self.rows).finish()
    }
}

macro_rules! push {
    ($name:ident, $builder:ty, $value:ty) => {
        /// Appends the next column's value of the current row.
        pub fn $name(&mut self, value: Option<$value>) -> &mut Self {
            let column = self.columns[self.cursor]
                .as_any_mut()
                .downcast_mut::<$builder>()
                .expect("values are pushed in schema order with the schema's types");
            column.append_option(value);
            self.cursor += 1;
            self
        }
    };
}

impl RowBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema.fields().iter().map(|f| make_builder(f.data_type(), 1024)).collect();
        Self { schema, columns, cursor: 0, rows: 0 }
    }

    push!(bool, BooleanBuilder, bool);
    push!(i32, Int32Builder, i32);
    push!(i64, Int64Builder, i64);
    push!(f64, Float64Builder, f64);
    push!(date32, Date32Builder, i32);

    /// Appends the next column's string value of the current row.
    pub fn str(&mut self, value: Option<&str>) -> &mut Self {
        let column = self.columns[self.cursor]
            .as_any_mut()
            .downcast_mut::<StringBuilder>()
            .expect("values are pushed in schema order with the schema's types");
        column.append_option(value);
        self.cursor += 1;
        self
    }

    /// Closes the current row; every column must have had its value.
    pub fn end_row(&mut self) {
        assert_eq!(self.cursor, self.columns.len(), "a row fills every column of {}", self.schema);
        self.cursor = 0;
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows built so far as one batch; the builder starts over empty, with room for a batch
    /// like this one (up to [`CARRIED_ROWS`] rows): builders that grew by doubling from empty
    /// again for every batch re-allocated and copied each buffer several times, on fresh memory.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.finish()).collect();
        let rows = self.rows.min(CARRIED_ROWS);
        if rows > 0 {
            for ((column, field), array) in self.columns.iter_mut().zip(self.schema.fields()).zip(&arrays) {
                *column = match array.as_string_opt::<i32>() {
                    // The same bytes per row as this batch's.
                    Some(strings) => {
                        Box::new(StringBuilder::with_capacity(rows, strings.value_data().len() / self.rows.max(1) * rows + rows))
                    }
                    None => make_builder(field.data_type(), rows),
                };
            }
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

/// Most rows a [`RowBuilder`] reserves room for after a batch.
const CARRIED_ROWS: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fill_every_column_in_order() {
        let spec = dead_letters();
        let mut rows = RowBuilder::new(spec.schema.clone());
        rows.str(Some("p")).i64(Some(1)).str(Some("s")).str(Some("r")).str(Some("x")).i64(Some(2));
        rows.end_row();
        let batch = rows.finish().expect("valid batch");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), spec.schema);
    }
}
