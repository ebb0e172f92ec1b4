//! Rows a table cannot take: when writing a batch fails because of what it holds (the writer
//! refused or panicked on a value, not storage being unavailable), the batch is halved until
//! the rows that fail on their own are found. They are set aside for the `dead_letters` table
//! with their stream sequence and the reason; every other row is written as usual. One bad row
//! (whatever slipped past the parsers, or was on the log before they checked it) then costs a
//! few more files in one commit, never the projection.

use deltalake_core::DeltaTableError;
use deltalake_core::arrow::array::{Array as _, AsArray as _, RecordBatch};
use deltalake_core::arrow::compute::{cast, concat_batches};
use deltalake_core::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use deltalake_core::kernel::Add;
use tracing::warn;

use crate::error::{LakeError, Result};
use crate::writer::TableWriter;

/// A row set aside: its stream sequence (`seq` column; 0 if the table has none), why it could
/// not be written, and the row as a JSON line.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwritable {
    pub seq: i64,
    pub reason: String,
    pub row: String,
}

impl LakeError {
    /// Whether writing failed because of the rows written (a panic in the writer, a value it
    /// refuses), so that the same rows fail again however often they are retried; storage and
    /// log failures are not.
    pub(crate) fn is_row_fault(&self) -> bool {
        match self {
            LakeError::WritePanicked { .. } | LakeError::Arrow { .. } => true,
            LakeError::Delta { source, .. } => matches!(
                **source,
                DeltaTableError::Arrow { .. }
                    | DeltaTableError::Parquet { .. }
                    | DeltaTableError::SchemaMismatch { .. }
                    | DeltaTableError::InvalidData { .. }
                    | DeltaTableError::PartitionError { .. }
                    | DeltaTableError::InvalidDateTimeString { .. }
            ),
            _ => false,
        }
    }
}

/// Writes the batches as the table's files. If that fails because of some rows, writes every
/// other row and returns the failing ones (each alone) beside the files; any other failure is
/// returned as is, for the caller's retry.
pub async fn write_setting_aside(table: &TableWriter, batches: Vec<RecordBatch>) -> Result<(Vec<Add>, Vec<Unwritable>)> {
    let failure = match table.write_files(batches.clone()).await {
        Ok(adds) => return Ok((adds, Vec::new())),
        Err(e) if e.is_row_fault() => e,
        Err(e) => return Err(e),
    };
    let Some(first) = batches.first() else { return Err(failure) };
    warn!(table = table.name(), error = %failure, "a batch cannot be written; looking for the rows at fault");
    let all = concat_batches(&first.schema(), &batches).map_err(LakeError::arrow(table.name()))?;
    let mut adds = Vec::new();
    let mut set_aside = Vec::new();
    // Batches known to fail, with their failure; halved until single rows remain.
    let mut failing = vec![(all, failure)];
    while let Some((batch, failure)) = failing.pop() {
        if batch.num_rows() <= 1 {
            if batch.num_rows() == 1 {
                set_aside.push(Unwritable { seq: seq_of(&batch), reason: failure.to_string(), row: row_json(&batch) });
            }
            continue;
        }
        let half = batch.num_rows() / 2;
        for part in [batch.slice(0, half), batch.slice(half, batch.num_rows() - half)] {
            match table.write_files(vec![part.clone()]).await {
                Ok(written) => adds.extend(written),
                Err(e) if e.is_row_fault() => failing.push((part, e)),
                Err(e) => return Err(e),
            }
        }
    }
    warn!(table = table.name(), rows = set_aside.len(), "rows that cannot be written set aside for the dead letters");
    Ok((adds, set_aside))
}

/// The `seq` column's value of a one-row batch (0 without one).
fn seq_of(batch: &RecordBatch) -> i64 {
    batch
        .column_by_name("seq")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .filter(|c| !c.is_empty() && c.is_valid(0))
        .map_or(0, |c| c.value(0))
}

/// A one-row batch as a JSON line. Dates go as their day numbers: a date beyond the calendar,
/// likely the fault, has no text.
fn row_json(batch: &RecordBatch) -> String {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let (data_type, column) = match field.data_type() {
            DataType::Date32 => (DataType::Int32, cast(column, &DataType::Int32).unwrap_or_else(|_| column.clone())),
            other => (other.clone(), column.clone()),
        };
        fields.push(Field::new(field.name(), data_type, true));
        columns.push(column);
    }
    let rendered = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).and_then(|plain| {
        let mut writer = deltalake_core::arrow::json::LineDelimitedWriter::new(Vec::new());
        writer.write(&plain)?;
        writer.finish()?;
        Ok(writer.into_inner())
    });
    match rendered {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
        Err(e) => format!("(row not renderable: {e})"),
    }
}
