//! A lake table's live files at one Delta version as a DataFusion table.
//!
//! The file list (paths, sizes, partition values) is read from the Delta snapshot once per table
//! version, not per query; a query's scan keeps the files its partition filters (tenant, day or
//! month) select, evaluated at once over the partition values of every file, and hands them to
//! DataFusion's own Parquet scan, which prunes row groups and pages with the rest of the filters
//! and keeps the files' footers and page indexes in the runtime's metadata cache. Delta's
//! provider re-planned the file list with the Delta kernel and rewrote every batch at each
//! query; for a dashboard's one-series query that was most of its time (docs/benchmarks.md,
//! *The lake's own table provider*).
//!
//! What this reader supports of Delta is what Thinglake's projections write: Parquet files with
//! hive partition values, no deletion vectors and no column mapping (the lake's tables are
//! created and written only by Thinglake; [`LakeFiles::of`] refuses a table with either).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use deltalake_core::DeltaTable;
use deltalake_core::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake_core::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use deltalake_core::datafusion::catalog::Session;
use deltalake_core::datafusion::common::{DFSchema, ScalarValue, project_schema};
use deltalake_core::datafusion::datasource::TableProvider;
use deltalake_core::datafusion::datasource::listing::PartitionedFile;
use deltalake_core::datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use deltalake_core::datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use deltalake_core::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource};
use deltalake_core::datafusion::datasource::source::DataSourceExec;
use deltalake_core::datafusion::datasource::table_schema::TableSchema;
use deltalake_core::datafusion::error::Result as DfResult;
use deltalake_core::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake_core::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::datafusion::logical_expr::utils::conjunction;
use deltalake_core::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake_core::datafusion::logical_expr::expr::InList;
use deltalake_core::datafusion::logical_expr::{BinaryExpr, Expr, TableProviderFilterPushDown, TableType};
use deltalake_core::datafusion::common::config::TableParquetOptions;
use deltalake_core::datafusion::logical_expr::execution_props::ExecutionProps;
use deltalake_core::datafusion::physical_expr::create_physical_expr;
use deltalake_core::datafusion::physical_plan::filter::FilterExecBuilder;
use deltalake_core::datafusion::physical_plan::ExecutionPlan;
use deltalake_core::datafusion::physical_plan::empty::EmptyExec;
use deltalake_core::datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use deltalake_core::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake_core::parquet::arrow::async_reader::AsyncFileReader;
use deltalake_core::parquet::errors::Result as ParquetResult;
use deltalake_core::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use thinglake_lake::table::TableSpec;

use crate::error::{QueryError, Result};

/// The live files of one version of a lake table, readable as a DataFusion table whose columns
/// are the table's data columns then its partition columns.
pub(crate) struct LakeFiles {
    name: &'static str,
    /// The Delta version the file list is of.
    version: Option<u64>,
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    partition_columns: &'static [&'static str],
    /// One row per file: its partition values (for pruning every file with one evaluation).
    partitions: RecordBatch,
    /// The schema of `partitions`, which partition filters are planned against.
    partition_schema: DFSchema,
    /// `schema` as filters over the whole row are planned against.
    row_schema: DFSchema,
    files: Vec<PartitionedFile>,
    /// The table's root object store, as registered in the engine's runtime.
    store: ObjectStoreUrl,
}

impl fmt::Debug for LakeFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeFiles").field("table", &self.name).field("version", &self.version).field("files", &self.files.len()).finish()
    }
}

/// The type a column is read as: strings of the time-series tables as string views (the Parquet
/// reader builds them without copying; millions of ids and keys go into groupings and joins),
/// every other column as the table declares it.
pub(crate) fn query_type(spec: &TableSpec, field: &Field) -> DataType {
    let views = spec.name == thinglake_lake::table::LAKE_TELEMETRY || spec.name == thinglake_lake::table::LAKE_TELEMETRY_HOURLY;
    match field.data_type() {
        DataType::Utf8 if views => DataType::Utf8View,
        other => other.clone(),
    }
}

