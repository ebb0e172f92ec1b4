//! The query engine: one DataFusion runtime (memory pool, object stores) and a dedicated tokio
//! runtime for planning and execution, and per query a session whose only tables are the calling
//! tenant's views.
//!
//! Tenant isolation is by construction: a session is built for one tenant and registers
//! `telemetry` and `events` as views over their lake table and hot tail, both filtered to that
//! tenant (and, for a customer user, to the entities it may see), beside the read-model views the
//! platform narrowed the same way. The underlying table providers are never registered under a
//! name, so no SQL can reach them.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake_core::DeltaTable;
use deltalake_core::arrow::array::{AsArray, RecordBatch};
use deltalake_core::arrow::compute::filter_record_batch;
use deltalake_core::arrow::compute::kernels::aggregate;
use deltalake_core::datafusion::common::DFSchema;
use deltalake_core::datafusion::execution::TaskContext;
use deltalake_core::datafusion::logical_expr::execution_props::ExecutionProps;
use deltalake_core::datafusion::logical_expr::utils::conjunction;
use deltalake_core::datafusion::physical_expr::create_physical_expr;
use deltalake_core::datafusion::physical_plan::execute_stream;
use futures::StreamExt as _;
use thinglake_domain::{TenantId, UserId};
use deltalake_core::arrow::datatypes::{DataType, Int64Type};
use deltalake_core::arrow::error::ArrowError;
use deltalake_core::datafusion::datasource::{MemTable, TableProvider, ViewTable};
use deltalake_core::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake_core::datafusion::functions::core::expr_fn::{greatest, least, nullif};
use deltalake_core::datafusion::functions_aggregate::expr_fn::{max, min, sum};
use deltalake_core::datafusion::prelude::{DataFrame, Expr, SessionConfig, SessionContext, cast, ident, lit, when};
use thinglake_lake::table::{TableSpec, events, telemetry, telemetry_hourly};
use thinglake_lake::{HotTail, LakeLocation};
use tokio::sync::Mutex;
use tokio_util::task::AbortOnDropHandle;

use crate::admission::{Admission, ConcurrencyLimits, QueryPermit};
use crate::bounded_functions::register_bounded_functions;
use crate::eager_aggregate::EagerAggregate;
use crate::query_memory::QueryMemoryPool;
use crate::error::{QueryError, Result};
use crate::events::{payload_functions, redacted_payload};
use crate::lake_files::{LakeFiles, query_type, typed_literals};
use crate::views::TenantViews;

/// The name of the tenant-filtered telemetry view (and of the lake table and its `txn` app id).
pub const TELEMETRY: &str = thinglake_lake::table::LAKE_TELEMETRY;

/// The name of the tenant-filtered events view (and of the lake table and its `txn` app id).
pub const EVENTS: &str = thinglake_lake::table::LAKE_EVENTS;

/// The name of the tenant-filtered hourly rollup view (and of its lake table and `txn` app id).
pub const TELEMETRY_HOURLY: &str = thinglake_lake::table::LAKE_TELEMETRY_HOURLY;

/// Limits and resources of the engine.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// A query running longer is cancelled (ThingsBoard REST queries and SQL alike).
    pub time_limit: Duration,
    /// A SQL result with more rows is refused.
    pub max_rows: usize,
    /// A SQL result larger than this many bytes (Arrow, as it streams) is stopped and refused.
    pub max_result_bytes: usize,
    /// Memory all running queries may hold together, in bytes.
    pub memory_limit: usize,
    /// Memory one SQL statement may hold, in bytes (within `memory_limit`).
    pub sql_memory_limit: usize,
    /// Bytes all running queries may spill to temporary files together.
    pub spill_limit: u64,
    /// Bytes one call of an amplifying SQL function (`repeat`, `lpad`, `range`, …) may build
    /// for a batch ([`crate::bounded_functions`]).
    pub max_function_bytes: usize,
    /// Concurrent queries per user, tenant and node.
    pub concurrency: ConcurrencyLimits,
    /// Threads of the query runtime (dashboards' time-series queries), and DataFusion's target
    /// partitions.
    pub threads: usize,
    /// Threads of the runtime of analysts' SQL, apart from the dashboards' so their queries
    /// never wait behind a statement.
    pub sql_threads: usize,
    /// Most buckets of one aggregated time-series query (ThingsBoard's
    /// `database.ts_max_intervals`, 700 by default).
    pub max_intervals: i64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            time_limit: Duration::from_secs(30),
            max_rows: 100_000,
            max_result_bytes: 256 << 20,
            memory_limit: 1 << 30,
            sql_memory_limit: 256 << 20,
            spill_limit: 1 << 30,
            max_function_bytes: 64 << 20,
            concurrency: ConcurrencyLimits::default(),
            threads: 2,
            sql_threads: 2,
            max_intervals: crate::timeseries::MAX_BUCKETS,
        }
    }
}

