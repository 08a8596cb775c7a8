//! `:predict` operations that take input images (spec §5.2–5.4): edit/customization
//! reference images, product recontext and virtual try-on, plus the shared
//! check of one input image (≤ 10 MB, decodable, or a `gs://` URI).
//!
//! Validation only; answers are built in `response`.

use serde_json::Value;

use crate::emulator::call::CallCtx;
use crate::emulator::envelope::ApiError;
use crate::emulator::imagen::params::{Common, enum_param};
use crate::emulator::imagen::{ImagenPlan, Op, base_plan, ratio_dims};
use crate::emulator::media::{decode_b64, inspect};

const REFERENCE_TYPES: &[&str] = &[
    "REFERENCE_TYPE_RAW",
    "REFERENCE_TYPE_MASK",
    "REFERENCE_TYPE_CONTROL",
    "REFERENCE_TYPE_STYLE",
    "REFERENCE_TYPE_SUBJECT",
    "REFERENCE_TYPE_CONTENT",
];
const EDIT_MODES: &[&str] = &[
    "EDIT_MODE_DEFAULT",
    "EDIT_MODE_INPAINT_REMOVAL",
    "EDIT_MODE_INPAINT_INSERTION",
    "EDIT_MODE_OUTPAINT",
    "EDIT_MODE_CONTROLLED_EDITING",
    "EDIT_MODE_STYLE",
    "EDIT_MODE_BGSWAP",
    "EDIT_MODE_PRODUCT_IMAGE",
];
const MASK_MODES: &[&str] = &[
    "MASK_MODE_DEFAULT",
    "MASK_MODE_USER_PROVIDED",
    "MASK_MODE_BACKGROUND",
    "MASK_MODE_FOREGROUND",
    "MASK_MODE_SEMANTIC",
];
const CONTROL_TYPES: &[&str] = &[
    "CONTROL_TYPE_DEFAULT",
    "CONTROL_TYPE_CANNY",
    "CONTROL_TYPE_SCRIBBLE",
    "CONTROL_TYPE_FACE_MESH",
];
const SUBJECT_TYPES: &[&str] = &[
    "SUBJECT_TYPE_DEFAULT",
    "SUBJECT_TYPE_PERSON",
    "SUBJECT_TYPE_ANIMAL",
    "SUBJECT_TYPE_PRODUCT",
];

/// Checks one input image object (`{bytesBase64Encoded|gcsUri, mimeType}`); returns its
/// dimensions when they can be read.
pub fn image_field(
    ctx: &CallCtx,
    image: &Value,
    path: &str,
) -> Result<Option<(u32, u32)>, ApiError> {
    if let Some(mime) = image.get("mimeType").and_then(Value::as_str)
        && !matches!(mime, "image/png" | "image/jpeg" | "image/webp")
    {
        return Err(ApiError::field(
            &format!("{path}.mimeType"),
            format!("Unsupported mimeType {mime}."),
        ));
    }
    if let Some(uri) = image.get("gcsUri").and_then(Value::as_str) {
        if !uri.starts_with("gs://") {
            return Err(ApiError::field(
                &format!("{path}.gcsUri"),
                "gcsUri must start with gs://.",
            ));
        }
        return Ok(None);
    }
    let Some(b64) = image.get("bytesBase64Encoded").and_then(Value::as_str) else {
        return Err(ApiError::field(
            path,
            format!("{path} must carry bytesBase64Encoded or gcsUri."),
        ));
    };
    let field = format!("{path}.bytesBase64Encoded");
    let Some(bytes) = decode_b64(b64).filter(|b| !b.is_empty()) else {
        return Err(ApiError::field(&field, "Image bytes are not valid base64."));
    };
    let max = ctx.info.max_inline_bytes;
    if bytes.len() as u64 > max {
        return Err(ApiError::field(
            &field,
            format!(
                "Input image is {} bytes; the limit is {max} bytes.",
                bytes.len()
            ),
        ));
    }
    match inspect(&bytes) {
        Some(found) => Ok(found.dims),
        None => Err(ApiError::field(
            &field,
            "Unable to decode the input image. Please provide a valid PNG, JPEG or WebP image.",
        )),
    }
}

