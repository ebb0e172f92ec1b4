//! `thinglake rebuild TABLE`: rebuilds one lake table from the log into a new table version,
//! while the platform keeps running and ingesting (see `docs/lake.md`).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use thinglake_projections::lake::projection::ProjectionKind;
use thinglake_projections::lake::rebuild::{RebuildProgress, rebuild};

use crate::lake_cli::{LakeArgs, LakeConnection};

/// Flags and environment variables of `thinglake rebuild`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RebuildArgs {
    /// The table to rebuild: telemetry, events, entity_versions, attribute_versions or
    /// relation_versions.
    pub(crate) table: String,
    #[command(flatten)]
    pub(crate) lake: LakeArgs,
}

/// Runs the rebuild, printing progress about once a second.
pub(crate) async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let kind = ProjectionKind::from_name(&args.table).with_context(|| {
        let known: Vec<_> = ProjectionKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown table {} (known: {})", args.table, known.join(", "))
    })?;
    let LakeConnection { js, subjects, location } = args.lake.connect().await?;
    let started = Instant::now();
    let mut last_print = Instant::now();
    let report = rebuild(&js, &subjects, &location, kind, |p: RebuildProgress| {
        if last_print.elapsed() >= Duration::from_secs(1) || p.seq >= p.target {
            last_print = Instant::now();
            let rate = p.messages as f64 / started.elapsed().as_secs_f64().max(1e-3);
            println!(
                "rebuild {}: sequence {}/{} ({:.0}%), {} rows, {:.0} messages/s; seconds in {:.2}",
                kind.name(),
                p.seq,
                p.target,
                100.0 * p.seq as f64 / p.target.max(1) as f64,
                p.rows,
                rate,
                p.phases,
            );
        }
    })
    .await
    .with_context(|| format!("rebuilding {}", kind.name()))?;
    match report.version {
        Some(version) => println!(
            "rebuilt {} up to sequence {}: {} rows from {} log messages and {} events of the events table, {} rows of \
             trimmed messages kept, in {:.2} s; version {version} adds {} files, removes {}\n\
             seconds in {:.2}, commit {:.2}",
            report.table,
            report.target,
            report.rows,
            report.messages,
            report.archived_events,
            report.rows_kept,
            report.elapsed.as_secs_f64(),
            report.files_added,
            report.files_removed,
            report.phases,
            report.phases.commit.as_secs_f64(),
        ),
        None => println!("{}: nothing committed yet, nothing to rebuild", report.table),
    }
    Ok(())
}