impl LakeFiles {
    /// The files of `table`'s loaded version; registers the table's object store in `runtime`.
    pub(crate) fn of(spec: &TableSpec, table: &DeltaTable, runtime: &RuntimeEnv) -> Result<Self> {
        let name = spec.name;
        let lake_error = |e| QueryError::lake(name, e);
        let snapshot = table.snapshot().map_err(lake_error)?;
        let protocol = snapshot.protocol();
        if protocol.reader_features().is_some_and(|features| !features.is_empty()) {
            return Err(QueryError::UnsupportedTable { table: name, features: format!("{:?}", protocol.reader_features()) });
        }
        let partition_columns = spec.partition_columns;
        let typed = |f: &Field| Arc::new(Field::new(f.name(), query_type(spec, f), f.is_nullable()));
        let file_fields: Vec<FieldRef> =
            spec.schema.fields().iter().filter(|f| !partition_columns.contains(&f.name().as_str())).map(|f| typed(f)).collect();
        let partition_fields: Vec<FieldRef> = partition_columns
            .iter()
            .map(|c| spec.schema.field_with_name(c).map(typed))
            .collect::<std::result::Result<_, _>>()
            .map_err(QueryError::arrow(format!("lake table {name}")))?;
        let file_schema = Arc::new(Schema::new(file_fields.clone()));
        let schema = Arc::new(Schema::new([file_fields, partition_fields.clone()].concat()));

        let mut files = Vec::new();
        for file in snapshot.log_data().iter() {
            let raw = file.partition_values_map();
            let mut partition_values = Vec::with_capacity(partition_fields.len());
            for field in &partition_fields {
                let value = match raw.get(field.name()).cloned().flatten() {
                    Some(text) => ScalarValue::try_from_string(text, field.data_type()).map_err(QueryError::execution)?,
                    None => ScalarValue::try_from(field.data_type()).map_err(QueryError::execution)?,
                };
                partition_values.push(value);
            }
            let size = u64::try_from(file.size()).unwrap_or(0);
            let mut partitioned = PartitionedFile::new(file.object_store_path().to_string(), size).with_partition_values(partition_values);
            partitioned.object_meta.last_modified = chrono::DateTime::from_timestamp_millis(file.modification_time()).unwrap_or_default();
            files.push(partitioned);
        }
        let partition_schema = Arc::new(Schema::new(partition_fields.clone()));
        let columns: Vec<ArrayRef> = partition_fields
            .iter()
            .enumerate()
            .map(|(c, field)| {
                if files.is_empty() {
                    Ok(deltalake_core::arrow::array::new_empty_array(field.data_type()))
                } else {
                    ScalarValue::iter_to_array(files.iter().map(|f| f.partition_values[c].clone()))
                }
            })
            .collect::<DfResult<_>>()
            .map_err(QueryError::execution)?;
        let partitions = RecordBatch::try_new_with_options(
            partition_schema,
            columns,
            &deltalake_core::arrow::array::RecordBatchOptions::new().with_row_count(Some(files.len())),
        )
        .map_err(QueryError::arrow(format!("lake table {name}")))?;
        let partition_schema = DFSchema::try_from(partitions.schema()).map_err(QueryError::execution)?;
        let row_schema = DFSchema::try_from(schema.clone()).map_err(QueryError::execution)?;

        let store = table.log_store().object_store_url();
        runtime.register_object_store(store.as_ref(), table.object_store());
        Ok(Self {
            name,
            version: table.version(),
            schema,
            file_schema,
            partition_fields,
            partition_columns,
            partitions,
            partition_schema,
            row_schema,
            files,
            store,
        })
    }

    /// The Delta version the file list is of.
    pub(crate) fn version(&self) -> Option<u64> {
        self.version
    }

    fn partition_only(&self, filter: &Expr) -> bool {
        expr_applicable_for_cols(self.partition_columns, filter)
    }

    /// The files whose partition values pass every one of `filters` (which read only partition
    /// columns).
    fn pruned(&self, props: &ExecutionProps, filters: &[Expr]) -> DfResult<Vec<PartitionedFile>> {
        let Some(filter) = conjunction(filters.iter().cloned()) else { return Ok(self.files.clone()) };
        let predicate = create_physical_expr(&filter, &self.partition_schema, props, &Default::default())?;
        let keep = predicate.evaluate(&self.partitions)?.into_array(self.partitions.num_rows())?;
        let keep = keep.as_boolean();
        Ok(self.files.iter().enumerate().filter(|(i, _)| keep.is_valid(*i) && keep.value(*i)).map(|(_, f)| f.clone()).collect())
    }
}

/// `expr` with the literals compared with a column (`column op literal`, `column IN (literals)`)
/// cast to the column's type in `schema`, as DataFusion's type coercion would make them: a
/// physical expression compares values of one type, and the lake reads strings as views where
/// the hot tail holds plain strings.
pub(crate) fn typed_literals(expr: Expr, schema: &Schema) -> DfResult<Expr> {
    let type_of = |e: &Expr| match e {
        Expr::Column(c) => schema.field_with_name(c.name()).ok().map(|f| f.data_type().clone()),
        _ => None,
    };
    let cast_literal = |e: Expr, to: &DataType| -> DfResult<Expr> {
        match e {
            Expr::Literal(value, meta) if value.data_type() != *to => Ok(Expr::Literal(value.cast_to(to)?, meta)),
            other => Ok(other),
        }
    };
    expr.transform(|e| {
        Ok(match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (left, right) = match (type_of(&left), type_of(&right)) {
                    (Some(to), None) => (*left, cast_literal(*right, &to)?),
                    (None, Some(to)) => (cast_literal(*left, &to)?, *right),
                    _ => (*left, *right),
                };
                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right))))
            }
            Expr::InList(InList { expr, list, negated }) => match type_of(&expr) {
                Some(to) => {
                    let list = list.into_iter().map(|l| cast_literal(l, &to)).collect::<DfResult<_>>()?;
                    Transformed::yes(Expr::InList(InList { expr, list, negated }))
                }
                None => Transformed::no(Expr::InList(InList { expr, list, negated })),
            },
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
}

