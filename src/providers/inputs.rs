//! Resolution of input images before a call: local paths and `http(s)`/`s3`/`az` URLs
//! become inline bytes; `gs://` stays a reference on Vertex (Google reads it) and is
//! downloaded for the Developer API, which cannot read GCS.

use base64::Engine as _;
use object_store::ObjectStoreExt as _;

use crate::job::JobSpec;
use crate::job::image::{ImageInput, ImageSource, sniff_mime};

use super::error::{ProviderError, TransientKind};

/// Largest input we download (Google's own request limit is 500 MB; single images are
/// far smaller, spec §7).
const MAX_DOWNLOAD: usize = 64 * 1024 * 1024;

/// How to read remote inputs.
#[derive(Clone)]
pub struct InputResolver {
    http: reqwest::Client,
    /// Options for `object_store` URLs (credentials, endpoints), e.g. `aws_endpoint`.
    store_options: Vec<(String, String)>,
}

fn permanent(field: &str, message: String) -> ProviderError {
    ProviderError::Permanent {
        status: 0,
        code: "INPUT_UNREADABLE".into(),
        message: format!("{field}: {message}"),
    }
}

fn transient(field: &str, message: String) -> ProviderError {
    ProviderError::Transient {
        kind: TransientKind::Connection,
        status: None,
        message: format!("{field}: {message}"),
        retry_after: None,
    }
}

impl InputResolver {
    /// A resolver using `http` for web URLs and `store_options` for object stores.
    pub fn new(http: reqwest::Client, store_options: Vec<(String, String)>) -> Self {
        InputResolver {
            http,
            store_options,
        }
    }

    /// Returns a copy of `spec` whose images are all inline (or `gs://` when `keep_gcs`).
    pub async fn resolve(&self, spec: &JobSpec, keep_gcs: bool) -> Result<JobSpec, ProviderError> {
        let mut out = spec.clone();
        for (i, img) in out.images.iter_mut().enumerate() {
            self.resolve_one(&format!("images[{i}]"), img, keep_gcs)
                .await?;
        }
        for (i, r) in out.reference_images.iter_mut().enumerate() {
            if let Some(img) = r.image.as_mut() {
                self.resolve_one(&format!("reference_images[{i}].image"), img, keep_gcs)
                    .await?;
            }
        }
        for (i, img) in out.product_images.iter_mut().enumerate() {
            self.resolve_one(&format!("product_images[{i}]"), img, keep_gcs)
                .await?;
        }
        if let Some(img) = out.person_image.as_mut() {
            self.resolve_one("person_image", img, keep_gcs).await?;
        }
        if let Some(img) = out.scribble_image.as_mut() {
            self.resolve_one("scribble_image", img, keep_gcs).await?;
        }
        Ok(out)
    }

    async fn resolve_one(
        &self,
        field: &str,
        img: &mut ImageInput,
        keep_gcs: bool,
    ) -> Result<(), ProviderError> {
        let bytes = match &img.source {
            ImageSource::Inline(_) => return Ok(()),
            ImageSource::Url(u) if keep_gcs && u.starts_with("gs://") => return Ok(()),
            ImageSource::Path(p) => tokio::fs::read(p)
                .await
                .map_err(|e| permanent(field, format!("cannot read `{}`: {e}", p.display())))?,
            ImageSource::Url(u) if u.starts_with("http://") || u.starts_with("https://") => {
                self.fetch_http(field, u).await?
            }
            ImageSource::Url(u) => self.fetch_store(field, u).await?,
        };
        let mime = img
            .mime_type
            .clone()
            .or_else(|| sniff_mime(&bytes).map(str::to_string))
            .ok_or_else(|| permanent(field, "not a PNG, JPEG, WebP or HEIC/HEIF image".into()))?;
        *img = ImageInput {
            source: ImageSource::Inline(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            mime_type: Some(mime),
        };
        Ok(())
    }

    async fn fetch_http(&self, field: &str, url: &str) -> Result<Vec<u8>, ProviderError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transient(field, format!("GET {url}: {e}")))?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(field, format!("GET {url}: HTTP {status}")));
        }
        if !status.is_success() {
            return Err(permanent(field, format!("GET {url}: HTTP {status}")));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| transient(field, format!("GET {url}: {e}")))?;
        if body.len() > MAX_DOWNLOAD {
            return Err(permanent(
                field,
                format!("{url} is over {MAX_DOWNLOAD} bytes"),
            ));
        }
        Ok(body.to_vec())
    }

    async fn fetch_store(&self, field: &str, url: &str) -> Result<Vec<u8>, ProviderError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| permanent(field, format!("invalid URL {url}: {e}")))?;
        let (store, path) = object_store::parse_url_opts(&parsed, self.store_options.clone())
            .map_err(|e| permanent(field, format!("cannot open {url}: {e}")))?;
        let got = store.get(&path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                permanent(field, format!("{url} does not exist"))
            }
            other => transient(field, format!("reading {url}: {other}")),
        })?;
        let body = got
            .bytes()
            .await
            .map_err(|e| transient(field, format!("reading {url}: {e}")))?;
        Ok(body.to_vec())
    }
}
