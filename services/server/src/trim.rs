//! `thinglake trim telemetry --before-seq N | --before-ms T | --older-than D`: purges old
//! telemetry from the log, never past what every lake table has committed (see `docs/lake.md`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use thinglake_projections::lake::projection::Source;
use thinglake_projections::lake::retention::{TrimPoint, trim};

use crate::lake_cli::{LakeArgs, LakeConnection};

/// Flags and environment variables of `thinglake trim`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["before_seq", "before_ms", "older_than"])))]
pub(crate) struct TrimArgs {
    /// The stream to trim: telemetry (the events stream is never trimmed).
    pub(crate) stream: String,
    /// Purge the messages with a smaller stream sequence.
    #[arg(long)]
    pub(crate) before_seq: Option<u64>,
    /// Purge the messages stored before this time (milliseconds since the Unix epoch).
    #[arg(long)]
    pub(crate) before_ms: Option<i64>,
    /// Purge the messages older than this: a number with s, m, h or d (`7d`, `12h`).
    #[arg(long, value_parser = parse_age)]
    pub(crate) older_than: Option<Duration>,
    /// Trim as far as the lake has committed instead of refusing when asked for more.
    #[arg(long)]
    pub(crate) clip: bool,
    #[command(flatten)]
    pub(crate) lake: LakeArgs,
}

/// `7d`, `12h`, `30m`, `90s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a number with a unit (7d, 12h, 30m, 90s)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

pub(crate) async fn run(args: TrimArgs) -> anyhow::Result<()> {
    let source = match args.stream.as_str() {
        "telemetry" => Source::Telemetry,
        "events" => Source::Events,
        other => bail!("unknown stream {other} (known: telemetry, events)"),
    };
    let point = match (args.before_seq, args.before_ms, args.older_than) {
        (Some(seq), _, _) => TrimPoint::Sequence(seq),
        (_, Some(ms), _) => TrimPoint::Time(ms),
        (_, _, Some(age)) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            TrimPoint::Time(i64::try_from(now.saturating_sub(age).as_millis())?)
        }
        _ => bail!("say where to trim: --before-seq, --before-ms or --older-than"),
    };
    let LakeConnection { js, subjects, location } = args.lake.connect().await?;
    let report = trim(&js, &subjects, &location, source, point, args.clip).await.context("trimming")?;
    let committed: Vec<String> = report.floor.projections.iter().map(|(name, seq)| format!("{name} {seq}")).collect();
    println!("lake committed: {}", committed.join(", "));
    if report.clipped {
        println!(
            "asked to keep from sequence {}; clipped to {} (the lake has committed up to {})",
            report.requested, report.keep_from, report.floor.seq
        );
    }
    println!("trimmed {}: {} messages purged; the stream now starts at sequence {}", report.stream, report.purged, report.first_seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_with_their_unit() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_age("7").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("3w").is_err());
    }
}
