//! What the lake commands (`thinglake rebuild`, `thinglake trim`) share: where the running
//! platform's log and lake are, and connecting to them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use thinglake_infra::subjects::{DEFAULT_PREFIX, Subjects};
use thinglake_lake::LakeLocation;

use thinglake_server::config::{LakeS3Args, lake_location};

/// Flags and environment variables naming the platform's NATS server and lake.
#[derive(Debug, Clone, Args)]
pub(crate) struct LakeArgs {
    /// NATS server holding the log (the running platform's).
    #[arg(long, env = "THINGLAKE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats_url: String,
    /// The platform's data directory (the lake is `<data_dir>/lake` unless `--lake-url`).
    #[arg(long, env = "THINGLAKE_DATA_DIR", default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// Where the lake's Delta tables live: a directory, `file://` URL or `s3://bucket/prefix`.
    #[arg(long, env = "THINGLAKE_LAKE_URL")]
    pub(crate) lake_url: Option<String>,
    #[command(flatten)]
    pub(crate) lake_s3: LakeS3Args,
    /// Prefix of every NATS subject, stream and bucket name.
    #[arg(long, env = "THINGLAKE_SUBJECT_PREFIX", default_value = DEFAULT_PREFIX)]
    pub(crate) subject_prefix: String,
}

/// The log and the lake a lake command works on.
pub(crate) struct LakeConnection {
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) location: LakeLocation,
}

impl LakeArgs {
    /// Opens the lake and connects to NATS.
    pub(crate) async fn connect(&self) -> anyhow::Result<LakeConnection> {
        let location = lake_location(self.lake_url.as_deref(), &self.data_dir, &self.lake_s3.options())?;
        Box::pin(location.check()).await.context("checking the lake location")?;
        // The supervised server's platform user, read from the data directory, unless the URL
        // carries credentials.
        let supervised = thinglake_infra::nats_auth::NatsCredentials::load(&self.data_dir.join("nats"))
            .context("reading the supervised nats-server's credentials")?
            .map(|c| c.platform)
            .filter(|_| !self.nats_url.contains('@'));
        let (options, url) = thinglake_infra::nats_auth::client_options(&self.nats_url, supervised.as_ref());
        let client = options.connect(&url).await.with_context(|| format!("connecting to NATS at {url}"))?;
        Ok(LakeConnection {
            js: async_nats::jetstream::new(client),
            subjects: Subjects::new(self.subject_prefix.clone()),
            location,
        })
    }
}
