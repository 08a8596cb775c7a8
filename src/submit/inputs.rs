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
}

/// True when `spec` names a local file anywhere.
pub fn has_local_paths(spec: &JobSpec) -> bool {
    crate::job::validate::input_images(spec)
        .iter()
        .any(|(_, i)| matches!(i.source, ImageSource::Path(_)))
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
        }
    }

    /// Replaces every local path of `spec` by its stored copy.
    pub async fn upload(&self, spec: &mut JobSpec) -> Result<(), String> {
        for img in spec
            .images
            .iter_mut()
            .chain(
                spec.reference_images
                    .iter_mut()
                    .filter_map(|r| r.image.as_mut()),
            )
            .chain(spec.product_images.iter_mut())
            .chain(spec.person_image.iter_mut())
            .chain(spec.scribble_image.iter_mut())
        {
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
        let mime = declared
            .map(str::to_string)
            .or_else(|| sniff_mime(&bytes).map(str::to_string))
            .ok_or_else(|| {
                format!(
                    "`{}` is not a PNG, JPEG, WebP or HEIC/HEIF image",
                    path.display()
                )
            })?;
        let key = self
            .store
            .put_input(bytes.into(), extension(&mime))
            .await
            .map_err(|e| format!("storing `{}` for the workers: {e}", path.display()))?;
        Ok((key, mime))
    }
}
