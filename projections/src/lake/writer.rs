//! Writing batches to one Delta table as Parquet and committing them with the projection's
//! position on the log (a Delta `txn` action), in one atomic commit.
//!
//! A table with a sort order ([`TableSpec::sort_by`]) gets each file's rows sorted by it and is
//! written in row groups of at most [`ROW_GROUP_ROWS`] rows and pages of at most [`PAGE_ROWS`],
//! with statistics per row group and page (the page index), so that a filter on the sort columns
//! reads only the row groups and pages that can hold its rows.

use std::collections::HashMap;

use deltalake_core::DeltaTable;
use deltalake_core::arrow::array::{Array as _, ArrayRef, AsArray as _, RecordBatch, UInt32Array};
use deltalake_core::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use deltalake_core::arrow::datatypes::Int64Type;
use deltalake_core::arrow::error::ArrowError;
use deltalake_core::arrow::row::{Row, RowConverter, SortField};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, Transaction};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::parquet::basic::{Compression, Encoding};
use deltalake_core::parquet::file::metadata::SortingColumn;
use deltalake_core::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake_core::parquet::schema::types::ColumnPath;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::writer::{DeltaWriter as _, RecordBatchWriter};
use tokio::runtime::Handle;

use crate::lake::error::{LakeError, Result};
use crate::lake::table::TableSpec;

/// Most rows of one Parquet row group of a sorted table: a day of telemetry at ~10M points a day
/// spans several, each with its own statistics (Parquet's default is 1Mi rows).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Most rows of one data page of a sorted table: the page index's granularity. A small page costs
/// a little compression (each page starts its encodings afresh); a large one decodes more rows
/// than a one-series query needs.
pub const PAGE_ROWS: usize = 4 * 1024;
/// Integer columns of a sorted table that grow within a series (timestamps, stream sequences):
/// delta-encoded instead of dictionary-encoded.
const DELTA_COLUMNS: [&str; 3] = ["ts", "received_at", "seq"];

/// Appends to one table. Holds the table state it last committed on.
pub(crate) struct TableWriter {
    name: &'static str,
    table: DeltaTable,
    log_store: LogStoreRef,
    state: DeltaTableState,
    partition_columns: Vec<String>,
    /// The file sort order (empty: arrival order), from the table's spec.
    sort_by: Vec<String>,
    /// The merge of the table's rows, for tables of partial aggregates (from its spec).
    merge: Option<crate::lake::table::MergeRows>,
    properties: WriterProperties,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter").field("name", &self.name).field("version", &self.state.version()).finish()
    }
}

impl TableWriter {
    pub(crate) fn new(name: &'static str, table: DeltaTable) -> Result<Self> {
        let state = table.snapshot().map_err(LakeError::delta(name))?.clone();
        let partition_columns = state.metadata().partition_columns().to_vec();
        let spec = TableSpec::by_name(name);
        let sort_by: Vec<String> =
            spec.as_ref().map(|spec| spec.sort_by.iter().map(|c| c.to_string()).collect()).unwrap_or_default();
        let merge = spec.and_then(|spec| spec.merge);
        let properties = writer_properties(&sort_by, &partition_columns, &table, name)?;
        Ok(Self { name, log_store: table.log_store(), table, state, partition_columns, sort_by, merge, properties })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The merge of the table's rows, for tables of partial aggregates.
    pub(crate) fn merge(&self) -> Option<crate::lake::table::MergeRows> {
        self.merge
    }

    pub(crate) fn state(&self) -> &DeltaTableState {
        &self.state
    }

    /// The last stream sequence committed under `app_id` (0 if none).
    pub(crate) async fn committed_seq(&self, app_id: &str) -> Result<u64> {
        let version =
            self.state.transaction_version(self.log_store.as_ref(), app_id).await.map_err(LakeError::delta(self.name))?;
        Ok(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    /// Re-reads the table's log (commits by other writers).
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        self.state.update(self.log_store.as_ref(), None).await.map_err(LakeError::delta(self.name))
    }

    /// Encodes the batches as Parquet files of the table. The encoding runs on a blocking thread,
    /// off the I/O runtime; the files are not part of the table until they are committed.
    pub(crate) async fn write_files(&self, batches: Vec<RecordBatch>) -> Result<Vec<Add>> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(LakeError::delta(self.name))?
            .with_writer_properties(self.properties.clone());
        let handle = Handle::current();
        let sort_by = self.sort_by.clone();
        let name = self.name;
        let written = tokio::task::spawn_blocking(move || {
            // Sorted as one run: the writer splits it by partition keeping the order, so each
            // file's rows are in order.
            let batches = if sort_by.is_empty() {
                batches
            } else {
                vec![sorted(&batches, &sort_by).map_err(|e| deltalake_core::DeltaTableError::generic(format!("sorting {name}: {e}")))?]
            };
            handle.block_on(async move {
                for batch in batches {
                    writer.write(batch).await?;
                }
                writer.flush().await
            })
        })
        .await
        .map_err(|e| LakeError::Task { table: self.name.to_string(), reason: e.to_string() })?;
        written.map_err(LakeError::delta(self.name))
    }

    /// Like [`Self::write_files`], with the batches spread over one writer per core (for
    /// rebuilds: more files, written in parallel).
    pub(crate) async fn write_files_parallel(&self, batches: Vec<RecordBatch>) -> Result<Vec<Add>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if cores == 1 || batches.len() < 2 || total < 100_000 {
            return self.write_files(batches).await;
        }
        let mut groups: Vec<Vec<RecordBatch>> = (0..cores).map(|_| Vec::new()).collect();
        let mut rows = vec![0usize; cores];
        for batch in batches {
            let smallest = (0..cores).min_by_key(|&i| rows[i]).unwrap_or(0);
            rows[smallest] += batch.num_rows();
            groups[smallest].push(batch);
        }
        let written = futures::future::join_all(groups.into_iter().map(|group| self.write_files(group))).await;
        let mut adds = Vec::new();
        for files in written {
            adds.extend(files?);
        }
        Ok(adds)
    }

