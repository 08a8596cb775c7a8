//! Resolution of input images before a call: every image becomes inline bytes, except
//! `gs://` references on Vertex (Google reads those itself).
//!
//! - `http(s)://` URLs (signed store URLs included) are fetched through the SSRF guard
//!   ([`crate::netguard`]): every resolved address checked and the connection pinned to
//!   it, redirects re-checked hop by hop, a timeout, `[inputs]`'s allow-lists honoured.
//! - `stored` inputs are read from the project's own output store (where a producer
//!   uploaded a local file); other `s3://`/`gs://`/`az://` URLs through object_store.
//! - Every read is capped at the model's inline limit: the announced size first
//!   (`Content-Length`, the object's size), then the bytes as they arrive, so a huge
//!   body costs no memory.
//! - Local paths are read only in embedded mode (`imagegen run`, one machine); a worker
//!   never opens a path of its own disk for a job.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::job::JobSpec;
use crate::job::image::{ImageInput, ImageSource, sniff_mime};
use crate::netguard::NetPolicy;
use crate::storage::{OutputStore, StorageError};

use super::error::{ProviderError, TransientKind};

/// How a resolver reaches inputs.
#[derive(Clone)]
pub struct InputOptions {
    /// Which destinations URL fetches may reach.
    pub policy: Arc<NetPolicy>,
    /// One fetch's timeout.
    pub timeout: Duration,
    /// Redirects followed at most (each checked again).
    pub max_redirects: usize,
    /// Options for `object_store` URLs (credentials, endpoints), e.g. `aws_endpoint`.
    pub store_options: Vec<(String, String)>,
    /// The project's output store: where `stored` inputs are.
    pub store: Option<OutputStore>,
    /// Read local paths (embedded mode only).
    pub local_paths: bool,
}

impl InputOptions {
    /// The guard's defaults and no store: URL fetches only (tests, tools).
    pub fn guarded(policy: NetPolicy) -> Self {
        InputOptions {
            policy: Arc::new(policy),
            timeout: Duration::from_secs(60),
            max_redirects: 3,
            store_options: Vec::new(),
            store: None,
            local_paths: false,
        }
    }
}

/// Reads a job's input images.
#[derive(Clone)]
pub struct InputResolver {
    http: reqwest::Client,
    options: InputOptions,
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

fn too_large(field: &str, what: &str, size: u64, limit: u64) -> ProviderError {
    permanent(
        field,
        format!(
            "{what} is {size} bytes or more, over the model's {limit}-byte limit for an input image"
        ),
    )
}

impl InputResolver {
    /// A resolver with `options`.
    pub fn new(options: InputOptions) -> Self {
        let http = crate::netguard::guarded_client(
            options.policy.clone(),
            options.timeout,
            options.max_redirects,
            concat!("imagegen-inputs/", env!("CARGO_PKG_VERSION")),
        );
        InputResolver { http, options }
    }

    /// Returns a copy of `spec` whose images are all inline (or `gs://` when `keep_gcs`),
    /// none larger than `limit` bytes.
    pub async fn resolve(
        &self,
        spec: &JobSpec,
        keep_gcs: bool,
        limit: u64,
    ) -> Result<JobSpec, ProviderError> {
        let mut out = spec.clone();
        for (i, img) in out.images.iter_mut().enumerate() {
            self.resolve_one(&format!("images[{i}]"), img, keep_gcs, limit)
                .await?;
        }
        for (i, r) in out.reference_images.iter_mut().enumerate() {
            if let Some(img) = r.image.as_mut() {
                self.resolve_one(
                    &format!("reference_images[{i}].image"),
                    img,
                    keep_gcs,
                    limit,
                )
                .await?;
            }
        }
        for (i, img) in out.product_images.iter_mut().enumerate() {
            self.resolve_one(&format!("product_images[{i}]"), img, keep_gcs, limit)
                .await?;
        }
        if let Some(img) = out.person_image.as_mut() {
            self.resolve_one("person_image", img, keep_gcs, limit)
                .await?;
        }
        if let Some(img) = out.scribble_image.as_mut() {
            self.resolve_one("scribble_image", img, keep_gcs, limit)
                .await?;
        }
        for (i, turn) in out.history.iter_mut().enumerate() {
            for (j, part) in turn.parts.iter_mut().enumerate() {
                let field = format!("history[{i}].parts[{j}].file_data");
                self.resolve_part(&field, part, keep_gcs, limit).await?;
            }
        }
        Ok(out)
    }

    /// A history part naming a file (a chat session's earlier images, by the URL of
    /// their stored copy or as the user gave them): read like an input image, its bytes
    /// inline, unless it is `gs://` and Google reads it. Files API URIs go to Google as
    /// they are.
    async fn resolve_part(
        &self,
        field: &str,
        part: &mut crate::job::Part,
        keep_gcs: bool,
        limit: u64,
    ) -> Result<(), ProviderError> {
        let Some(file) = &part.file_data else {
            return Ok(());
        };
        if file
            .file_uri
            .starts_with("https://generativelanguage.googleapis.com/")
        {
            return Ok(());
        }
        let own = self
            .options
            .store
            .as_ref()
            .and_then(|s| s.own_key(&file.file_uri));
        let mut img = ImageInput {
            source: own.map_or_else(
                || ImageSource::Url(file.file_uri.clone()),
                ImageSource::Stored,
            ),
            mime_type: Some(file.mime_type.clone()).filter(|m| !m.is_empty()),
        };
        self.resolve_one(field, &mut img, keep_gcs, limit).await?;
        if let ImageSource::Inline(data) = img.source {
            part.inline_data = Some(crate::job::Blob {
                mime_type: img.mime_type.unwrap_or_default(),
                data,
            });
            part.file_data = None;
        }
        Ok(())
    }

