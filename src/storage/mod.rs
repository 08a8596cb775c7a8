//! Outputs through `object_store`: images, `result.json` per job and `manifest.jsonl`
//! per batch, at deterministic keys (DESIGN.md "Outputs", [`layout`]) so a re-run
//! overwrites instead of duplicating; and the inputs a producer uploads for workers on
//! other machines, content-addressed under `{prefix}/inputs/`.
//!
//! object_store types stay inside this module.

pub mod layout;

pub use layout::{JobLocation, NameTemplate};

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL cannot be turned into a store.
    #[error("output URL `{url}`: {message}")]
    Url {
        /// The configured URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A read or write failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An object is larger than the caller accepts.
    #[error("{url} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The object.
        url: String,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// The limit.
        limit: u64,
    },
}

pub use crate::job::result::StoredImage;

/// Where outputs go.
#[derive(Clone)]
pub struct OutputStore {
    store: Arc<dyn ObjectStore>,
    /// Signs URLs where the store can (S3, GCS, Azure).
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    /// Prefix inside the store (no leading/trailing slash).
    prefix: String,
    /// URL of the store root, for printing locations.
    root_url: String,
    /// How image files are named.
    template: NameTemplate,
}

impl std::fmt::Debug for OutputStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputStore({}/{})", self.root_url, self.prefix)
    }
}

