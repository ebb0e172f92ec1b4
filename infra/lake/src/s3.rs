//! S3-compatible object storage for the lake (`s3://bucket/prefix`, also `s3a://`): AWS S3,
//! MinIO, Ceph, moto, R2…
//!
//! deltalake-core knows the local file system only; this module registers, once per process,
//! an object-store factory (object_store's own S3 client) and a log-store factory (deltalake-core's
//! default log store) for the S3 schemes. The default log store commits a table version with a
//! create-only put of its log file, which object_store sends as an S3 conditional write
//! (`If-None-Match: *`): a concurrent commit of the same version fails instead of overwriting, as
//! on a local file system. No DynamoDB lock is needed (decision 0011). [`check`] verifies at start
//! that the bucket is reachable and honours conditional writes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::Duration;

use deltalake_core::logstore::{
    DeltaIOStorageBackend, LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
    default_logstore, logstore_factories, object_store_factories,
};
use deltalake_core::{DeltaResult, DeltaTableError};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, RetryConfig};
use url::Url;

use crate::error::{LakeError, Result};

/// The URL schemes of S3-compatible locations.
pub const SCHEMES: [&str; 2] = ["s3", "s3a"];

/// Settings of an S3-compatible store. Each unset field falls back to the standard AWS
/// environment variable (`AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`; `AWS_SESSION_TOKEN` and the
/// rest of object_store's `AWS_*` settings are read too), then to object_store's defaults
/// (region `us-east-1`, credentials from the instance metadata service).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint of an S3-compatible server (`http://127.0.0.1:9000`); unset: AWS S3.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allows a plain-HTTP endpoint (MinIO, moto and Ceph test servers).
    pub allow_http: Option<bool>,
}

impl S3Options {
    /// Whether nothing is set (everything comes from the environment).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The settings as object_store configuration keys, the storage options of a Delta table.
    pub(crate) fn storage_options(&self) -> BTreeMap<String, String> {
        let keys = [
            (AmazonS3ConfigKey::Endpoint, self.endpoint.clone()),
            (AmazonS3ConfigKey::Region, self.region.clone()),
            (AmazonS3ConfigKey::AccessKeyId, self.access_key_id.clone()),
            (AmazonS3ConfigKey::SecretAccessKey, self.secret_access_key.clone()),
            (AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp), self.allow_http.map(|b| b.to_string())),
        ];
        keys.into_iter().filter_map(|(key, value)| Some((key.as_ref().to_string(), value?))).collect()
    }
}

impl fmt::Debug for S3Options {
    /// The secret key is redacted, so settings can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Whether a storage option holds a secret (not to be logged).
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret") || key.contains("token") || key.contains("password")
}

/// Registers the S3 factories with deltalake-core (once per process).
pub(crate) fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for scheme in SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("a bare scheme is a valid URL");
            object_store_factories().insert(url.clone(), Arc::new(S3StoreFactory));
            logstore_factories().insert(url, Arc::new(S3LogStoreFactory));
        }
    });
}

/// The S3 client of a location: the environment's `AWS_*` settings, then the storage options,
/// then the bucket of the URL.
fn builder<'a>(url: &Url, options: impl IntoIterator<Item = (&'a String, &'a String)>) -> DeltaResult<AmazonS3Builder> {
    let mut builder = AmazonS3Builder::from_env();
    for (key, value) in options {
        let key: AmazonS3ConfigKey = key
            .to_ascii_lowercase()
            .parse()
            .map_err(|e| DeltaTableError::Generic(format!("unknown S3 storage option {key}: {e}")))?;
        builder = builder.with_config(key, value);
    }
    Ok(builder.with_url(url.as_str()))
}

/// The S3 clients built so far, by bucket URL and storage options: every open of a table of the
/// same lake shares one client and its connection pool (the projections, upkeep, retention and
/// the query engine open tables again and again).
type ClientKey = (String, Vec<(String, String)>);
static CLIENTS: LazyLock<Mutex<HashMap<ClientKey, ObjectStoreRef>>> = LazyLock::new(Mutex::default);

fn client(url: &Url, config: &StorageConfig) -> DeltaResult<ObjectStoreRef> {
    let mut options: Vec<(String, String)> = config.raw().map(|(k, v)| (k.clone(), v.clone())).collect();
    options.sort();
    let key = (format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()), options);
    let mut clients = CLIENTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(store) = clients.get(&key) {
        return Ok(store.clone());
    }
    let store: ObjectStoreRef = Arc::new(builder(url, config.raw())?.build()?);
    clients.insert(key, store.clone());
    Ok(store)
}

/// Gives a table URL object_store's S3 client; the store's root is the bucket.
struct S3StoreFactory;

impl ObjectStoreFactory for S3StoreFactory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        let store = client(url, config)?;
        let store = match &config.runtime {
            Some(runtime) => Arc::new(DeltaIOStorageBackend::new(store, runtime.clone())) as ObjectStoreRef,
            None => store,
        };
        Ok((store, Path::parse(url.path())?))
    }
}

/// deltalake-core's default log store (commits by create-only puts) for S3 locations.
struct S3LogStoreFactory;

impl LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

/// Checks at start that the lake's bucket answers, can be written, and refuses a second
/// create-only put of the same object (Delta commits rely on it). Fails within seconds: two
/// retries, unlike the platform's own requests, which retry for minutes.
pub(crate) async fn check(root: &Url, options: &BTreeMap<String, String>) -> Result<()> {
    let unusable = |reason: String| LakeError::Location { location: root.to_string(), reason };
    let failed = |what: String| {
        move |source| LakeError::Store { location: root.to_string(), what, source }
    };
    let builder = builder(root, options).map_err(|e| unusable(e.to_string()))?;
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint).unwrap_or_default();
    let allow_http = builder.get_config_value(&AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp));
    if endpoint.starts_with("http://") && allow_http.as_deref() != Some("true") {
        return Err(unusable(format!(
            "endpoint {endpoint} is plain HTTP: allow it with lake_s3_allow_http = true (or AWS_ALLOW_HTTP=true)"
        )));
    }
    let store: AmazonS3 = builder
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        })
        .build()
        .map_err(failed("invalid S3 settings".to_string()))?;
    let probe = Path::parse(format!("{}_thinglake/probe-{}", root.path(), uuid::Uuid::new_v4()))
        .map_err(|e| unusable(e.to_string()))?;
    let create = || PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    let bucket = root.host_str().unwrap_or_default();
    store.put_opts(&probe, "probe".into(), create()).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => failed(format!("bucket {bucket} does not exist"))(e),
        e => failed(format!("cannot write to bucket {bucket}"))(e),
    })?;
    let second = store.put_opts(&probe, "probe".into(), create()).await;
    let deleted = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Ok(_) => {
            return Err(unusable(
                "the store ignores conditional writes (If-None-Match: *), so Delta commits would not be atomic".to_string(),
            ));
        }
        Err(e) => return Err(failed("checking conditional writes".to_string())(e)),
    }
    deleted.map_err(failed(format!("cannot delete from bucket {bucket}")))?;
    Ok(())
}

/// The storage options as a `HashMap`, as deltalake-core's builders take them.
pub(crate) fn hash_map(options: &BTreeMap<String, String>) -> HashMap<String, String> {
    options.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