/// The query layer's entry point. Cheap to clone.
#[derive(Clone)]
pub struct QueryEngine {
    inner: Arc<Inner>,
}

struct Inner {
    config: QueryConfig,
    location: LakeLocation,
    /// The hot tails of the lake tables, by table name (when the projections run in this process).
    tails: BTreeMap<&'static str, HotTail>,
    /// The lake tables, each opened once and brought up to date when a query needs it
    /// ([`QueryEngine::lake_table`]).
    tables: BTreeMap<&'static str, Mutex<LakeSlot>>,
    /// Per table, the `txn` sequence its last-seen version committed (reading it back replays
    /// the Delta log, so it is read once per table version).
    committed: std::sync::Mutex<BTreeMap<&'static str, (Option<u64>, i64)>>,
    runtime_env: Arc<RuntimeEnv>,
    runtime: QueryRuntime,
    /// Analysts' SQL runs here, apart from the dashboards' queries on `runtime`.
    sql_runtime: QueryRuntime,
    admission: Admission,
}

/// Which runtime a query runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Time-series REST and WebSocket queries of dashboards.
    Dashboard,
    /// SQL (REST and PostgreSQL wire).
    Sql,
}

/// How stale a held lake table version may be when the hot tail shows nothing newer was
/// committed by this process.
const TABLE_REFRESH: Duration = Duration::from_secs(1);

/// A lake table as the engine holds it: `None` until it exists.
#[derive(Default)]
struct LakeSlot {
    table: Option<DeltaTable>,
    /// The live files of the held version, as queries read them.
    files: Option<Arc<LakeFiles>>,
    /// When the table was last brought up to date.
    refreshed: Option<Instant>,
}

