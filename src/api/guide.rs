//! The endpoints of the Gemini image guide (`../shared/seeds`, "API Endpoints"), with
//! its field names: `/generate-image`, `/edit-image`, `/compose-images`. Each becomes
//! one job (the guide's own fields folded into the instruction, ours passed through as
//! job fields) and answers the guide's JSON, sync by default.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::form::{Form, Upload};
use super::{ApiState, Caller, jobs};
use crate::job::JobSpec;

/// The guide's prompt limit ("max 2000 characters").
pub const MAX_PROMPT_CHARS: usize = 2000;

/// The prompt: required, at most [`MAX_PROMPT_CHARS`].
pub(super) fn prompt(fields: &Map<String, Value>) -> Result<String, ApiError> {
    text_field(fields, "prompt")
}

/// A required text of at most [`MAX_PROMPT_CHARS`] (a prompt, a chat message).
pub(super) fn text_field(fields: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    let p = match fields.get(field) {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        Some(Value::String(_)) | None => {
            return Err(ApiError::field(field, format!("a {field} is required")));
        }
        Some(_) => return Err(ApiError::field(field, format!("the {field} must be text"))),
    };
    let n = p.chars().count();
    if n > MAX_PROMPT_CHARS {
        return Err(ApiError::field(
            field,
            format!("The {field} is too long. Maximum length is {MAX_PROMPT_CHARS} characters."),
        )
        .with_details(
            json!({"field": field, "max_length": MAX_PROMPT_CHARS, "current_length": n}),
        ));
    }
    Ok(p)
}

/// A JSON image value: a URL or `data:` URL as is, bare base64 as inline data.
fn image_value(v: Value) -> Value {
    match v {
        Value::String(s)
            if !["data:", "http://", "https://", "gs://", "s3://", "az://"]
                .iter()
                .any(|p| s.starts_with(p)) =>
        {
            json!({ "data": s })
        }
        other => other,
    }
}

fn upload_value(u: &Upload) -> Value {
    let mut v = json!({ "data": base64::engine::general_purpose::STANDARD.encode(&u.bytes) });
    if let Some(ct) = u
        .content_type
        .as_deref()
        .filter(|c| c.starts_with("image/"))
    {
        v["mime_type"] = json!(ct);
    }
    v
}

/// The job spec of the request's remaining fields, for `op` with `instruction` as its
/// prompt; an unknown field is named.
fn spec_of(
    op: &str,
    instruction: String,
    mut fields: Map<String, Value>,
) -> Result<JobSpec, ApiError> {
    if let Some(Value::Array(m)) = fields.get_mut("response_modalities") {
        for v in m.iter_mut() {
            if let Value::String(s) = v {
                *s = s.to_ascii_uppercase();
            }
        }
    }
    // A null is an absent field (clients send `"model": null` for "the default").
    fields.retain(|_, v| !v.is_null());
    fields.insert("op".into(), json!(op));
    fields.insert("prompt".into(), json!(instruction));
    let text = Value::Object(fields).to_string();
    JobSpec::from_user_json(&text).map_err(ApiError::from_message)
}

/// Reads the request, runs the job sync or async.
async fn run(
    state: &ApiState,
    caller: &Caller,
    mut form: Form,
    op: &str,
    build: impl FnOnce(&mut Form, String) -> Result<String, ApiError>,
) -> Result<Response, ApiError> {
    let base = prompt(&form.fields)?;
    let instruction = build(&mut form, base)?;
    submit(state, caller, form, op, instruction).await
}

/// Runs `op` with `instruction` and the form's other fields as job fields; `async`
/// (or a `webhook_url`) answers 202 at once.
pub(super) async fn submit(
    state: &ApiState,
    caller: &Caller,
    form: Form,
    op: &str,
    instruction: String,
) -> Result<Response, ApiError> {
    let (spec, asynchronous) = job_of(form, op, instruction)?;
    jobs::run(state, caller, spec, asynchronous).await
}

/// The job of a request's remaining fields, and whether it asked to be async (`async`
/// or a `webhook_url`); a file left over is named.
pub(super) fn job_of(
    mut form: Form,
    op: &str,
    instruction: String,
) -> Result<(JobSpec, bool), ApiError> {
    let asynchronous = match form.take("async") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::field("async", "must be true or false")),
    };
    if let Some(extra) = form.files.first() {
        return Err(ApiError::field(
            &extra.field,
            format!("`{}` takes no file here", extra.field),
        ));
    }
    let spec = spec_of(op, instruction, form.fields)?;
    let asynchronous = asynchronous || spec.webhook_url.is_some();
    Ok((spec, asynchronous))
}

