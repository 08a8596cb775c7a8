//! The guide's "Advanced Editing" endpoints, mapped to the best current Gemini request:
//! the image plus an instruction.
//!
//! - `/advanced/inpaint`: `image`, `prompt`, `region_description`, optional `mask` (a
//!   second image, white where to change).
//! - `/advanced/outpaint`: `image`, `prompt`, `direction` (top/bottom/left/right),
//!   `extension_ratio`: the image is placed on a larger canvas (grey where it grows,
//!   `extension_ratio` of its size on each side named) and the model fills the grey,
//!   with the output's aspect ratio the model's nearest to the new canvas.
//! - `/advanced/style-transfer`: `image`, `style` (`van_gogh` reads "van gogh"),
//!   `style_strength`, `preserve_content`; `prompt` optional.
//!
//! Imagen's mask-based edit modes are not used: Imagen is shut down (spec §11).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::error::ApiError;
use super::form::Form;
use super::guide::{images, prompt, submit};
use super::{ApiState, Caller};

/// The one image to edit, as the job's `images`.
fn one_image(form: &mut Form) -> Result<Value, ApiError> {
    let mut list = images(form, "image", false)?;
    if list.len() != 1 {
        return Err(ApiError::field(
            "image",
            "one image is required (a file, base64 data or a URL)",
        ));
    }
    Ok(list.remove(0))
}

fn number(
    form: &mut Form,
    field: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, ApiError> {
    match form.take(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| range.contains(x))
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    field,
                    format!(
                        "must be a number from {} to {}, got {v}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

fn flag(form: &mut Form, field: &str) -> Result<bool, ApiError> {
    match form.take(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(v) => Err(ApiError::field(
            field,
            format!("must be true or false, got {v}"),
        )),
    }
}

fn text(form: &mut Form, field: &str) -> Result<Option<String>, ApiError> {
    match form.take(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::field(field, format!("must be text, got {v}"))),
    }
}

/// `POST /advanced/inpaint`.
#[utoipa::path(
    post,
    path = "/advanced/inpaint",
    request_body(content = super::openapi::InpaintForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The finished job, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub async fn inpaint(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let what = prompt(&form.fields)?;
    let mut list = vec![one_image(&mut form)?];
    let region = text(&mut form, "region_description")?;
    let mask = images(&mut form, "mask", false)?;
    let mut instruction = match &region {
        Some(r) => format!("Change only {r} in this image: {what}."),
        None => format!("Change only the relevant region of this image: {what}."),
    };
    if let Some(m) = mask.into_iter().next() {
        list.push(m);
        instruction.push_str(" The second image is a mask: change only where it is white.");
    }
    instruction.push_str(" Keep everything else exactly as it is.");
    form.fields.insert("images".into(), Value::Array(list));
    submit(&state, &caller, form, "edit", instruction)
        .await
        .map_err(|e| {
            e.rename_field("images[0]", "image")
                .rename_field("images[1]", "mask")
        })
}

/// The sides an outpaint grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sides {
    top: bool,
    bottom: bool,
    left: bool,
    right: bool,
}

fn sides(v: Option<Value>) -> Result<Sides, ApiError> {
    let list = match v {
        None | Some(Value::Null) => vec![json!("left"), json!("right")],
        Some(Value::Array(l)) => l,
        Some(s @ Value::String(_)) => vec![s],
        Some(v) => {
            return Err(ApiError::field(
                "direction",
                format!("a list of top, bottom, left, right; got {v}"),
            ));
        }
    };
    let mut s = Sides::default();
    for d in &list {
        match d.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("top") => s.top = true,
            Some("bottom") => s.bottom = true,
            Some("left") => s.left = true,
            Some("right") => s.right = true,
            _ => {
                return Err(ApiError::field(
                    "direction",
                    format!("`{d}` is not top, bottom, left or right"),
                ));
            }
        }
    }
    if s == Sides::default() {
        return Err(ApiError::field("direction", "name at least one side"));
    }
    Ok(s)
}

/// The image on a canvas grown by `ratio` of its size on each of `sides`, grey where
/// it grew; PNG bytes and the canvas size.
fn pad(bytes: &[u8], sides: Sides, ratio: f64) -> Result<(Vec<u8>, u32, u32), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("not an image: {e}"))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let grow = |n: u32, on: bool| {
        if on {
            (f64::from(n) * ratio).round() as u32
        } else {
            0
        }
    };
    let (l, r, t, b) = (
        grow(w, sides.left),
        grow(w, sides.right),
        grow(h, sides.top),
        grow(h, sides.bottom),
    );
    let mut canvas = image::RgbImage::from_pixel(w + l + r, h + t + b, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &img, i64::from(l), i64::from(t));
    let mut png = std::io::Cursor::new(Vec::new());
    canvas
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok((png.into_inner(), canvas.width(), canvas.height()))
}

