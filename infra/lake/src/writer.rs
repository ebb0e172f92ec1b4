//! Writing batches to one Delta table as Parquet and committing them with the projection's
//! position on the log (a Delta `txn` action), in one atomic commit.
//!
//! A table with a sort order ([`TableSpec::sort_by`]) gets each file's rows sorted by it and is
//! written in row groups of at most [`ROW_GROUP_ROWS`] rows and pages of at most [`PAGE_ROWS`](crate::table::PAGE_ROWS),
//! with statistics per row group and page (the page index), so that a filter on the sort columns
//! reads only the row groups and pages that can hold its rows.

use std::collections::HashMap;

use deltalake_core::DeltaTable;
use deltalake_core::arrow::array::{Array as _, ArrayRef, AsArray as _, Int64Array, RecordBatch, StringArray};
use deltalake_core::arrow::compute::{SortColumn, concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch};
use deltalake_core::arrow::datatypes::Int64Type;
use deltalake_core::arrow::error::ArrowError;
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

use crate::error::{LakeError, Result};
use crate::table::{MergeRows, TableSpec};

/// Most rows of one Parquet row group of a sorted table: a day of telemetry at ~10M points a day
/// spans several, each with its own statistics (Parquet's default is 1Mi rows).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Integer columns of a sorted table that grow within a series (timestamps, stream sequences):
/// delta-encoded instead of dictionary-encoded.
const DELTA_COLUMNS: [&str; 3] = ["ts", "received_at", "seq"];

/// Appends to one table. Holds the table state it last committed on.
pub struct TableWriter {
    name: &'static str,
    table: DeltaTable,
    log_store: LogStoreRef,
    state: DeltaTableState,
    partition_columns: Vec<String>,
    /// The file sort order (empty: arrival order), from the table's spec.
    sort_by: Vec<String>,
    /// The merge of the table's rows, for tables of partial aggregates (from its spec).
    merge: Option<MergeRows>,
    properties: WriterProperties,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter").field("name", &self.name).field("version", &self.state.version()).finish()
    }
}