/// A lake table as one query reads it ([`QueryEngine::lake_read`]).
struct LakeRead {
    /// The files of the table's latest version; `None` while the table does not exist.
    files: Option<Arc<LakeFiles>>,
    /// The `txn` sequence that version has committed (0 if none).
    committed: i64,
    /// The hot tail's batches with rows above `committed`.
    tail: Vec<RecordBatch>,
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEngine")
            .field("config", &self.inner.config)
            .field("location", &self.inner.location)
            .field("hot_tails", &self.inner.tails.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A tokio runtime for DataFusion work, so plans and scans do not hold the I/O runtime's
/// threads. Shut down in the background when the engine goes, which is allowed from async code.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the runtime is only taken on drop").handle()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl QueryEngine {
    /// An engine over the lake at `location`; `tails` are the hot tails (rows not yet committed)
    /// of the `telemetry` and `events` tables by name, when the lake projections run in this
    /// process.
    pub fn new(location: LakeLocation, tails: BTreeMap<&'static str, HotTail>, config: QueryConfig) -> Result<Self> {
        let start = |threads: usize, name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(name)
                .enable_all()
                .build()
                .map_err(|source| QueryError::Runtime { name: name.to_string(), source })
        };
        let runtime = start(config.threads, "thinglake-query")?;
        let sql_runtime = start(config.sql_threads, "thinglake-sql")?;
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit, 1.0)
            .with_max_temp_directory_size(config.spill_limit)
            .build_arc()
            .map_err(QueryError::execution)?;
        let inner = Inner {
            admission: Admission::new(config.concurrency.clone()),
            config,
            location,
            tails,
            tables: [TELEMETRY, TELEMETRY_HOURLY, EVENTS].into_iter().map(|t| (t, Mutex::default())).collect(),
            committed: std::sync::Mutex::default(),
            runtime_env,
            runtime: QueryRuntime(Some(runtime)),
            sql_runtime: QueryRuntime(Some(sql_runtime)),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &QueryConfig {
        &self.inner.config
    }

    /// Permits for one SQL statement of `user` of `tenant`, held while it runs (and while its
    /// answer is sent), or [`QueryError::Busy`] at once when one of the limits
    /// ([`ConcurrencyLimits`]) is taken up.
    pub fn admit_sql(&self, tenant: TenantId, user: UserId) -> Result<QueryPermit> {
        self.inner.admission.admit_sql(tenant, user)
    }

    /// A permit for one dashboard query of `tenant`, waiting for one up to the time limit.
    pub(crate) async fn admit_dashboard(&self, tenant: TenantId) -> Result<QueryPermit> {
        self.inner.admission.admit_dashboard(tenant, self.inner.config.time_limit).await
    }

    /// Runs `work` on the `lane`'s runtime within the time limit. Dropping the returned future
    /// (the client went away) cancels the work.
    pub(crate) async fn run<T, F>(&self, lane: Lane, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let limit = self.inner.config.time_limit;
        let runtime = match lane {
            Lane::Dashboard => &self.inner.runtime,
            Lane::Sql => &self.inner.sql_runtime,
        };
        let task = AbortOnDropHandle::new(runtime.handle().spawn(work));
        match tokio::time::timeout(limit, task).await {
            Err(_) => Err(QueryError::Timeout { limit }),
            Ok(Err(source)) => Err(QueryError::Task { source }),
            Ok(Ok(result)) => result,
        }
    }

    /// A session for ThingsBoard's raw time-series queries of `tenant`, with only the
    /// `telemetry` view they read (each lake view costs a table refresh per query). Never a
    /// session for SQL: no user statement runs in it. Its plans are small and alike, so they are
    /// optimised in one pass.
    pub(crate) async fn timeseries_session(&self, tenant: TenantId) -> Result<SessionContext> {
        let ctx = self.session(self.inner.runtime_env.clone(), self.inner.config.threads, Some(1));
        let telemetry = self.lake_view(&ctx, &telemetry(), tenant, None, false).await?;
        ctx.register_table(TELEMETRY, view_of(telemetry)).map_err(QueryError::execution)?;
        Ok(ctx)
    }

    /// A session that sees only `tenant`'s rows: `telemetry`, `telemetry_hourly`, `events` (when
    /// `views.audit_trail`) and the read-model views (`views`, the rows the platform narrowed to
    /// the caller), the lake views narrowed to `views.visible_entities`. Its memory pool is the
    /// statement's own (within the engine's), and its amplifying functions are bounded
    /// ([`register_bounded_functions`]).
    pub(crate) async fn tenant_session(&self, tenant: TenantId, views: &TenantViews) -> Result<SessionContext> {
        let shared = &self.inner.runtime_env;
        let pool = QueryMemoryPool::new(shared.memory_pool.clone(), self.inner.config.sql_memory_limit);
        let runtime_env =
            RuntimeEnvBuilder::from_runtime_env(shared).with_memory_pool(Arc::new(pool)).build_arc().map_err(QueryError::execution)?;
        let ctx = self.session(runtime_env, self.inner.config.threads, None);
        register_bounded_functions(&ctx, self.inner.config.max_function_bytes);
        let visible = views.visible_entities.as_deref();
        let df_error = QueryError::execution;
        let telemetry = self.lake_view(&ctx, &telemetry(), tenant, visible, true).await?;
        ctx.register_table(TELEMETRY, view_of(telemetry)).map_err(df_error)?;
        let parts = self.lake_view(&ctx, &telemetry_hourly(), tenant, visible, true).await?;
        ctx.register_table(TELEMETRY_HOURLY, view_of(merged_hourly(parts)?)).map_err(df_error)?;
        if views.audit_trail {
            let events = self.lake_view(&ctx, &events(), tenant, visible, true).await?;
            // Secrets stay on the log (replay needs them) and never reach a query.
            let columns: Vec<Expr> = events
                .schema()
                .fields()
                .iter()
                .map(|f| if f.name() == "payload" { redacted_payload(ident("payload")).alias("payload") } else { ident(f.name()) })
                .collect();
            let events = events.select(columns).map_err(df_error)?;
            ctx.register_table(EVENTS, view_of(events)).map_err(df_error)?;
            for function in payload_functions() {
                ctx.register_udf(function);
            }
        }
        for (name, table) in views.tables()? {
            ctx.register_table(name, Arc::new(table)).map_err(df_error)?;
        }
        Ok(ctx)
    }

    /// A session of `partitions` target partitions over `runtime_env`; `optimizer_passes` bounds
    /// the logical optimiser's passes (DataFusion's default when `None`).
    fn session(&self, runtime_env: Arc<RuntimeEnv>, partitions: usize, optimizer_passes: Option<usize>) -> SessionContext {
        let mut config = SessionConfig::new().with_target_partitions(partitions.max(1)).with_information_schema(false);
        if let Some(passes) = optimizer_passes {
            config.options_mut().optimizer.max_passes = passes;
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime_env);
        ctx.add_optimizer_rule(Arc::new(EagerAggregate));
        ctx
    }

    /// A lake table for one tenant (and only the `visible` entities, when given): the table's
    /// latest version unioned with the hot tail's rows that version does not cover yet. The
    /// columns are in the table's order when `ordered` (a view people query) or a union needs
    /// it; otherwise as the scan gives them (partition columns last), one projection less to plan.
    async fn lake_view(&self, ctx: &SessionContext, spec: &TableSpec, tenant: TenantId, visible: Option<&[String]>, ordered: bool) -> Result<DataFrame> {
        let LakeRead { files, committed, tail } = self.lake_read(spec).await?;
        let mut rows_wanted = ident("tenant_id").eq(lit(tenant.to_string()));
        if let Some(visible) = visible {
            rows_wanted = rows_wanted.and(ident("entity_id").in_list(visible.iter().map(|id| lit(id.as_str())).collect(), false));
        }
        let df_error = QueryError::execution;
        let mut lake: Option<DataFrame> = None;
        if let Some(files) = files {
            let df = ctx.read_table(files).map_err(df_error)?;
            lake = Some(df.filter(rows_wanted.clone()).map_err(df_error)?);
        }
        // Most of the time the table version covers the whole tail: no union to plan then.
        if let Some(lake) = lake.as_ref()
            && tail.is_empty()
        {
            return if ordered { lake.clone().select(canonical(spec)).map_err(df_error) } else { Ok(lake.clone()) };
        }
        let lake = lake.map(|lake| lake.select(canonical(spec))).transpose().map_err(df_error)?;
        let tail = MemTable::try_new(spec.schema.clone(), vec![tail]).map_err(df_error)?;
        let tail = ctx
            .read_table(Arc::new(tail))
            .map_err(df_error)?
            .filter(rows_wanted.and(ident("seq").gt(lit(committed))))
            .map_err(df_error)?
            .select(canonical(spec))
            .map_err(df_error)?;
        match lake {
            Some(lake) => lake.union(tail).map_err(df_error),
            None => Ok(tail),
        }
    }

    /// Hands `each` the batches of `columns` of `tenant`'s rows of the `spec` table that pass
    /// `filter` and `partition_filters` (which read partition columns only), as they are read
    /// (none is held after `each` returns), from the lake and from the rows of its hot tail the
    /// lake has not committed yet — the rows [`QueryEngine::lake_view`] gives, read with no
    /// session: the lake through [`LakeFiles::filtered_scan`], the tail's batches filtered
    /// directly. A dashboard's one-series query spends microseconds here where a session's
    /// analysis, optimisation and physical planning took about a millisecond
    /// (docs/benchmarks.md, *Aggregated time-series queries planned by hand*). Literals need not have the
    /// columns' types: they are cast to them ([`typed_literals`]). The lake's strings come as
    /// string views, the tail's as plain strings.
    pub(crate) async fn rows_where(
        &self,
        spec: &TableSpec,
        tenant: TenantId,
        partition_filters: &[Expr],
        filter: &Expr,
        columns: &[&str],
        mut each: impl FnMut(&RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let df_error = QueryError::execution;
        let LakeRead { files, committed, tail } = self.lake_read(spec).await?;
        let mut partition_filters = partition_filters.to_vec();
        partition_filters.push(ident("tenant_id").eq(lit(tenant.to_string())));
        if let Some(files) = files {
            let plan = files.filtered_scan(&self.inner.runtime_env, &partition_filters, filter, columns, self.inner.config.threads).map_err(df_error)?;
            let task = Arc::new(TaskContext::default().with_runtime(self.inner.runtime_env.clone()));
            let mut batches = execute_stream(plan, task).map_err(QueryError::from_datafusion)?;
            while let Some(batch) = batches.next().await {
                each(&batch.map_err(QueryError::from_datafusion)?)?;
            }
        }
        let Some(first) = tail.first() else { return Ok(()) };
        let schema = first.schema();
        let wanted = conjunction(partition_filters.into_iter().chain([filter.clone(), ident("seq").gt(lit(committed))]))
            .expect("at least the tenant filter");
        let wanted = typed_literals(wanted, &schema).map_err(df_error)?;
        let dfschema = DFSchema::try_from(schema.clone()).map_err(df_error)?;
        let predicate = create_physical_expr(&wanted, &dfschema, &ExecutionProps::new(), &Default::default()).map_err(df_error)?;
        let arrow_error = |e: ArrowError| QueryError::execution(e.into());
        let indices = columns.iter().map(|c| schema.index_of(c)).collect::<std::result::Result<Vec<_>, _>>().map_err(arrow_error)?;
        for batch in &tail {
            let keep = predicate.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())).map_err(df_error)?;
            let kept = filter_record_batch(batch, keep.as_boolean()).map_err(arrow_error)?;
            if kept.num_rows() > 0 {
                each(&kept.project(&indices).map_err(arrow_error)?)?;
            }
        }
        Ok(())
    }

