//! The lake of Thinglake: Delta Lake tables (Parquet files plus a Delta transaction log) on a
//! local directory or S3-compatible object storage, and what reads and writes them without a
//! query engine. The projections (`thinglake-projections`) decide the rows from the log and write
//! them through this crate; the query layer (`thinglake-queries`) reads the tables and the hot
//! tail through it, with DataFusion on top.
//!
//! - [`table`]: the tables' names, schemas and partitioning (see `docs/lake.md`), and a row
//!   builder in schema order.
//! - [`partition`]: the partition values of a timestamp (UTC day and month).
//! - [`rollup`]: the arithmetic of `telemetry_hourly`'s partial aggregates (hours, merges).
//! - [`store`]: where the tables live ([`LakeLocation`]: a local directory, or a URL) and
//!   opening/creating them.
//! - [`s3`]: S3-compatible object storage (`s3://bucket/prefix`).
//! - [`writer`]: Parquet files of a table committed with a position on the log (a Delta `txn`).
//! - [`unwritable`]: the rows of a batch the writer refuses, found and set aside.
//! - [`scan`]: a table's current rows read back file by file.
//! - [`hot_tail`]: rows read from the log and not yet committed, for queries.
//! - [`upkeep`]: compaction of small files, vacuum; checkpoints come with the commits.
//! - [`error`]: [`LakeError`], which says whether retrying can help.

pub mod error;
pub mod hot_tail;
pub mod partition;
pub mod rollup;
pub mod s3;
pub mod scan;
pub mod store;
pub mod table;
pub mod unwritable;
pub mod upkeep;
pub mod writer;

pub use error::{LakeError, Result};
pub use hot_tail::{HotTail, TailSnapshot};
pub use s3::S3Options;
pub use store::LakeLocation;
pub use table::{PAGE_ROWS, TableSpec};
pub use writer::ROW_GROUP_ROWS;
