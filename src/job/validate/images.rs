//! Input image rules: total count per model, MIME types, and byte limits (7 MB inline for
//! Gemini, 10 MB for Imagen — spec §0, §7).

use crate::catalog::ModelInfo;
use crate::job::content::Part;
use crate::job::image::{INPUT_MIME_TYPES, ImageInput, ImageSource, decode_base64, sniff_mime};
use crate::job::spec::JobSpec;

use super::{Report, ValidationContext};

/// Every input image of a spec with the field that names it.
pub fn inputs(spec: &JobSpec) -> Vec<(String, &ImageInput)> {
    let mut out = Vec::new();
    for (i, img) in spec.images.iter().enumerate() {
        out.push((format!("images[{i}]"), img));
    }
    for (i, r) in spec.reference_images.iter().enumerate() {
        if let Some(img) = &r.image {
            out.push((format!("reference_images[{i}].image"), img));
        }
    }
    for (i, img) in spec.product_images.iter().enumerate() {
        out.push((format!("product_images[{i}]"), img));
    }
    if let Some(img) = &spec.person_image {
        out.push(("person_image".to_string(), img));
    }
    if let Some(img) = &spec.scribble_image {
        out.push(("scribble_image".to_string(), img));
    }
    out
}

fn history_images(spec: &JobSpec) -> impl Iterator<Item = (String, &Part)> {
    spec.history.iter().enumerate().flat_map(|(i, c)| {
        c.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.inline_data.is_some())
            .map(move |(j, p)| (format!("history[{i}].parts[{j}].inline_data"), p))
    })
}

pub(super) fn check_all(
    spec: &JobSpec,
    model: &ModelInfo,
    ctx: &ValidationContext,
    r: &mut Report,
) {
    let all = inputs(spec);
    if model.family.is_generate_content() {
        // Scribbles and masks are not Gemini inputs; every listed image becomes a part.
        let n = all.len() as u32;
        if n > model.max_input_images {
            r.err(
                "images",
                format!(
                    "`{}` takes at most {} input images per request, this job has {n}",
                    spec.model, model.max_input_images
                ),
            );
        }
    }
    for (field, img) in all {
        check_one(&field, img, model, ctx, r);
    }
    for (field, part) in history_images(spec) {
        if let Some(blob) = &part.inline_data {
            check_inline(&field, &blob.data, Some(&blob.mime_type), model, r);
        }
    }
}

fn check_one(
    field: &str,
    img: &ImageInput,
    model: &ModelInfo,
    ctx: &ValidationContext,
    r: &mut Report,
) {
    if let Some(m) = &img.mime_type
        && !INPUT_MIME_TYPES.contains(&m.as_str())
    {
        r.err(
            format!("{field}.mime_type"),
            format!(
                "`{m}` is not accepted (allowed: {})",
                INPUT_MIME_TYPES.join(", ")
            ),
        );
    }
    match &img.source {
        ImageSource::Inline(data) => check_inline(field, data, img.mime_type.as_deref(), model, r),
        ImageSource::Path(path) if ctx.check_local_files => match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => {
                r.err(field, format!("`{}` is not a file", path.display()))
            }
            Ok(meta) if meta.len() > model.max_inline_bytes => r.err(
                field,
                format!(
                    "`{}` is {} bytes, over the {}-byte limit of `{}`",
                    path.display(),
                    meta.len(),
                    model.max_inline_bytes,
                    model.id
                ),
            ),
            Ok(_) => check_file_type(field, path, img.mime_type.as_deref(), r),
            Err(e) => r.err(field, format!("cannot read `{}`: {e}", path.display())),
        },
        // Checked when it was stored (a producer's upload).
        ImageSource::Path(_) | ImageSource::Stored(_) | ImageSource::Output { .. } => {}
        ImageSource::Url(url) => {
            if url.starts_with("gs://") && url.trim_start_matches("gs://").split('/').count() < 2 {
                r.err(field, format!("`{url}` names a bucket but no object"));
            }
        }
    }
}

fn check_file_type(field: &str, path: &std::path::Path, declared: Option<&str>, r: &mut Report) {
    use std::io::Read;
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    match (declared, sniff_mime(&head[..n])) {
        (_, None) => r.err(
            field,
            format!(
                "`{}` is not a PNG, JPEG, WebP or HEIC/HEIF image",
                path.display()
            ),
        ),
        (Some(d), Some(s)) if d != s && !(d == "image/heif" && s == "image/heic") => r.err(
            format!("{field}.mime_type"),
            format!("declared `{d}` but `{}` is `{s}`", path.display()),
        ),
        _ => {}
    }
}

fn check_inline(
    field: &str,
    data: &str,
    declared: Option<&str>,
    model: &ModelInfo,
    r: &mut Report,
) {
    let bytes = match decode_base64(data) {
        Ok(b) => b,
        Err(e) => {
            r.err(field, format!("inline data is not valid base64: {e}"));
            return;
        }
    };
    if bytes.len() as u64 > model.max_inline_bytes {
        r.err(
            field,
            format!("{} bytes inline, over the {}-byte limit of `{}` (use a gs:// URL for larger images)", bytes.len(), model.max_inline_bytes, model.id),
        );
        return;
    }
    match (declared, sniff_mime(&bytes)) {
        (None, None) => r.err(
            field,
            "inline data is not a PNG, JPEG, WebP or HEIC/HEIF image",
        ),
        // A declared type does not make other bytes an image: Google would answer 400.
        (Some(d), None) => r.err(
            field,
            format!(
                "inline data is declared `{d}` but is not a PNG, JPEG, WebP or HEIC/HEIF image"
            ),
        ),
        (Some(d), Some(s)) if d != s && !(d == "image/heif" && s == "image/heic") => r.err(
            format!("{field}.mime_type"),
            format!("declared `{d}` but the bytes are `{s}`"),
        ),
        _ => {}
    }
}