    /// What a query of the `spec` table reads: its latest version ([`QueryEngine::lake_table`])
    /// and the hot tail's batches with rows that version has not committed. The tail first, then
    /// the table: a row trimmed from the tail meanwhile was committed before, so the version read
    /// next has it; of the kept batches, only rows above [`LakeRead::committed`] are to be read,
    /// so no row is counted twice.
    async fn lake_read(&self, spec: &TableSpec) -> Result<LakeRead> {
        let tail = self.inner.tails.get(spec.name).map(HotTail::snapshot);
        let table = self.lake_table(spec, tail.as_ref().map(|t| t.trimmed)).await?;
        let (files, committed) = match table {
            Some((table, files)) => (Some(files), self.committed_seq(spec.name, &table).await?),
            None => (None, 0),
        };
        let uncommitted = |batch: &RecordBatch| {
            let seq = batch.column_by_name("seq").and_then(|c| c.as_primitive_opt::<Int64Type>());
            batch.num_rows() > 0 && seq.and_then(aggregate::max).is_none_or(|seq| seq > committed)
        };
        let tail = tail.map(|t| t.rows.into_iter().filter(uncommitted).collect()).unwrap_or_default();
        Ok(LakeRead { files, committed, tail })
    }

    /// The `txn` sequence the table's current version has committed (0 if none).
    async fn committed_seq(&self, name: &'static str, table: &DeltaTable) -> Result<i64> {
        let version = table.version();
        if let Some(seq) = self.known_committed(name, version) {
            return Ok(seq);
        }
        let lake_error = |e| QueryError::lake(name, e);
        let snapshot = table.snapshot().map_err(lake_error)?;
        let seq = snapshot.transaction_version(table.log_store().as_ref(), name).await.map_err(lake_error)?.unwrap_or(0);
        self.inner.committed.lock().unwrap_or_else(|p| p.into_inner()).insert(name, (version, seq));
        Ok(seq)
    }

