//! Where the lake's tables live and how they are opened: a local directory by default
//! (`<data_dir>/lake/<table>`), or any URL a registered Delta log store understands.

use std::path::Path;

use deltalake_core::kernel::StructType;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::lake::error::{LakeError, Result};
use crate::lake::table::TableSpec;

/// The root under which every table has its own directory (prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeLocation {
    root: Url,
}

impl LakeLocation {
    /// A local directory, created if missing.
    pub fn local(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| LakeError::Location {
            location: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let dir = dir.canonicalize().map_err(|e| LakeError::Location {
            location: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let root = Url::from_directory_path(&dir).map_err(|()| LakeError::Location {
            location: dir.display().to_string(),
            reason: "not an absolute path".to_string(),
        })?;
        Ok(Self { root })
    }

    /// A path or a URL (`file:///…`, `s3://bucket/prefix`). Object stores other than the local
    /// file system need their Delta log store registered in this build.
    pub fn parse(location: &str) -> Result<Self> {
        match Url::parse(location) {
            Ok(url) if url.scheme() == "file" => {
                let path = url.to_file_path().map_err(|()| LakeError::Location {
                    location: location.to_string(),
                    reason: "not a local path".to_string(),
                })?;
                Self::local(&path)
            }
            Ok(mut url) if url.scheme().len() > 1 => {
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                Ok(Self { root: url })
            }
            _ => Self::local(Path::new(location)),
        }
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of one table.
    pub fn table_url(&self, table: &str) -> Result<Url> {
        self.root.join(&format!("{table}/")).map_err(|e| LakeError::Location {
            location: self.root.to_string(),
            reason: e.to_string(),
        })
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
                .map_err(|e| LakeError::Location { location: dir.display().to_string(), reason: e.to_string() })?;
        }
        if let Some(table) = self.open(spec.name).await? {
            return Ok(table);
        }
        let columns: StructType = spec.schema.as_ref().try_into_kernel().map_err(|e| LakeError::Delta {
            table: spec.name.to_string(),
            source: DeltaTableError::Generic(format!("schema has no Delta equivalent: {e}")),
        })?;
        let created = CreateBuilder::new()
            .with_location(url.as_str())
            .with_table_name(spec.name)
            .with_comment(spec.comment)
            .with_columns(columns.fields().cloned())
            .with_partition_columns(spec.partition_columns.iter().copied())
            .with_save_mode(SaveMode::Ignore)
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
        let mut delta = DeltaTableBuilder::from_url(url).map_err(LakeError::delta(table))?.build().map_err(LakeError::delta(table))?;
        match delta.load().await {
            Ok(()) => Ok(Some(delta)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(LakeError::delta(table)(e)),
        }
    }
}