impl OutputStore {
    /// Opens any supported URL: `file://` (relative paths allowed: `file://./out`),
    /// `memory://`, `s3://`, `gs://`, `az://`. `options` are object_store options
    /// (`aws_endpoint`, `aws_allow_http`, …).
    pub fn from_url(url: &str, options: Vec<(String, String)>) -> Result<Self, StorageError> {
        let err = |message: String| StorageError::Url {
            url: url.to_string(),
            message,
        };
        if let Some(path) = url.strip_prefix("file://") {
            let path = std::path::Path::new(if path.is_empty() { "." } else { path });
            std::fs::create_dir_all(path)
                .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
            let abs = std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&abs)
                .map_err(|e| err(e.to_string()))?;
            return Ok(OutputStore {
                store: Arc::new(fs),
                signer: None,
                prefix: String::new(),
                root_url: format!("file://{}", abs.display()),
                template: NameTemplate::default(),
            });
        }
        if url.starts_with("memory://") {
            let prefix = url
                .trim_start_matches("memory://")
                .trim_matches('/')
                .to_string();
            return Ok(OutputStore {
                store: Arc::new(object_store::memory::InMemory::new()),
                signer: None,
                prefix,
                root_url: "memory://".into(),
                template: NameTemplate::default(),
            });
        }
        if let Some((key, _)) = options.iter().find(|(k, _)| !known_option(k)) {
            return Err(err(format!(
                "unknown store option `output.options.{key}`: not an object_store option of S3 (aws_…), GCS (google_…) or Azure (azure_…)"
            )));
        }
        let parsed = url::Url::parse(url).map_err(|e| err(e.to_string()))?;
        let (scheme, path) =
            object_store::ObjectStoreScheme::parse(&parsed).map_err(|e| err(e.to_string()))?;
        let path = StorePath::parse(path).map_err(|e| err(e.to_string()))?;
        // Built as parse_url_opts would, but keeping the concrete store: it also signs.
        macro_rules! signing {
            ($builder:ty, $key:ty) => {{
                let builder = options
                    .iter()
                    .fold(<$builder>::new().with_url(url), |b, (k, v)| {
                        match k.to_ascii_lowercase().parse::<$key>() {
                            Ok(k) => b.with_config(k, v.clone()),
                            Err(_) => b,
                        }
                    });
                let s = Arc::new(builder.build().map_err(|e| err(e.to_string()))?);
                let signer: Arc<dyn object_store::signer::Signer> = s.clone();
                (s as Arc<dyn ObjectStore>, Some(signer))
            }};
        }
        use object_store::ObjectStoreScheme as S;
        let (store, signer) = match scheme {
            S::AmazonS3 => signing!(
                object_store::aws::AmazonS3Builder,
                object_store::aws::AmazonS3ConfigKey
            ),
            S::GoogleCloudStorage => signing!(
                object_store::gcp::GoogleCloudStorageBuilder,
                object_store::gcp::GoogleConfigKey
            ),
            S::MicrosoftAzure => signing!(
                object_store::azure::MicrosoftAzureBuilder,
                object_store::azure::AzureConfigKey
            ),
            _ => {
                let (store, _) = object_store::parse_url_opts(&parsed, options)
                    .map_err(|e| err(e.to_string()))?;
                (Arc::from(store), None)
            }
        };
        let root = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
        Ok(OutputStore {
            store,
            signer,
            prefix: path.to_string(),
            root_url: root,
            template: NameTemplate::default(),
        })
    }

    /// The same store, naming image files by `template` (`output.name_template`).
    pub fn with_name_template(mut self, template: NameTemplate) -> Self {
        self.template = template;
        self
    }

    /// The key of an object of this store given by its full URL, when it is one
    /// (`file:///…/out/inputs/x.png` → `inputs/x.png` for a store at `file:///…/out`).
    pub fn own_key(&self, url: &str) -> Option<String> {
        let rel = url.strip_prefix(&self.root_url)?.strip_prefix('/')?;
        let rel = if self.prefix.is_empty() {
            rel
        } else {
            rel.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        (!rel.is_empty() && !rel.split('/').any(|s| s == ".." || s.is_empty()))
            .then(|| rel.to_string())
    }

    /// A time-limited HTTPS URL for an object of this store given by its full URL
    /// (`s3://…`), where the store can sign; `None` otherwise.
    pub async fn signed_url(&self, url: &str, ttl: std::time::Duration) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let rel = url.strip_prefix(&self.root_url)?.strip_prefix('/')?;
        match signer
            .signed_url(
                object_store::signer::Method::GET,
                &StorePath::from(rel),
                ttl,
            )
            .await
        {
            Ok(u) => Some(u.to_string()),
            Err(e) => {
                tracing::warn!(%url, error = %e, "signing an output URL failed");
                None
            }
        }
    }

    /// The URL of a job's `result.json`.
    pub fn result_url(&self, loc: &JobLocation<'_>) -> String {
        self.url_of(&self.key(&format!("{}/result.json", loc.job_dir())))
    }

    fn key(&self, rel: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(rel)
        } else {
            StorePath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The full URL of an object given by its key relative to the store root.
    pub fn url_of_key(&self, rel: &str) -> String {
        self.url_of(&self.key(rel))
    }

    /// The URL of a key.
    pub fn url_of(&self, key: &StorePath) -> String {
        format!("{}/{}", self.root_url, key)
    }

    /// The file behind a URL of this store on local disk (`None` for other stores).
    pub fn local_path(&self, url: &str) -> Option<String> {
        url.starts_with(&self.root_url)
            .then(|| url.strip_prefix("file://"))
            .flatten()
            .map(str::to_string)
    }

    /// Writes image `index` of a job.
    pub async fn put_image(
        &self,
        loc: &JobLocation<'_>,
        index: usize,
        mime_type: &str,
        data: Bytes,
    ) -> Result<StoredImage, StorageError> {
        let ext = if mime_type == "image/jpeg" {
            "jpg"
        } else {
            "png"
        };
        let key = self.key(&format!("{}.{ext}", self.template.image_key(loc, index)));
        let mut image = self.put_key(key, mime_type, data).await?;
        image.index = index;
        Ok(image)
    }

    /// Writes `data` at `key`; returns it as a stored image (index 0).
    async fn put_key(
        &self,
        key: StorePath,
        mime_type: &str,
        data: Bytes,
    ) -> Result<StoredImage, StorageError> {
        let (width, height) = dimensions(&data);
        let sha256 = hex(&Sha256::digest(&data));
        let len = data.len() as u64;
        self.store.put(&key, PutPayload::from_bytes(data)).await?;
        let url = self.url_of(&key);
        Ok(StoredImage {
            index: 0,
            path: self.local_path(&url),
            url,
            mime_type: mime_type.to_string(),
            bytes: len,
            sha256,
            width,
            height,
            labels: None,
        })
    }

    /// Writes `data` at `rel` (relative to the store root, e.g. a story's
    /// `{project}/{batch}/stories/{id}/frame-01.png`); returns it as a stored image
    /// (size and hash; width and height when it is one).
    pub async fn put_file(
        &self,
        rel: &str,
        mime_type: &str,
        data: Bytes,
    ) -> Result<StoredImage, StorageError> {
        self.put_key(self.key(rel), mime_type, data).await
    }

    /// Stores an input image once, content-addressed: `inputs/<sha256>.<ext>`
    /// (a file used by 10,000 job lines is one object). Returns its key.
    pub async fn put_input(&self, data: Bytes, ext: &str) -> Result<String, StorageError> {
        let rel = format!("inputs/{}.{ext}", hex(&Sha256::digest(&data)));
        let key = self.key(&rel);
        match self.store.head(&key).await {
            Ok(meta) if meta.size == data.len() as u64 => {}
            _ => {
                self.store.put(&key, PutPayload::from_bytes(data)).await?;
            }
        }
        Ok(rel)
    }

    /// Reads an object by its key relative to the store root, refusing one larger
    /// than `limit` bytes before reading it (and while reading, should it grow).
    pub async fn get_capped(&self, rel: &str, limit: u64) -> Result<Bytes, StorageError> {
        read_capped(self.store.as_ref(), &self.key(rel), limit, || {
            self.url_of(&self.key(rel))
        })
        .await
    }

    /// Writes `result.json` of a job; returns its URL.
    pub async fn put_result<T: Serialize>(
        &self,
        loc: &JobLocation<'_>,
        result: &T,
    ) -> Result<String, StorageError> {
        let key = self.key(&format!("{}/result.json", loc.job_dir()));
        let body = serde_json::to_vec_pretty(result).unwrap_or_default();
        self.store.put(&key, PutPayload::from(body)).await?;
        Ok(self.url_of(&key))
    }

    /// A streaming writer for a batch's `manifest.jsonl` (multipart upload on object
    /// stores, so a million-line manifest never sits in memory), and its URL.
    pub fn manifest_writer(
        &self,
        project: &str,
        batch: &str,
    ) -> (object_store::buffered::BufWriter, String) {
        let key = self.key(&format!("{project}/{batch}/manifest.jsonl"));
        let url = self.url_of(&key);
        (
            object_store::buffered::BufWriter::new(self.store.clone(), key),
            url,
        )
    }

    /// Reads an object by its path relative to the store root (tests, `results`).
    pub async fn get(&self, rel: &str) -> Result<Bytes, StorageError> {
        Ok(self.store.get(&self.key(rel)).await?.bytes().await?)
    }

    /// Lists object paths under a relative prefix.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>, StorageError> {
        use futures::TryStreamExt as _;
        let prefix = self.key(rel);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }
}

