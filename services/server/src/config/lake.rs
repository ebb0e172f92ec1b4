//! The lake's options: where its Delta tables live (a directory or S3), how often the
//! projections commit, how long telemetry stays on the log.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use thinglake_lake::{LakeLocation, S3Options};

use crate::config::{Secret, duration};

/// Where the lake lives and how it is written.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Lake")]
pub struct LakeArgs {
    /// Where the lake's Delta tables live: a directory, `file://` URL or `s3://bucket/prefix`
    /// (unset: `<data_dir>/lake`).
    #[arg(long, env = "THINGLAKE_LAKE_URL")]
    pub lake_url: Option<String>,
    #[command(flatten)]
    pub lake_s3: LakeS3Args,
    /// How long the lake projections gather rows before a commit (rows are queryable from the
    /// hot tail meanwhile); milliseconds, or a duration (`2s`).
    #[arg(long, env = "THINGLAKE_LAKE_COMMIT_INTERVAL_MS", default_value = "2000", value_parser = duration::milliseconds)]
    pub lake_commit_interval_ms: Duration,
    /// How long telemetry stays on the log (168 hours = 7 days; 0 keeps it forever); hours, or a
    /// duration (`30days`). Older messages are trimmed, but never before every lake table has
    /// committed them.
    #[arg(long, env = "THINGLAKE_TELEMETRY_RETENTION_HOURS", default_value = "168", value_parser = duration::hours)]
    pub telemetry_retention_hours: Duration,
}

/// Settings of an `s3://` lake (shared by `thinglake run`, `rebuild` and `trim`). Each unset
/// one falls back to the standard `AWS_*` environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct LakeS3Args {
    /// Endpoint of an S3-compatible server (MinIO, Ceph: `http://host:9000`) for an `s3://`
    /// lake; unset: `AWS_ENDPOINT_URL`, else AWS S3.
    #[arg(long, env = "THINGLAKE_LAKE_S3_ENDPOINT")]
    pub lake_s3_endpoint: Option<String>,
    /// Region of the lake's bucket; unset: `AWS_REGION`, else `us-east-1`.
    #[arg(long, env = "THINGLAKE_LAKE_S3_REGION")]
    pub lake_s3_region: Option<String>,
    /// Access key id for the lake's bucket; unset: `AWS_ACCESS_KEY_ID`, else the instance's role.
    #[arg(long, env = "THINGLAKE_LAKE_S3_ACCESS_KEY_ID")]
    pub lake_s3_access_key_id: Option<String>,
    /// Secret access key for the lake's bucket; unset: `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "THINGLAKE_LAKE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub lake_s3_secret_access_key: Option<Secret>,
    /// Allow a plain-HTTP S3 endpoint (`true`); unset: `AWS_ALLOW_HTTP`, else HTTPS only.
    #[arg(long, env = "THINGLAKE_LAKE_S3_ALLOW_HTTP")]
    pub lake_s3_allow_http: Option<bool>,
}

impl LakeS3Args {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.lake_s3_endpoint.clone().filter(|v| !v.trim().is_empty()),
            region: self.lake_s3_region.clone().filter(|v| !v.trim().is_empty()),
            access_key_id: self.lake_s3_access_key_id.clone().filter(|v| !v.is_empty()),
            secret_access_key: Secret::non_empty(self.lake_s3_secret_access_key.clone()).map(|s| s.expose().to_string()),
            allow_http: self.lake_s3_allow_http,
        }
    }
}

/// The lake at `lake_url` (`None`: `<data_dir>/lake`) with `s3`'s settings; S3 settings without an
/// `s3://` URL are refused.
pub fn lake_location(lake_url: Option<&str>, data_dir: &Path, s3: &S3Options) -> anyhow::Result<LakeLocation> {
    match lake_url {
        Some(url) => LakeLocation::parse_with(url, s3).context("opening the lake location"),
        None => {
            anyhow::ensure!(s3.is_empty(), "the lake_s3_* settings need an s3:// lake_url (the lake is {}/lake)", data_dir.display());
            LakeLocation::local(&data_dir.join("lake")).context("opening the lake location")
        }
    }
}