    /// Writes the batches and commits them with `seq` as the `txn` version of `app_id`.
    pub(crate) async fn append(&mut self, batches: Vec<RecordBatch>, app_id: &str, seq: u64) -> Result<u64> {
        let adds = self.write_files(batches).await?;
        self.commit_append(adds, app_id, seq).await
    }

    /// Commits written files as an append with `seq` as the `txn` version of `app_id`. On a
    /// conflict (a rebuild or compaction removed files since this writer's table version) the
    /// state is refreshed so that the caller's retry of the same files goes through.
    pub(crate) async fn commit_append(&mut self, adds: Vec<Add>, app_id: &str, seq: u64) -> Result<u64> {
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: (!self.partition_columns.is_empty()).then(|| self.partition_columns.clone()),
            predicate: None,
        };
        let txn = Transaction::new(app_id, i64::try_from(seq).unwrap_or(i64::MAX));
        let committed = self.commit(adds.into_iter().map(Action::Add).collect(), operation, Some(txn)).await;
        if committed.is_err() {
            // Best effort: if the refresh fails too, the retry fails and refreshes again.
            let _ = self.refresh().await;
        }
        committed
    }

    /// Commits actions; conflicts with concurrent writers are retried by the commit itself.
    pub(crate) async fn commit(
        &mut self,
        actions: Vec<Action>,
        operation: DeltaOperation,
        txn: Option<Transaction>,
    ) -> Result<u64> {
        let mut properties = CommitProperties::default();
        if let Some(txn) = txn {
            properties = properties.with_application_transaction(txn);
        }
        let finalized = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(&self.state), self.log_store.clone(), operation)
            .await
            .map_err(LakeError::delta(self.name))?;
        self.state = finalized.snapshot();
        Ok(finalized.version())
    }
}

/// The batches as one batch sorted by `columns` (ascending, nulls first).
pub(crate) fn sorted(batches: &[RecordBatch], columns: &[String]) -> Result<RecordBatch, ArrowError> {
    let Some(first) = batches.first() else {
        return Err(ArrowError::InvalidArgumentError("nothing to sort".to_string()));
    };
    let batch = concat_batches(&first.schema(), batches)?;
    let keys = columns
        .iter()
        .map(|c| batch.column_by_name(c).cloned().ok_or_else(|| ArrowError::SchemaError(format!("sort column {c} missing"))))
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    let indices = sort_indices(&keys)?;
    take_record_batch(&batch, &indices)
}