impl TableWriter {
    /// A writer of the table `name`, on its loaded state, with the sort order, merge and Parquet
    /// settings of its spec (none for a table without one).
    pub fn new(name: &'static str, table: DeltaTable) -> Result<Self> {
        let state = table.snapshot().map_err(LakeError::delta(name))?.clone();
        let partition_columns = state.metadata().partition_columns().to_vec();
        let spec = TableSpec::by_name(name);
        let sort_by: Vec<String> =
            spec.as_ref().map(|spec| spec.sort_by.iter().map(|c| c.to_string()).collect()).unwrap_or_default();
        let properties = writer_properties(spec.as_ref(), &partition_columns, &table, name)?;
        let merge = spec.and_then(|spec| spec.merge);
        Ok(Self { name, log_store: table.log_store(), table, state, partition_columns, sort_by, merge, properties })
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The merge of the table's rows, for tables of partial aggregates.
    pub fn merge(&self) -> Option<MergeRows> {
        self.merge
    }

    /// The table state last committed on or read.
    pub fn state(&self) -> &DeltaTableState {
        &self.state
    }

    /// The last stream sequence committed under `app_id` (0 if none).
    pub async fn committed_seq(&self, app_id: &str) -> Result<u64> {
        let version =
            self.state.transaction_version(self.log_store.as_ref(), app_id).await.map_err(LakeError::delta(self.name))?;
        Ok(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    /// Re-reads the table's log (commits by other writers).
    pub async fn refresh(&mut self) -> Result<()> {
        self.state.update(self.log_store.as_ref(), None).await.map_err(LakeError::delta(self.name))
    }

    /// Encodes the batches as Parquet files of the table. The encoding runs on a blocking thread,
    /// off the I/O runtime; the files are not part of the table until they are committed.
    pub async fn write_files(&self, batches: Vec<RecordBatch>) -> Result<Vec<Add>> {
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
        .map_err(|source| {
            let table = self.name.to_string();
            if source.is_panic() { LakeError::WritePanicked { table, source } } else { LakeError::Task { table, source } }
        })?;
        written.map_err(LakeError::delta(self.name))
    }

    /// Like [`Self::write_files`], with the batches spread over one writer per core (for
    /// rebuilds: more files, written in parallel).
    pub async fn write_files_parallel(&self, batches: Vec<RecordBatch>) -> Result<Vec<Add>> {
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
    pub async fn append(&mut self, batches: Vec<RecordBatch>, app_id: &str, seq: u64) -> Result<u64> {
        let adds = self.write_files(batches).await?;
        self.commit_append(adds, app_id, seq).await
    }

    /// Commits written files as an append with `seq` as the `txn` version of `app_id`. On a
    /// conflict (a rebuild or compaction removed files since this writer's table version) the
    /// state is refreshed so that the caller's retry of the same files goes through.
    pub async fn commit_append(&mut self, adds: Vec<Add>, app_id: &str, seq: u64) -> Result<u64> {
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
    pub async fn commit(
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

/// The batches as one batch sorted by `columns` (ascending, nulls first; equal rows keep their
/// order). The rows are copied once, straight from the batches into the sorted batch: no
/// concatenated copy in between, so that an encoding round of a rebuild (500,000 rows) does not
/// fault in twice its size of fresh memory.
pub(crate) fn sorted(batches: &[RecordBatch], columns: &[String]) -> Result<RecordBatch, ArrowError> {
    let Some(first) = batches.first() else {
        return Err(ArrowError::InvalidArgumentError("nothing to sort".to_string()));
    };
    let keys = batches.iter().map(|batch| sort_keys(batch, columns)).collect::<Result<Vec<_>, ArrowError>>()?;
    if let Some(order) = ranked_order(&keys) {
        let batches: Vec<&RecordBatch> = batches.iter().collect();
        return interleave_record_batch(&batches, &order);
    }
    let batch = concat_batches(&first.schema(), batches)?;
    let columns: Vec<SortColumn> = sort_keys(&batch, columns)?.into_iter().map(|values| SortColumn { values, options: None }).collect();
    take_record_batch(&batch, &lexsort_to_indices(&columns, None)?)
}

/// The batch's `columns` (the sort keys), in order.
fn sort_keys(batch: &RecordBatch, columns: &[String]) -> Result<Vec<ArrayRef>, ArrowError> {
    columns
        .iter()
        .map(|c| batch.column_by_name(c).cloned().ok_or_else(|| ArrowError::SchemaError(format!("sort column {c} missing"))))
        .collect()
}

/// The rows of several batches (`keys[batch]` = that batch's sort columns) as (batch, row)
/// pairs in the order of the sort columns, when the leading ones are strings and the last one a
/// non-null `Int64` (a timestamp) — else `None` (the caller sorts with `lexsort_to_indices`).
///
/// Each leading column's distinct values (few: entities and keys among many rows) are ranked
/// once; the rows are then sorted by (ranks, last key, position) as integers — several times
/// faster than comparing strings row by row, which made a commit of 1.6M rows spend about a
/// second sorting, and without a row-format copy of the keys.
fn ranked_order(keys: &[Vec<ArrayRef>]) -> Option<Vec<(usize, usize)>> {
    let width = keys.first()?.len();
    if width < 2 {
        return None;
    }
    let mut leading: Vec<Vec<&StringArray>> = vec![Vec::with_capacity(keys.len()); width - 1];
    let mut last: Vec<&Int64Array> = Vec::with_capacity(keys.len());
    for batch_keys in keys {
        let (ts, strings) = batch_keys.split_last()?;
        let ts = ts.as_primitive_opt::<Int64Type>()?;
        if ts.null_count() > 0 || u32::try_from(ts.len()).is_err() {
            return None;
        }
        last.push(ts);
        for (column, values) in leading.iter_mut().zip(strings) {
            column.push(values.as_string_opt::<i32>()?);
        }
    }
    u32::try_from(keys.len()).ok()?;
    // One combined rank per row: the leading columns' ranks in mixed radix (fits in a u64 for
    // any realistic count of distinct values; else the caller's general sort).
    let rows: usize = last.iter().map(|ts| ts.len()).sum();
    let mut combined = vec![0u64; rows];
    for column in &leading {
        let (ranks, distinct) = dense_ranks(column);
        for (slot, rank) in combined.iter_mut().zip(ranks) {
            *slot = slot.checked_mul(distinct)?.checked_add(u64::from(rank))?;
        }
    }
    let mut order: Vec<(u64, i64, u32, u32)> = Vec::with_capacity(rows);
    let mut ranks = combined.into_iter();
    for (b, ts) in last.iter().enumerate() {
        for (row, &t) in ts.values().iter().enumerate() {
            order.push((ranks.next()?, t, b as u32, row as u32));
        }
    }
    order.sort_unstable();
    Some(order.into_iter().map(|(_, _, b, row)| (b as usize, row as usize)).collect())
}

/// For each row of the batches' column (in batch order), the rank of its value among the
/// column's distinct values (null first), and how many ranks there are.
fn dense_ranks(column: &[&StringArray]) -> (Vec<u32>, u64) {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut id_of = Vec::with_capacity(column.iter().map(|a| a.len()).sum());
    // Rows of one message or entity come together: the previous row's value is checked first.
    let mut previous: Option<(&str, u32)> = None;
    const NULL: u32 = u32::MAX;
    for array in column {
        for value in array.iter() {
            let id = match value {
                None => NULL,
                Some(v) => match previous {
                    Some((p, id)) if p == v => id,
                    _ => {
                        let next = ids.len() as u32;
                        let id = *ids.entry(v).or_insert(next);
                        previous = Some((v, id));
                        id
                    }
                },
            };
            id_of.push(id);
        }
    }
    let mut values: Vec<(&str, u32)> = ids.into_iter().collect();
    values.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // Rank 0 is null's (nulls first).
    let mut rank = vec![0u32; values.len()];
    for (position, (_, id)) in values.iter().enumerate() {
        rank[*id as usize] = position as u32 + 1;
    }
    let ranks = id_of.into_iter().map(|id| if id == NULL { 0 } else { rank[id as usize] }).collect();
    (ranks, values.len() as u64 + 1)
}

/// Parquet settings of a table's files: Snappy as before; for a table its spec sorts also
/// bounded row groups and pages of at most the spec's `page_rows`, with statistics (the page
/// index), the sort order recorded in each row group's metadata, and delta encoding for the
/// columns that grow within a series. Strings keep Parquet's dictionary encoding (ids and keys
/// repeat); so do other columns unless the spec lists them as plain.
fn writer_properties(spec: Option<&TableSpec>, partition_columns: &[String], table: &DeltaTable, name: &str) -> Result<WriterProperties> {
    let builder = WriterProperties::builder()
        .set_created_by(format!("thinglake {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page);
    let Some(spec) = spec.filter(|spec| !spec.sort_by.is_empty()) else { return Ok(builder.build()) };
    // Column indices in the file, whose columns are the table's without the partition columns.
    let file_columns: Vec<String> = table
        .snapshot()
        .map_err(LakeError::delta(name))?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .filter(|c| !partition_columns.contains(c))
        .collect();
    let sorting = spec
        .sort_by
        .iter()
        .filter_map(|c| file_columns.iter().position(|f| f == c))
        .map(|i| SortingColumn { column_idx: i32::try_from(i).unwrap_or(i32::MAX), descending: false, nulls_first: true })
        .collect();
    let mut builder = builder
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(spec.page_rows)
        .set_sorting_columns(Some(sorting));
    for column in DELTA_COLUMNS.iter().filter(|c| file_columns.iter().any(|f| f == *c)) {
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    for column in spec.plain_columns {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake_core::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn sorted_rows_of_several_batches_follow_the_sort_columns_then_arrival() {
        // Interleaved series, ties on (entity, key, ts) and null entities, spread over batches
        // of different sizes: the rows (with their other columns) in the order of (entity,
        // key, ts), equal ones in arrival order; the same as concatenating and lexsorting.
        let n = 5_000i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new("entity_id", DataType::Utf8, true),
            Field::new("key", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("arrival", DataType::Int64, false),
        ]));
        let batch = |rows: std::ops::Range<i64>| {
            let entity: StringArray =
                rows.clone().map(|i| if i % 997 == 0 { None } else { Some(format!("e{}", (i * 7) % 13)) }).collect();
            let key: StringArray = rows.clone().map(|i| Some(format!("k{}", (i * 3) % 5))).collect();
            let ts = Int64Array::from_iter_values(rows.clone().map(|i| (n - i) % 101));
            let arrival = Int64Array::from_iter_values(rows);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(entity), Arc::new(key), Arc::new(ts), Arc::new(arrival)])
                .expect("a batch")
        };
        let batches = vec![batch(0..1_000), batch(1_000..1_001), batch(1_001..3_500), batch(3_500..n)];
        let columns = ["entity_id".to_string(), "key".to_string(), "ts".to_string()];
        let out = sorted(&batches, &columns).expect("sorted");
        let rows = |b: &RecordBatch| -> Vec<(Option<String>, String, i64, i64)> {
            let (entity, key) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
            let (ts, arrival) = (b.column(2).as_primitive::<Int64Type>(), b.column(3).as_primitive::<Int64Type>());
            (0..b.num_rows())
                .map(|i| {
                    (entity.is_valid(i).then(|| entity.value(i).to_string()), key.value(i).to_string(), ts.value(i), arrival.value(i))
                })
                .collect()
        };
        let mut expected = rows(&concat_batches(&schema, &batches).expect("concatenated"));
        expected.sort();
        assert_eq!(rows(&out), expected);
        assert!(ranked_order(&[vec![batches[0].column(0).clone(), batches[0].column(2).clone()]]).is_some());

        // Not strings then a long: the general sort, same order.
        let by_long = ["ts".to_string(), "arrival".to_string()];
        let out = sorted(&batches, &by_long).expect("sorted");
        let mut expected = rows(&concat_batches(&schema, &batches).expect("concatenated"));
        expected.sort_by_key(|(_, _, ts, arrival)| (*ts, *arrival));
        assert_eq!(rows(&out), expected);
    }
}