/// Edit / customization on a capability model.
pub fn edit(
    ctx: &CallCtx,
    instance: &Value,
    params: &Value,
    c: Common,
) -> Result<ImagenPlan, ApiError> {
    let prompt = match instance.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => {
            return Err(ApiError::field(
                "instances[0].prompt",
                format!("prompt must be a string, got {other}."),
            ));
        }
    };
    enum_param(params, "editMode", EDIT_MODES)?;
    let refs = instance.get("referenceImages").and_then(Value::as_array);
    let Some(refs) = refs.filter(|r| !r.is_empty()) else {
        return Err(ApiError::field(
            "instances[0].referenceImages",
            "At least one reference image is required for editing.",
        ));
    };
    if refs.len() as u32 > ctx.info.max_input_images {
        return Err(ApiError::field(
            "instances[0].referenceImages",
            format!(
                "At most {} reference images are supported; got {}.",
                ctx.info.max_input_images,
                refs.len()
            ),
        ));
    }
    let mut raw_dims = None;
    for (i, r) in refs.iter().enumerate() {
        let dims = reference(ctx, r, &format!("instances[0].referenceImages[{i}]"))?;
        if raw_dims.is_none()
            && r.get("referenceType").and_then(Value::as_str) == Some("REFERENCE_TYPE_RAW")
        {
            raw_dims = dims;
        }
    }
    let dims = match raw_dims {
        Some(d) => d,
        None => ratio_dims(ctx, c.aspect_ratio.as_deref(), None)?,
    };
    Ok(base_plan(Op::Edit, prompt, dims, c))
}

fn reference(ctx: &CallCtx, r: &Value, path: &str) -> Result<Option<(u32, u32)>, ApiError> {
    let kind = r.get("referenceType").and_then(Value::as_str).unwrap_or("");
    if !REFERENCE_TYPES.contains(&kind) {
        return Err(ApiError::field(
            &format!("{path}.referenceType"),
            format!(
                "Invalid referenceType \"{kind}\". Allowed: {}.",
                REFERENCE_TYPES.join(", ")
            ),
        ));
    }
    if r.get("referenceId")
        .is_some_and(|v| !v.is_i64() && !v.is_u64())
    {
        return Err(ApiError::field(
            &format!("{path}.referenceId"),
            "referenceId must be an integer.",
        ));
    }
    let nested = [
        ("maskImageConfig", "maskMode", MASK_MODES),
        ("controlImageConfig", "controlType", CONTROL_TYPES),
        ("subjectImageConfig", "subjectType", SUBJECT_TYPES),
    ];
    for (config, field, allowed) in nested {
        if let Some(v) = r.get(config).and_then(|c| c.get(field))
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            return Err(ApiError::field(
                &format!("{path}.{config}.{field}"),
                format!("Invalid {field} {v}. Allowed: {}.", allowed.join(", ")),
            ));
        }
    }
    if let Some(d) = r
        .pointer("/maskImageConfig/dilation")
        .and_then(Value::as_f64)
        && !(0.0..=1.0).contains(&d)
    {
        return Err(ApiError::field(
            &format!("{path}.maskImageConfig.dilation"),
            "dilation must be between 0 and 1.",
        ));
    }
    let mask_mode = r
        .pointer("/maskImageConfig/maskMode")
        .and_then(Value::as_str);
    let image_optional =
        kind == "REFERENCE_TYPE_MASK" && mask_mode != Some("MASK_MODE_USER_PROVIDED");
    match r.get("referenceImage") {
        Some(img) => image_field(ctx, img, &format!("{path}.referenceImage")),
        None if image_optional => Ok(None),
        None => Err(ApiError::field(
            &format!("{path}.referenceImage"),
            format!("{kind} requires a referenceImage."),
        )),
    }
}

/// Product recontext: prompt plus 1–3 product images.
pub fn recontext(ctx: &CallCtx, instance: &Value, c: Common) -> Result<ImagenPlan, ApiError> {
    let prompt = instance
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    product_images(ctx, instance, 1, ctx.info.max_input_images as usize)?;
    let dims = ratio_dims(ctx, c.aspect_ratio.as_deref(), None)?;
    Ok(base_plan(Op::Recontext, prompt, dims, c))
}

/// Virtual try-on: one person image plus one product image.
pub fn try_on(ctx: &CallCtx, instance: &Value, c: Common) -> Result<ImagenPlan, ApiError> {
    let person = instance.pointer("/personImage/image").ok_or_else(|| {
        ApiError::field(
            "instances[0].personImage.image",
            "personImage.image is required for virtual try-on.",
        )
    })?;
    image_field(ctx, person, "instances[0].personImage.image")?;
    product_images(ctx, instance, 1, 1)?;
    let dims = ratio_dims(ctx, c.aspect_ratio.as_deref(), None)?;
    Ok(base_plan(Op::TryOn, "virtual try-on".into(), dims, c))
}

fn product_images(ctx: &CallCtx, instance: &Value, min: usize, max: usize) -> Result<(), ApiError> {
    let list = instance
        .get("productImages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if list.len() < min || list.len() > max {
        return Err(ApiError::field(
            "instances[0].productImages",
            format!(
                "productImages must hold between {min} and {max} images for {}; got {}.",
                ctx.model,
                list.len()
            ),
        ));
    }
    for (i, p) in list.iter().enumerate() {
        let path = format!("instances[0].productImages[{i}].image");
        let img = p
            .get("image")
            .ok_or_else(|| ApiError::field(&path, "image is required."))?;
        image_field(ctx, img, &path)?;
    }
    Ok(())
}
