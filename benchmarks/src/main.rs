//! `thinglake-bench SUITE`: end-to-end benchmark suites, each printing JSON lines with a
//! baseline measured in the same run. Run through `benchmarks/run`.

mod append;
mod ingest;
mod lake;
mod lake_s3;
mod postgres;
mod query;
mod report;
mod setup;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "thinglake-bench", about = "Thinglake benchmark suites")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// Commands/s through the event-sourced write path next to raw JetStream publishes/s.
    Append(append::Options),
    /// Telemetry points/s through MQTT next to raw JetStream; connections held and server RSS.
    Ingest(ingest::Options),
    /// Internal: holds MQTT connections for the `ingest` suite's connection test.
    #[command(hide = true)]
    HoldConnections(ingest::HoldOptions),
    /// Lake projections: throughput, rebuild rate, freshness, bytes per point vs PostgreSQL's ts_kv.
    Lake(lake::Options),
    /// The telemetry projection, rebuild and commit latency with the lake on S3 (moto) next to a local directory.
    LakeS3(lake_s3::Options),
    /// Queries (chart, latest values, fleet aggregate) next to PostgreSQL with ThingsBoard's ts_kv, and DuckDB.
    Query(query::Options),
}

/// The server side of the suites runs in this process: the same allocator as `thinglake`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().suite {
        Suite::Append(options) => append::run(options).await,
        Suite::Ingest(options) => ingest::run(options).await,
        Suite::HoldConnections(options) => ingest::hold(options).await,
        Suite::Lake(options) => lake::run(options).await,
        Suite::LakeS3(options) => lake_s3::run(options).await,
        Suite::Query(options) => Box::pin(query::run(options)).await,
    }
}