/// The model's aspect ratio nearest to `w`×`h`.
fn nearest_ratio(model: &str, w: u32, h: u32) -> Option<&'static str> {
    crate::catalog::nearest_ratio(w, h, crate::catalog::lookup(model)?.aspect_ratios)
}

/// `POST /advanced/outpaint`.
#[utoipa::path(
    post,
    path = "/advanced/outpaint",
    request_body(content = super::openapi::OutpaintForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The finished job, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub async fn outpaint(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let what = prompt(&form.fields)?;
    let image = one_image(&mut form)?;
    let Some(data) = image.get("data").and_then(Value::as_str) else {
        return Err(ApiError::field(
            "image",
            "outpainting needs the image's bytes: a file or base64 data",
        ));
    };
    let bytes = crate::job::image::decode_base64(data)
        .map_err(|e| ApiError::field("image", format!("not base64: {e}")))?;
    let sides = sides(form.take("direction"))?;
    let ratio = number(&mut form, "extension_ratio", 0.05..=2.0)?.unwrap_or(0.5);
    let (png, w, h) = pad(&bytes, sides, ratio).map_err(|e| ApiError::field("image", e))?;
    let model = form
        .fields
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| state.projects[&caller.project].default_model.clone());
    if !form.fields.contains_key("aspect_ratio")
        && let Some(r) = nearest_ratio(&model, w, h)
    {
        form.fields.insert("aspect_ratio".into(), json!(r));
    }
    let named: Vec<&str> = [
        ("top", sides.top),
        ("bottom", sides.bottom),
        ("left", sides.left),
        ("right", sides.right),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    form.fields.insert(
        "images".into(),
        json!([{ "data": b64, "mime_type": "image/png" }]),
    );
    let instruction = format!(
        "The photo has been placed on a larger canvas: the flat grey areas at the {} are empty. Fill them by extending the scene seamlessly: {what}. Keep the original photo area exactly as it is, and fill the whole canvas.",
        named.join(" and ")
    );
    submit(&state, &caller, form, "edit", instruction)
        .await
        .map_err(|e| e.rename_field("images[0]", "image"))
}

/// `POST /advanced/style-transfer`.
#[utoipa::path(
    post,
    path = "/advanced/style-transfer",
    request_body(content = super::openapi::StyleForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The finished job, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub async fn style_transfer(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let image = one_image(&mut form)?;
    let style = text(&mut form, "style")?
        .ok_or_else(|| ApiError::field("style", "a style is required (e.g. van_gogh, watercolor)"))?
        .replace('_', " ");
    let strength = number(&mut form, "style_strength", 0.0..=1.0)?;
    let preserve = flag(&mut form, "preserve_content")?;
    let extra = match form.fields.get("prompt") {
        Some(Value::String(_)) => Some(prompt(&form.fields)?),
        _ => None,
    };
    form.take("prompt");
    let mut instruction = format!("Repaint this image in the style of {style}.");
    if let Some(s) = strength {
        let how = if s < 0.4 {
            "lightly"
        } else if s < 0.75 {
            "clearly"
        } else {
            "fully"
        };
        instruction.push_str(&format!(" Apply the style {how} (strength {s:.1})."));
    }
    if preserve {
        instruction.push_str(" Keep the content, composition and subjects exactly as they are; change only the rendering.");
    }
    if let Some(p) = extra {
        instruction.push(' ');
        instruction.push_str(&p);
    }
    form.fields
        .insert("images".into(), Value::Array(vec![image]));
    submit(&state, &caller, form, "edit", instruction)
        .await
        .map_err(|e| e.rename_field("images[0]", "image"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outpaint_grows_the_named_sides_and_picks_the_nearest_ratio() {
        let img = image::RgbImage::from_pixel(100, 50, image::Rgb([200, 10, 10]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let s = sides(Some(json!(["top", "right"]))).unwrap();
        let (out, w, h) = pad(png.get_ref(), s, 0.8).unwrap();
        assert_eq!((w, h), (180, 90));
        let canvas = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(
            canvas.get_pixel(0, 89).0,
            [200, 10, 10],
            "the photo sits bottom-left"
        );
        assert_eq!(canvas.get_pixel(179, 0).0, [128, 128, 128]);
        // 2:1 lies between 16:9 (ln 0.118 away) and 21:9 (ln 0.154 away).
        assert_eq!(nearest_ratio("gemini-3.1-flash-image", w, h), Some("16:9"));
        assert_eq!(
            nearest_ratio("gemini-3.1-flash-image", 1000, 1000),
            Some("1:1")
        );
        assert!(sides(Some(json!(["up"]))).is_err());
    }
}