    async fn resolve_one(
        &self,
        field: &str,
        img: &mut ImageInput,
        keep_gcs: bool,
        limit: u64,
    ) -> Result<(), ProviderError> {
        let bytes = match &img.source {
            ImageSource::Inline(_) => return Ok(()),
            ImageSource::Output { job, index } => {
                // The worker reads those from the job they name before the call.
                return Err(permanent(
                    field,
                    format!("image {index} of job {job} was not resolved before the call"),
                ));
            }
            ImageSource::Url(u) if keep_gcs && u.starts_with("gs://") => return Ok(()),
            ImageSource::Path(p) if self.options.local_paths => read_file(field, p, limit).await?,
            ImageSource::Path(p) => {
                return Err(permanent(
                    field,
                    format!(
                        "`{}` is a local path: a worker reads no files of its own disk for a job (submit uploads local inputs to the output store; `imagegen run` reads them directly)",
                        p.display()
                    ),
                ));
            }
            ImageSource::Stored(key) => {
                let key = key.clone();
                self.read_stored(field, &key, keep_gcs, limit, img).await?
            }
            ImageSource::Url(u) if u.starts_with("http://") || u.starts_with("https://") => {
                self.fetch_http(field, u, limit).await?
            }
            ImageSource::Url(u) => self.fetch_store(field, u, limit).await?,
        };
        let Some(bytes) = bytes else {
            return Ok(());
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

    /// A `stored` input: a `gs://` reference Google reads itself where it can, else
    /// the bytes (the limit was checked when it was stored; checked again here).
    async fn read_stored(
        &self,
        field: &str,
        key: &str,
        keep_gcs: bool,
        limit: u64,
        img: &mut ImageInput,
    ) -> Result<Option<bytes::Bytes>, ProviderError> {
        let Some(store) = &self.options.store else {
            return Err(permanent(
                field,
                format!("`{key}` is in a project output store this worker does not have"),
            ));
        };
        let url = store.url_of_key(key);
        if keep_gcs && url.starts_with("gs://") {
            img.source = ImageSource::Url(url);
            return Ok(None);
        }
        store
            .get_capped(key, limit)
            .await
            .map(Some)
            .map_err(|e| store_error(field, &url, e))
    }

    async fn fetch_http(
        &self,
        field: &str,
        url: &str,
        limit: u64,
    ) -> Result<Option<bytes::Bytes>, ProviderError> {
        // Literal addresses never reach the resolver: check them here.
        self.options
            .policy
            .check_url(url)
            .map_err(|e| permanent(field, e.to_string()))?;
        let mut resp =
            self.http
                .get(url)
                .send()
                .await
                .map_err(|e| match crate::netguard::refusal(&e) {
                    Some(r) => permanent(field, format!("GET {url}: {r}")),
                    None if e.is_redirect() => permanent(field, format!("GET {url}: {e}")),
                    None => transient(
                        field,
                        format!("GET {url}: {}", crate::netguard::describe_chain(&e)),
                    ),
                })?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(field, format!("GET {url}: HTTP {status}")));
        }
        if !status.is_success() {
            return Err(permanent(field, format!("GET {url}: HTTP {status}")));
        }
        if let Some(n) = resp.content_length()
            && n > limit
        {
            return Err(too_large(field, url, n, limit));
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            transient(
                field,
                format!("GET {url}: {}", crate::netguard::describe_chain(&e)),
            )
        })? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large(
                    field,
                    url,
                    (body.len() + chunk.len()) as u64,
                    limit,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body.freeze()))
    }

    async fn fetch_store(
        &self,
        field: &str,
        url: &str,
        limit: u64,
    ) -> Result<Option<bytes::Bytes>, ProviderError> {
        if let Some(store) = &self.options.store
            && let Some(key) = store.own_key(url)
        {
            return store
                .get_capped(&key, limit)
                .await
                .map(Some)
                .map_err(|e| store_error(field, url, e));
        }
        if url.starts_with("file://") {
            return Err(permanent(
                field,
                format!("`{url}` is a local file outside the project's output store"),
            ));
        }
        crate::storage::read_url_capped(url, self.options.store_options.clone(), limit)
            .await
            .map(Some)
            .map_err(|e| store_error(field, url, e))
    }
}

async fn read_file(
    field: &str,
    path: &std::path::Path,
    limit: u64,
) -> Result<Option<bytes::Bytes>, ProviderError> {
    let unreadable =
        |e: std::io::Error| permanent(field, format!("cannot read `{}`: {e}", path.display()));
    let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
    if meta.len() > limit {
        return Err(too_large(
            field,
            &format!("`{}`", path.display()),
            meta.len(),
            limit,
        ));
    }
    Ok(Some(
        tokio::fs::read(path).await.map_err(unreadable)?.into(),
    ))
}

fn store_error(field: &str, url: &str, e: StorageError) -> ProviderError {
    match e {
        StorageError::TooLarge { size, limit, .. } => too_large(field, url, size, limit),
        StorageError::Store(object_store::Error::NotFound { .. }) => {
            permanent(field, format!("{url} does not exist"))
        }
        StorageError::Url { message, .. } => {
            permanent(field, format!("cannot open {url}: {message}"))
        }
        other => transient(field, format!("reading {url}: {other}")),
    }
}
