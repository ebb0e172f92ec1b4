//! Reading a table's current rows without a query engine: every data file of the latest
//! version, with the partition columns (kept in the file paths) put back. For compaction, tests
//! and tooling; queries go through DataFusion in the query layer.

use std::sync::Arc;

use deltalake_core::arrow::array::{ArrayRef, RecordBatch, StringArray};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{Schema, SchemaRef};
use deltalake_core::kernel::LogicalFileView;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow as _;
use deltalake_core::parquet::arrow::ProjectionMask;
use deltalake_core::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake_core::parquet::errors::ParquetError;
use deltalake_core::{DeltaTable, ObjectStore};
use object_store::ObjectStoreExt as _;

use crate::error::{BoxError, LakeError, Result};
use crate::store::LakeLocation;

/// Every row of the table's latest version (empty when the table does not exist).
pub async fn read_table(location: &LakeLocation, table: &str) -> Result<Vec<RecordBatch>> {
    let Some(delta) = location.open(table).await? else { return Ok(Vec::new()) };
    let files: Vec<LogicalFileView> = delta.snapshot().map_err(LakeError::delta(table))?.log_data().iter().collect();
    let mut out = Vec::new();
    for file in &files {
        out.extend(read_file(&delta, table, file).await?);
    }
    Ok(out)
}

/// The table's Arrow schema.
pub fn table_schema(delta: &DeltaTable, table: &str) -> Result<SchemaRef> {
    let state = delta.snapshot().map_err(LakeError::delta(table))?;
    let schema = state.schema().as_ref().try_into_arrow().map_err(LakeError::arrow(table))?;
    Ok(Arc::new(schema))
}

/// One data file's rows, with the table's full schema.
pub async fn read_file(delta: &DeltaTable, table: &str, file: &LogicalFileView) -> Result<Vec<RecordBatch>> {
    read_file_columns(delta, table, file, None).await
}

/// Rows read from a file at a time (Parquet's default is 1,024).
const READ_BATCH_ROWS: usize = 8 * 1024;

/// One data file's rows with the table's columns named in `columns` (all of them if `None`), in
/// the table's column order: the other columns are not decoded.
pub async fn read_file_columns(
    delta: &DeltaTable,
    table: &str,
    file: &LogicalFileView,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>> {
    let store: Arc<dyn ObjectStore> = delta.object_store();
    let mut schema = table_schema(delta, table)?;
    if let Some(columns) = columns {
        let fields: Vec<_> = schema.fields().iter().filter(|f| columns.contains(&f.name().as_str())).cloned().collect();
        schema = Arc::new(Schema::new(fields));
    }
    let wanted: Option<Vec<String>> = columns.map(|c| c.iter().map(|c| c.to_string()).collect());
    let partition_columns = delta.snapshot().map_err(LakeError::delta(table))?.metadata().partition_columns().to_vec();
    let partition: Vec<(String, Option<String>)> = file.partition_values_map().into_iter().collect();
    let path = file.path().to_string();
    let read_error = |source: BoxError| LakeError::ReadFile { table: table.to_string(), path: path.clone(), source };
    let bytes = store
        .get(&file.object_store_path())
        .await
        .map_err(|e| read_error(e.into()))?
        .bytes()
        .await
        .map_err(|e| read_error(e.into()))?;
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(READ_BATCH_ROWS);
        if let Some(wanted) = &wanted {
            let mask = ProjectionMask::columns(reader.parquet_schema(), wanted.iter().map(String::as_str));
            reader = reader.with_projection(mask);
        }
        reader.build()?.collect::<Result<Vec<RecordBatch>, _>>().map_err(ParquetError::from)
    })
    .await
    .map_err(LakeError::task(table))?
    .map_err(|e| read_error(e.into()))?;
    read.iter().map(|batch| with_partition_columns(table, &schema, &partition_columns, &partition, batch)).collect()
}

/// A file's rows with the partition columns (stored in the path, not the file) put back.
fn with_partition_columns(
    table: &str,
    schema: &SchemaRef,
    partition_columns: &[String],
    partition: &[(String, Option<String>)],
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if partition_columns.iter().any(|c| c == field.name()) {
            let value = partition.iter().find(|(k, _)| k == field.name()).and_then(|(_, v)| v.clone());
            // One buffer of the value repeated (not a string allocated per row).
            let text: ArrayRef = match value {
                Some(value) => Arc::new(StringArray::new_repeated(value, rows)),
                None => Arc::new(StringArray::new_null(rows)),
            };
            columns.push(cast(&text, field.data_type()).map_err(LakeError::arrow(table))?);
        } else {
            let column = batch.column_by_name(field.name()).ok_or_else(|| LakeError::ColumnMissing {
                table: table.to_string(),
                column: field.name().to_string(),
            })?;
            columns.push(cast(column, field.data_type()).map_err(LakeError::arrow(table))?);
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(LakeError::arrow(table))
}
