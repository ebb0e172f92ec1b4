//! Query layer of Thinglake: every read of telemetry history goes through one DataFusion engine
//! over the lake's Delta tables and their hot tail (rows read from the log and not yet
//! committed), tenant-isolated by construction. The tables' specs, location, hot tail and the
//! rollup's arithmetic come from the lake crate (`thinglake_lake`); this crate adds DataFusion.
//!
//! - [`engine`]: [`QueryEngine`], its limits ([`QueryConfig`]), its own runtime for planning and
//!   execution, and per query a session whose only tables are the calling tenant's views.
//! - [`timeseries`]: ThingsBoard's time-series queries (raw points, AVG/MIN/MAX/SUM/COUNT per
//!   bucket) and their buckets; `timeseries_read` answers them through the engine.
//! - [`sql`]: read-only SQL (one SELECT, WITH or EXPLAIN) for a tenant, answered as Arrow
//!   ([`SqlBatches`]), JSON rows ([`SqlResult`]), an Arrow IPC stream or Parquet.
//! - [`views`]: the views built from the in-memory read models (`devices`, `assets`,
//!   `customers`, `relations`, `attributes`, `latest`); `telemetry` and `events` are lake views
//!   (the `events` payloads without secrets).
//! - [`admission`]: how many queries run at once, per user, tenant and node; analysts' SQL and
//!   dashboards' queries hold permits of separate pools.
//! - `bounded_functions`, `query_memory`: what one SQL statement may build and hold (amplifying
//!   functions refused past a size, a memory pool of its own).
//! - `eager_aggregate`: an optimizer rule of every session that aggregates the many side of a
//!   join (telemetry) before joining it with the few rows of the other (devices).
//! - [`page`]: ThingsBoard-style paging, text search and sorting of entity lists served from the
//!   in-memory read model.

pub mod admission;
mod bounded_functions;
mod eager_aggregate;
pub mod engine;
pub mod error;
mod events;
mod lake_files;
pub mod page;
mod query_memory;
pub mod sql;
pub mod timeseries;
mod timeseries_read;
pub mod views;

/// The Arrow, Parquet and DataFusion crates of the engine (deltalake-core's), for callers that
/// read or write its answers or look into its errors without a second copy of any.
pub use deltalake_core::{arrow, datafusion, parquet};
pub use admission::{ConcurrencyLimits, QueryPermit};
pub use engine::{EVENTS, QueryConfig, QueryEngine, TELEMETRY};
pub use error::{QueryError, Result};
pub use page::{PageData, PageError, PageLink, SortKey, SortOrder, paginate};
/// A value of a SQL statement's `$n` placeholder.
pub use deltalake_core::datafusion::scalar::ScalarValue;
pub use sql::{SqlBatches, SqlDescription, SqlFormat, SqlResult};
pub use timeseries::{Aggregation, Calendar, IntervalType, Order, TimeseriesQuery, TimeseriesResult, TsPoint};
pub use views::{AssetRow, AttributeRow, CustomerRow, DeviceRow, LatestRow, RelationRow, TenantViews};
