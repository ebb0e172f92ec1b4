//! Where the lake's tables live and how they are opened: a local directory by default
//! (`<data_dir>/lake/<table>`), or S3-compatible object storage (`s3://bucket/prefix`, see
//! [`crate::s3`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use deltalake_core::kernel::StructType;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::error::{LakeError, Result};
use crate::s3::{self, S3Options};
use crate::table::TableSpec;

/// The root under which every table has its own directory (prefix), and the object store's
/// settings.
#[derive(Clone, PartialEq, Eq)]
pub struct LakeLocation {
    root: Url,
    /// object_store configuration keys of the tables (`aws_endpoint`, …); empty for a directory.
    storage: BTreeMap<String, String>,
}

impl fmt::Debug for LakeLocation {
    /// Secrets are redacted, so the location can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let storage: BTreeMap<&str, &str> = self
            .storage
            .iter()
            .map(|(k, v)| (k.as_str(), if s3::is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("LakeLocation").field("root", &self.root.as_str()).field("storage", &storage).finish()
    }
}

impl LakeLocation {
    /// A local directory, created if missing.
    pub fn local(dir: &Path) -> Result<Self> {
        let io = |source| LakeError::LocationIo { location: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let dir = dir.canonicalize().map_err(io)?;
        let root = Url::from_directory_path(&dir).map_err(|()| LakeError::Location {
            location: dir.display().to_string(),
            reason: "not an absolute path".to_string(),
        })?;
        Ok(Self { root, storage: BTreeMap::new() })
    }

    /// A path or a URL: `file:///…` or `s3://bucket/prefix` (`s3a://` too), with S3 settings
    /// from the `AWS_*` environment variables.
    pub fn parse(location: &str) -> Result<Self> {
        Self::parse_with(location, &S3Options::default())
    }

    /// A path or a URL; `s3` settings apply to an `s3://` location and override the `AWS_*`
    /// environment variables. Any other scheme is refused, and so are S3 settings for a local lake.
    pub fn parse_with(location: &str, s3: &S3Options) -> Result<Self> {
        let error = |reason: String| LakeError::Location { location: location.to_string(), reason };
        let url = match Url::parse(location) {
            Ok(url) if url.scheme() == "file" => {
                let path = url.to_file_path().map_err(|()| error("not a local path".to_string()))?;
                return Self::local_only(&path, s3, location);
            }
            // A Windows drive letter, or no scheme: a path.
            Ok(url) if url.scheme().len() == 1 => return Self::local_only(Path::new(location), s3, location),
            Err(_) => return Self::local_only(Path::new(location), s3, location),
            Ok(url) => url,
        };
        if !s3::SCHEMES.contains(&url.scheme()) {
            return Err(error(format!(
                "unsupported scheme {}: the lake is a directory, a file:// URL or s3://bucket/prefix",
                url.scheme()
            )));
        }
        let mut url = url;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(error("no bucket: write s3://bucket or s3://bucket/prefix".to_string()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(error("a query or fragment is not part of a lake URL; give S3 settings as options".to_string()));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        s3::register();
        Ok(Self { root: url, storage: s3.storage_options() })
    }

    fn local_only(dir: &Path, s3: &S3Options, location: &str) -> Result<Self> {
        if !s3.is_empty() {
            return Err(LakeError::Location {
                location: location.to_string(),
                reason: "S3 settings are given but the lake is a local directory (use s3://bucket/prefix)".to_string(),
            });
        }
        Self::local(dir)
    }

    /// Checks that the tables can be written: a no-op for a local directory (created already);
    /// for S3, that the bucket answers, accepts writes and honours conditional writes. Fails
    /// within seconds with what is wrong, for a clear error at start.
    pub async fn check(&self) -> Result<()> {
        if s3::SCHEMES.contains(&self.root.scheme()) { s3::check(&self.root, &self.storage).await } else { Ok(()) }
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of one table.
    pub fn table_url(&self, table: &str) -> Result<Url> {
        self.root
            .join(&format!("{table}/"))
            .map_err(|source| LakeError::LocationUrl { location: self.root.to_string(), source })
    }

    /// The local directory of a table, when the lake is on the local file system.
    pub fn local_dir(&self, table: &str) -> Option<std::path::PathBuf> {
        self.table_url(table).ok()?.to_file_path().ok()
    }

    /// Opens a table, creating it with `spec`'s schema and partitioning if it does not exist.
    pub async fn open_or_create(&self, spec: &TableSpec) -> Result<DeltaTable> {
        let url = self.table_url(spec.name)?;
        if let Some(dir) = self.local_dir(spec.name) {
            std::fs::create_dir_all(&dir)
                .map_err(|source| LakeError::LocationIo { location: dir.display().to_string(), source })?;
        }
        if let Some(table) = self.open(spec.name).await? {
            return Ok(table);
        }
        let columns: StructType = spec.schema.as_ref().try_into_kernel().map_err(|e| LakeError::Delta {
            table: spec.name.to_string(),
            source: Box::new(DeltaTableError::Generic(format!("schema has no Delta equivalent: {e}"))),
        })?;
        let created = CreateBuilder::new()
            .with_location(url.as_str())
            .with_table_name(spec.name)
            .with_comment(spec.comment)
            .with_columns(columns.fields().cloned())
            .with_partition_columns(spec.partition_columns.iter().copied())
            .with_save_mode(SaveMode::Ignore)
            .with_storage_options(s3::hash_map(&self.storage))
            .await;
        match created {
            Ok(table) => Ok(table),
            // Another process created it first.
            Err(_) if self.open(spec.name).await?.is_some() => {
                self.open(spec.name).await?.ok_or_else(|| LakeError::Location {
                    location: url.to_string(),
                    reason: "table vanished while opening".to_string(),
                })
            }
            Err(e) => Err(LakeError::delta(spec.name)(e)),
        }
    }

    /// Opens an existing table; `None` if there is no table there yet.
    pub async fn open(&self, table: &str) -> Result<Option<DeltaTable>> {
        let url = self.table_url(table)?;
        if self.local_dir(table).is_some_and(|dir| !dir.exists()) {
            return Ok(None);
        }
        let mut delta = DeltaTableBuilder::from_url(url)
            .map_err(LakeError::delta(table))?
            .with_storage_options(s3::hash_map(&self.storage))
            .build()
            .map_err(LakeError::delta(table))?;
        // Loading a location without a commit fails inside the Delta kernel, which logs that
        // failure at ERROR ("No files in log segment") before we could tell it means "no table
        // yet": look for a commit first.
        if !delta.verify_deltatable_existence().await.map_err(LakeError::delta(table))? {
            return Ok(None);
        }
        match delta.load().await {
            Ok(()) => Ok(Some(delta)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(LakeError::delta(table)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(location: &str, s3: &S3Options) -> String {
        match LakeLocation::parse_with(location, s3) {
            Err(LakeError::Location { reason, .. }) => reason,
            other => panic!("{location} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn s3_urls_get_a_trailing_slash_and_their_settings() {
        let s3 = S3Options { endpoint: Some("http://127.0.0.1:9000".into()), secret_access_key: Some("sk".into()), ..S3Options::default() };
        let location = LakeLocation::parse_with("s3://bucket/some/prefix", &s3).expect("an S3 lake");
        assert_eq!(location.root().as_str(), "s3://bucket/some/prefix/");
        assert_eq!(location.table_url("telemetry").expect("url").as_str(), "s3://bucket/some/prefix/telemetry/");
        assert_eq!(location.local_dir("telemetry"), None);
        assert_eq!(location.storage.get("aws_endpoint").map(String::as_str), Some("http://127.0.0.1:9000"));
        let debug = format!("{location:?}");
        assert!(!debug.contains("\"sk\"") && debug.contains("<redacted>"), "{debug}");
        assert_eq!(LakeLocation::parse("s3a://bucket").expect("s3a").root().as_str(), "s3a://bucket/");
    }

    #[test]
    fn other_schemes_and_misplaced_settings_are_refused() {
        let none = S3Options::default();
        assert!(reason("gs://bucket/lake", &none).contains("unsupported scheme gs"));
        assert!(reason("http://host/lake", &none).contains("unsupported scheme http"));
        assert!(reason("s3:///lake", &none).contains("no bucket"));
        assert!(reason("s3://bucket/lake?region=x", &none).contains("query"));
        let dir = std::env::temp_dir().join(format!("thinglake-store-test-{}", uuid::Uuid::new_v4()));
        let s3 = S3Options { region: Some("eu-west-1".into()), ..S3Options::default() };
        assert!(reason(dir.to_str().expect("utf-8"), &s3).contains("local directory"));
        assert!(!dir.exists(), "a refused location creates nothing");
    }
}