/// `POST /generate-image`: `{prompt, model?, response_modalities?, temperature?}` and
/// job fields (`aspect_ratio`, `image_size`, `number_of_images`, `seed`, …).
#[utoipa::path(
    post,
    path = "/generate-image",
    request_body(content = super::openapi::GenerateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The finished job, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub async fn generate(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let form = Form::read(req, state.max_file_bytes).await?;
    run(&state, &caller, form, "generate", |_, p| Ok(p)).await
}

/// `edit_strength` (0.1–1.0) and `preserve_subject` in words, after the instruction.
fn edit_instruction(form: &mut Form, mut text: String) -> Result<String, ApiError> {
    if let Some(v) = form.take("edit_strength").filter(|v| !v.is_null()) {
        let s = v
            .as_f64()
            .filter(|s| (0.1..=1.0).contains(s))
            .ok_or_else(|| {
                ApiError::field(
                    "edit_strength",
                    format!("must be a number from 0.1 to 1.0, got {v}"),
                )
            })?;
        let how = match s {
            s if s < 0.4 => "subtle: change as little as the instruction needs",
            s if s < 0.75 => "moderate",
            _ => "strong: the instruction may change the image substantially",
        };
        text.push_str(&format!("\nEdit strength {s:.1} ({how})."));
    }
    match form.take("preserve_subject") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => text.push_str(
            "\nKeep the main subject exactly as it is: the same identity, shape, pose, proportions and details.",
        ),
        Some(v) => return Err(ApiError::field("preserve_subject", format!("must be true or false, got {v}"))),
    }
    Ok(text)
}

/// The images of a request: files sent as `field`, or JSON values under it.
pub(super) fn images(form: &mut Form, field: &str, list: bool) -> Result<Vec<Value>, ApiError> {
    let files: Vec<Value> = form.files_of(field).iter().map(upload_value).collect();
    if !files.is_empty() {
        return Ok(files);
    }
    match form.take(field) {
        Some(Value::Array(items)) if list => Ok(items.into_iter().map(image_value).collect()),
        Some(v @ Value::String(_)) | Some(v @ Value::Object(_)) => Ok(vec![image_value(v)]),
        None => Ok(Vec::new()),
        Some(v) => Err(ApiError::field(field, format!("not an image: {v}"))),
    }
}

/// `POST /edit-image`: multipart (`image` file, `prompt`, `preserve_subject`,
/// `edit_strength`) or JSON with `image` as base64, a `data:` URL or a URL.
#[utoipa::path(
    post,
    path = "/edit-image",
    request_body(content(
        (super::openapi::EditForm = "multipart/form-data"),
        (super::openapi::EditJson = "application/json")
    )),
    responses(
        (status = 200, description = "The finished job, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub async fn edit(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let image = images(&mut form, "image", false)?;
    if image.len() != 1 {
        return Err(ApiError::field(
            "image",
            "one image to edit is required (a file, base64 data or a URL)",
        ));
    }
    form.fields.insert("images".into(), Value::Array(image));
    run(&state, &caller, form, "edit", edit_instruction)
        .await
        .map_err(|e| {
            e.rename_field("images[0]", "image")
                .rename_field("images", "image")
        })
}

/// `POST /compose-images`: repeated `images` files (2 or more), `prompt`,
/// `composition_style`.
#[utoipa::path(
    post,
    path = "/compose-images",
    request_body(content = super::openapi::ComposeForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The finished job, images inline as base64", body = super::openapi::GuideAnswerDoc),
        (status = 202, description = "Queued or still running: poll `status_url`", body = super::openapi::AcceptedDoc),
        super::openapi::SyncErrors
    )
)]
pub async fn compose(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let mut form = Form::read(req, state.max_file_bytes).await?;
    let list = images(&mut form, "images", true)?;
    if list.len() < 2 {
        return Err(ApiError::field(
            "images",
            format!("composing needs 2 or more images, got {}", list.len()),
        ));
    }
    form.fields.insert("images".into(), Value::Array(list));
    run(&state, &caller, form, "compose", |form, mut text| {
        match form.take("composition_style") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::String(s)) => text.push_str(&format!("\nComposition style: {s}.")),
            Some(v) => {
                return Err(ApiError::field(
                    "composition_style",
                    format!("must be text, got {v}"),
                ));
            }
        }
        Ok(text)
    })
    .await
}