/// True for a key some object_store backend takes (the options also serve input images
/// on other stores, so a key need not belong to the output URL's own store).
fn known_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok()
        || key.parse::<object_store::gcp::GoogleConfigKey>().is_ok()
        || key.parse::<object_store::azure::AzureConfigKey>().is_ok()
}

/// Reads any object store URL (`s3://…`, `gs://…`, `az://…`) with `options`, at most
/// `limit` bytes.
pub async fn read_url_capped(
    url: &str,
    options: Vec<(String, String)>,
    limit: u64,
) -> Result<Bytes, StorageError> {
    let err = |message: String| StorageError::Url {
        url: url.to_string(),
        message,
    };
    let parsed = url::Url::parse(url).map_err(|e| err(e.to_string()))?;
    let (store, path) =
        object_store::parse_url_opts(&parsed, options).map_err(|e| err(e.to_string()))?;
    read_capped(store.as_ref(), &path, limit, || url.to_string()).await
}

/// Reads `key` of `store`, at most `limit` bytes: the object's size is checked first,
/// then the bytes are counted as they stream in. `url` names it in errors.
pub async fn read_capped(
    store: &dyn ObjectStore,
    key: &StorePath,
    limit: u64,
    url: impl Fn() -> String,
) -> Result<Bytes, StorageError> {
    use futures::StreamExt as _;
    let got = store.get(key).await?;
    let size = got.meta.size;
    if size > limit {
        return Err(StorageError::TooLarge {
            url: url(),
            size,
            limit,
        });
    }
    let mut out = bytes::BytesMut::with_capacity(size as usize);
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(StorageError::TooLarge {
                url: url(),
                size: (out.len() + chunk.len()) as u64,
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Width and height from the image header, without decoding pixels.
pub fn dimensions(data: &[u8]) -> (u32, u32) {
    image::ImageReader::new(std::io::Cursor::new(data))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .unwrap_or((0, 0))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of `data`, as stored images and inputs are named and recorded.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn images_land_at_deterministic_keys_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = OutputStore::from_url(&url, vec![]).unwrap();
        let loc = JobLocation::of("p", "b1.000003");
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4IScHRwzEcQCxYxBBO0tjggAAAABJRU5ErkJggg==").unwrap();
        let a = store
            .put_image(&loc, 0, "image/png", Bytes::from(png.clone()))
            .await
            .unwrap();
        let b = store
            .put_image(&loc, 0, "image/png", Bytes::from(png))
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!((a.width, a.height), (4, 4));
        assert!(dir.path().join("p/b1/000003/0.png").exists());
        assert_eq!(store.list("p/b1/000003").await.unwrap().len(), 1);
        assert_eq!(
            a.path.as_deref(),
            Some(dir.path().join("p/b1/000003/0.png").to_str().unwrap())
        );
        let single = JobLocation::of("p", "j2");
        store
            .put_result(&single, &serde_json::json!({"ok": true}))
            .await
            .unwrap();
        assert!(dir.path().join("p/_single/j2/result.json").exists());
    }

    #[test]
    fn a_misspelt_store_option_is_refused_by_name() {
        let opts = |k: &str| vec![(k.to_string(), "x".to_string())];
        let e = OutputStore::from_url("s3://b/p", opts("aws_endpiont")).unwrap_err();
        assert!(e.to_string().contains("output.options.aws_endpiont"), "{e}");
        // Another store's keys are fine: they serve input images on that store.
        assert!(OutputStore::from_url("s3://b/p", opts("google_base_url")).is_ok());
        assert!(OutputStore::from_url("gs://b/p", opts("AWS_REGION")).is_ok());
    }
}