    /// The `txn` sequence of `version` of table `name`, when it was read before.
    fn known_committed(&self, name: &'static str, version: Option<u64>) -> Option<i64> {
        let cached = self.inner.committed.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied();
        cached.and_then(|(seen, seq)| (seen == version).then_some(seq))
    }

    /// A lake table at its latest version; `None` while it does not exist yet.
    ///
    /// With the table's hot tail in this process (`tail_trimmed`: how far the tail had dropped
    /// committed rows), the version already held is kept when it covers what the tail dropped
    /// and was brought up to date less than [`TABLE_REFRESH`] ago: it and the tail together hold
    /// every row read, so a burst of queries (a dashboard's widgets) pays one refresh, not one
    /// each. Versions that add no rows (compaction) or come from another process (a rebuild)
    /// are seen within [`TABLE_REFRESH`].
    async fn lake_table(&self, spec: &TableSpec, tail_trimmed: Option<u64>) -> Result<Option<(DeltaTable, Arc<LakeFiles>)>> {
        let name = spec.name;
        let slot = self.inner.tables.get(name).ok_or_else(|| QueryError::UnknownTable { name: name.to_string() })?;
        let mut cached = slot.lock().await;
        let LakeSlot { table, files, refreshed } = &mut *cached;
        match table.as_mut() {
            Some(held)
                if tail_trimmed.is_some_and(|trimmed| {
                    refreshed.is_some_and(|at| at.elapsed() < TABLE_REFRESH)
                        && self.known_committed(name, held.version()).is_some_and(|seq| seq >= i64::try_from(trimmed).unwrap_or(i64::MAX))
                }) => {}
            Some(held) => {
                held.update_incremental(None).await.map_err(|e| QueryError::lake(name, e))?;
                *refreshed = Some(Instant::now());
            }
            // Not created yet (the projection creates it at start).
            None if self.inner.location.local_dir(name).is_some_and(|dir| !dir.exists()) => {}
            None => {
                *table = self
                    .inner
                    .location
                    .open(name)
                    .await
                    .map_err(|source| QueryError::LakeOpen { table: name, source: Box::new(source) })?;
                *refreshed = Some(Instant::now());
            }
        }
        let Some(table) = table.as_ref() else { return Ok(None) };
        let current = match files.as_ref() {
            Some(held) if held.version() == table.version() => held.clone(),
            _ => {
                let listed = Arc::new(LakeFiles::of(spec, table, &self.inner.runtime_env)?);
                *files = Some(listed.clone());
                listed
            }
        };
        Ok(Some((table.clone(), current)))
    }
}