/// At most `groups` groups of about equal bytes, each read by one partition of the scan.
fn file_groups(mut files: Vec<PartitionedFile>, groups: usize) -> Vec<FileGroup> {
    let groups = groups.clamp(1, files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut out: Vec<(u64, Vec<PartitionedFile>)> = (0..groups).map(|_| (0, Vec::new())).collect();
    for file in files {
        let smallest = out.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one group");
        smallest.0 += file.object_meta.size;
        smallest.1.push(file);
    }
    out.into_iter().filter(|(_, files)| !files.is_empty()).map(|(_, files)| FileGroup::new(files)).collect()
}

#[async_trait::async_trait]
impl TableProvider for LakeFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on partition columns only are applied exactly (the files are chosen by them);
    /// the others prune row groups and pages, and DataFusion filters the rows read.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if self.partition_only(f) { TableProviderFilterPushDown::Exact } else { TableProviderFilterPushDown::Inexact })
            .collect())
    }

    async fn scan(&self, state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partition_filters: Vec<Expr> = filters.iter().filter(|f| self.partition_only(f)).cloned().collect();
        let files = self.pruned(state.execution_props(), &partition_filters)?;
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        }
        let source = self.parquet_source(state.runtime_env(), state.table_options().parquet.clone())?;
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(file_groups(files, state.config().target_partitions()))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

impl LakeFiles {
    /// DataFusion's Parquet source over this table's files, opened through `runtime`'s metadata
    /// cache with their page indexes.
    fn parquet_source(&self, runtime: &RuntimeEnv, options: TableParquetOptions) -> DfResult<ParquetSource> {
        let table_schema = TableSchema::builder(self.file_schema.clone()).with_table_partition_cols(self.partition_fields.clone()).build();
        let store = runtime.object_store(&self.store)?;
        let metadata_cache = runtime.cache_manager.get_file_metadata_cache();
        Ok(ParquetSource::new(table_schema)
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(WithPageIndex(CachedParquetFileReaderFactory::new(store, metadata_cache)))))
    }

    /// A plan reading `columns` of exactly the rows that pass `filter`, from the files whose
    /// partition values pass `partition_filters`, in at most `partitions` partitions. Built
    /// without a session: the expressions become physical ones against the table's schema with
    /// only their literals cast to the columns' types ([`typed_literals`]); nothing is analysed
    /// or optimised. `filter` prunes row groups and pages by their statistics and page index, and
    /// a filter over the scan keeps exactly the rows that pass it. For queries of one fixed shape
    /// (a dashboard's series), whose planning through a session costs more than reading their
    /// few pages.
    pub(crate) fn filtered_scan(
        &self,
        runtime: &RuntimeEnv,
        partition_filters: &[Expr],
        filter: &Expr,
        columns: &[&str],
        partitions: usize,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let props = ExecutionProps::new();
        let out: Vec<usize> = columns.iter().map(|c| self.schema.index_of(c)).collect::<std::result::Result<_, _>>()?;
        let filter = typed_literals(filter.clone(), &self.schema)?;
        let partition_filters =
            partition_filters.iter().map(|f| typed_literals(f.clone(), &self.schema)).collect::<DfResult<Vec<_>>>()?;
        let files = self.pruned(&props, &partition_filters)?;
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(Arc::new(self.schema.project(&out)?))));
        }
        let predicate = create_physical_expr(&filter, &self.row_schema, &props, &Default::default())?;
        // The scan reads the columns asked for and those the filter needs; the filter, planned
        // against the scan's columns, hands on the ones asked for.
        let mut read = out.clone();
        for column in filter.column_refs() {
            let index = self.schema.index_of(column.name())?;
            if !read.contains(&index) {
                read.push(index);
            }
        }
        let source = self.parquet_source(runtime, TableParquetOptions::default())?.with_predicate(predicate);
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(file_groups(files, partitions))
            .with_projection_indices(Some(read.clone()))?
            .build();
        let scan = DataSourceExec::from_data_source(config);
        let read_schema = DFSchema::try_from(self.schema.project(&read)?)?;
        let row_filter = create_physical_expr(&filter, &read_schema, &props, &Default::default())?;
        let kept = FilterExecBuilder::new(row_filter, scan).apply_projection(Some((0..out.len()).collect()))?.build()?;
        Ok(Arc::new(kept))
    }
}

/// Opens files through the runtime's metadata cache with their page index: DataFusion's opener
/// asks for the footer alone, caches that, and then read and parsed each file's page index
/// again at every query; asked for both, the cache keeps both.
#[derive(Debug)]
struct WithPageIndex(CachedParquetFileReaderFactory);

impl ParquetFileReaderFactory for WithPageIndex {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        Ok(Box::new(PageIndexReader(self.0.create_reader(partition_index, file, metadata_size_hint, metrics)?)))
    }
}

struct PageIndexReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for PageIndexReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(&'a mut self, options: Option<&'a ArrowReaderOptions>) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}
