//! Local input files of a submit, stored for the workers: read and sniffed on the
//! submitting machine, written once to the project's output store under
//! `inputs/<sha256>.<ext>`, and referenced by the job as `{"stored": key}` — so a worker
//! on any machine reads the same bytes, and no worker ever opens a path of its own disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::job::JobSpec;
use crate::job::image::{ImageInput, ImageSource, sniff_mime};
use crate::storage::OutputStore;

/// Paths remembered during one submit (a file used by many lines is read once).
const CACHED_PATHS: usize = 10_000;

/// Uploads a submit's local input files.
pub struct Uploader {
    store: OutputStore,
    done: Mutex<HashMap<PathBuf, (String, String)>>,
    /// Also store inline (base64) images (the HTTP API: the queue holds no bytes).
    inline: bool,
}

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "image/heif" => "heif",
        _ => "png",
    }
}

impl Uploader {
    /// Uploads into `store` (the project's output store).
    pub fn new(store: OutputStore) -> Self {
        Uploader {
            store,
            done: Mutex::default(),
            inline: false,
        }
    }

    /// The same, storing inline images too.
    pub fn with_inline(mut self) -> Self {
        self.inline = true;
        self
    }

    /// True when `spec` has images this uploader stores.
    pub fn wants(&self, spec: &JobSpec) -> bool {
        crate::job::validate::input_images(spec)
            .iter()
            .any(|(_, i)| match i.source {
                ImageSource::Path(_) => true,
                ImageSource::Inline(_) => self.inline,
                _ => false,
            })
    }

    /// Stores what this uploader stores: local paths, and inline images if asked.
    pub async fn store_all(&self, spec: &mut JobSpec) -> Result<(), String> {
        self.upload(spec).await?;
        if self.inline {
            self.upload_inline(spec).await?;
        }
        Ok(())
    }

    /// Replaces every inline (base64) image of `spec` by its stored copy: what the HTTP
    /// API does with uploads, so the queue holds no image bytes.
    pub async fn upload_inline(&self, spec: &mut JobSpec) -> Result<(), String> {
        for img in images_mut(spec) {
            let ImageSource::Inline(data) = &img.source else {
                continue;
            };
            let bytes = crate::job::image::decode_base64(data)
                .map_err(|e| format!("image data is not base64: {e}"))?;
            let (key, mime) = self
                .store_bytes(bytes, img.mime_type.as_deref(), "an uploaded image")
                .await?;
            *img = ImageInput {
                source: ImageSource::Stored(key),
                mime_type: Some(mime),
            };
        }
        Ok(())
    }

    /// Replaces every local path of `spec` by its stored copy.
    pub async fn upload(&self, spec: &mut JobSpec) -> Result<(), String> {
        for img in images_mut(spec) {
            let ImageSource::Path(path) = &img.source else {
                continue;
            };
            let path = path.clone();
            let known = self.done.lock().expect("uploads").get(&path).cloned();
            let (key, mime) = match known {
                Some(k) => k,
                None => {
                    let k = self.store_one(&path, img.mime_type.as_deref()).await?;
                    let mut done = self.done.lock().expect("uploads");
                    if done.len() < CACHED_PATHS {
                        done.insert(path.clone(), k.clone());
                    }
                    k
                }
            };
            *img = ImageInput {
                source: ImageSource::Stored(key),
                mime_type: Some(mime),
            };
        }
        Ok(())
    }

    async fn store_one(
        &self,
        path: &std::path::Path,
        declared: Option<&str>,
    ) -> Result<(String, String), String> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        self.store_bytes(bytes, declared, &format!("`{}`", path.display()))
            .await
    }

    /// Stores one image's bytes; `what` names it in errors.
    async fn store_bytes(
        &self,
        bytes: Vec<u8>,
        declared: Option<&str>,
        what: &str,
    ) -> Result<(String, String), String> {
        let mime = declared
            .map(str::to_string)
            .or_else(|| sniff_mime(&bytes).map(str::to_string))
            .ok_or_else(|| format!("{what} is not a PNG, JPEG, WebP or HEIC/HEIF image"))?;
        let key = self
            .store
            .put_input(bytes.into(), extension(&mime))
            .await
            .map_err(|e| format!("storing {what} for the workers: {e}"))?;
        Ok((key, mime))
    }
}

/// Every input image of `spec`.
fn images_mut(spec: &mut JobSpec) -> impl Iterator<Item = &mut ImageInput> {
    spec.images
        .iter_mut()
        .chain(
            spec.reference_images
                .iter_mut()
                .filter_map(|r| r.image.as_mut()),
        )
        .chain(spec.product_images.iter_mut())
        .chain(spec.person_image.iter_mut())
        .chain(spec.scribble_image.iter_mut())
}