/// The row order by `keys`. When the last key is a non-null `Int64` (a timestamp), the leading
/// keys (entity and key strings: few distinct series among many rows) are ranked once per
/// distinct tuple and the rows sorted by (rank, last key) as integers — several times faster
/// than comparing strings row by row (`lexsort_to_indices`, the fallback), which made a commit
/// of 1.6M rows spend about a second sorting.
fn sort_indices(keys: &[ArrayRef]) -> Result<UInt32Array, ArrowError> {
    let lexsort = || {
        let columns: Vec<SortColumn> = keys.iter().map(|values| SortColumn { values: values.clone(), options: None }).collect();
        lexsort_to_indices(&columns, None)
    };
    let Some((last, leading)) = keys.split_last() else { return lexsort() };
    let rows_count = last.len();
    let (Some(last), true, Ok(_)) = (last.as_primitive_opt::<Int64Type>(), !leading.is_empty(), u32::try_from(rows_count)) else {
        return lexsort();
    };
    if last.null_count() > 0 {
        return lexsort();
    }
    let converter = RowConverter::new(leading.iter().map(|a| SortField::new(a.data_type().clone())).collect())?;
    let rows = converter.convert_columns(leading)?;
    let mut distinct: HashMap<Row<'_>, u32> = HashMap::new();
    let mut tuple_of = Vec::with_capacity(rows_count);
    for row in rows.iter() {
        let next = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
        tuple_of.push(*distinct.entry(row).or_insert(next));
    }
    let mut tuples: Vec<(Row<'_>, u32)> = distinct.into_iter().collect();
    tuples.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut rank = vec![0u32; tuples.len()];
    for (position, (_, tuple)) in tuples.iter().enumerate() {
        rank[*tuple as usize] = u32::try_from(position).unwrap_or(u32::MAX);
    }
    let mut order: Vec<(u32, i64, u32)> = (0..rows_count)
        .map(|i| (rank[tuple_of[i] as usize], last.value(i), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    order.sort_unstable();
    Ok(UInt32Array::from_iter_values(order.into_iter().map(|(_, _, i)| i)))
}

/// Parquet settings of a table's files: Snappy as before; for a sorted table also bounded row
/// groups and pages with statistics (the page index), the sort order recorded in each row
/// group's metadata, and delta encoding for the columns that grow within a series. Strings keep
/// Parquet's dictionary encoding (ids and keys repeat).
fn writer_properties(sort_by: &[String], partition_columns: &[String], table: &DeltaTable, name: &str) -> Result<WriterProperties> {
    let builder = WriterProperties::builder()
        .set_created_by(format!("thinglake {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page);
    if sort_by.is_empty() {
        return Ok(builder.build());
    }
    // Column indices in the file, whose columns are the table's without the partition columns.
    let file_columns: Vec<String> = table
        .snapshot()
        .map_err(LakeError::delta(name))?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .filter(|c| !partition_columns.contains(c))
        .collect();
    let sorting = sort_by
        .iter()
        .filter_map(|c| file_columns.iter().position(|f| f == c))
        .map(|i| SortingColumn { column_idx: i32::try_from(i).unwrap_or(i32::MAX), descending: false, nulls_first: true })
        .collect();
    let mut builder = builder
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_sorting_columns(Some(sorting));
    for column in DELTA_COLUMNS.iter().filter(|c| file_columns.iter().any(|f| f == *c)) {
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake_core::arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn ranked_sort_orders_rows_like_lexsort() {
        // Interleaved series, ties on (entity, key, ts) and a null entity: the same order.
        let n = 5_000i64;
        let entity: StringArray = (0..n).map(|i| if i % 997 == 0 { None } else { Some(format!("e{}", (i * 7) % 13)) }).collect();
        let key: StringArray = (0..n).map(|i| Some(format!("k{}", (i * 3) % 5))).collect();
        let ts = Int64Array::from_iter_values((0..n).map(|i| (n - i) % 101));
        let keys: Vec<ArrayRef> = vec![Arc::new(entity), Arc::new(key), Arc::new(ts)];
        let ranked = sort_indices(&keys).expect("sorted");
        let columns: Vec<SortColumn> = keys.iter().map(|values| SortColumn { values: values.clone(), options: None }).collect();
        let lexsorted = lexsort_to_indices(&columns, None).expect("sorted");
        let row = |indices: &UInt32Array, at: usize| {
            let i = indices.value(at) as usize;
            let entity = keys[0].as_string::<i32>();
            (entity.is_valid(i).then(|| entity.value(i).to_string()), keys[1].as_string::<i32>().value(i).to_string(), keys[2].as_primitive::<Int64Type>().value(i))
        };
        assert_eq!(ranked.len(), lexsorted.len());
        for at in 0..ranked.len() {
            assert_eq!(row(&ranked, at), row(&lexsorted, at), "row {at}");
        }
        let mut seen: Vec<u32> = ranked.values().to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..n as u32).collect::<Vec<_>>(), "every row once");
    }
}