/// The `telemetry_hourly` view: one row per entity, key and hour (the table's partial rows of an
/// hour merged), with the typed counts, sums and extremes ThingsBoard's aggregation needs and,
/// for people, `numeric_count`, `sum`, `min`, `max` and `avg` over longs and doubles as doubles.
fn merged_hourly(partial: DataFrame) -> Result<DataFrame> {
    let df_error = QueryError::execution;
    let merged = partial
        .aggregate(
            ["entity_type", "entity_id", "key", "ts"].map(ident).to_vec(),
            vec![
                sum(ident("count")).alias("count"),
                sum(ident("long_count")).alias("long_count"),
                sum(ident("double_count")).alias("double_count"),
                sum(ident("long_sum")).alias("long_sum"),
                sum(ident("double_sum")).alias("double_sum"),
                min(ident("long_min")).alias("long_min"),
                max(ident("long_max")).alias("long_max"),
                min(ident("double_min")).alias("double_min"),
                max(ident("double_max")).alias("double_max"),
            ],
        )
        .map_err(df_error)?;
    let double = |name: &str| cast(ident(name), DataType::Float64);
    let numeric = ident("long_count") + ident("double_count");
    let total = double("long_sum") + ident("double_sum");
    let mut columns: Vec<Expr> = [
        "ts",
        "entity_type",
        "entity_id",
        "key",
        "count",
        "long_count",
        "double_count",
        "long_sum",
        "double_sum",
        "long_min",
        "long_max",
        "double_min",
        "double_max",
    ]
    .map(ident)
    .to_vec();
    columns.extend([
        numeric.clone().alias("numeric_count"),
        when(numeric.clone().gt(lit(0i64)), total.clone()).end().map_err(df_error)?.alias("sum"),
        least(vec![double("long_min"), ident("double_min")]).alias("min"),
        greatest(vec![double("long_max"), ident("double_max")]).alias("max"),
        (total / nullif(cast(numeric, DataType::Float64), lit(0.0))).alias("avg"),
    ]);
    merged.select(columns).map_err(df_error)
}

fn view_of(df: DataFrame) -> Arc<dyn TableProvider> {
    Arc::new(ViewTable::new(df.into_unoptimized_plan(), None))
}

/// The table's columns in schema order with the types queries read them as ([`query_type`]: the
/// lake scan's, so only the tail's few rows are cast): the lake scan (data columns, then
/// partition columns) and the tail (the table's order) agree.
fn canonical(spec: &TableSpec) -> Vec<Expr> {
    spec.schema.fields().iter().map(|f| cast(ident(f.name()), query_type(spec, f)).alias(f.name())).collect()
}
