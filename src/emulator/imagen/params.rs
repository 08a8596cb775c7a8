//! `:predict` parameters shared by every Imagen operation (spec §5.1): sample count,
//! case-insensitive enums, seed vs watermark, output options, storage URI, and the
//! parameters the Developer API refuses.
//!
//! Validation only; operation-specific inputs are in `imagen` / `inputs`.

use serde_json::Value;

use crate::catalog::{Family, IMAGEN_LANGUAGES};

use crate::emulator::call::CallCtx;
use crate::emulator::call::Surface;
use crate::emulator::envelope::ApiError;
use crate::emulator::media::synth::{Encoding, requested_encoding};

/// Parameters shared by the operations.
pub(crate) struct Common {
    pub samples: u32,
    pub seed: i64,
    pub encoding: Encoding,
    pub storage_uri: Option<String>,
    pub include_rai: bool,
    pub include_safety: bool,
    pub enhance_prompt: bool,
    pub aspect_ratio: Option<String>,
}

const SAFETY: &[&str] = &[
    "block_low_and_above",
    "block_medium_and_above",
    "block_only_high",
    "block_none",
    "block_most",
    "block_some",
    "block_few",
    "block_fewest",
];
const PERSON: &[&str] = &["dont_allow", "allow_adult", "allow_all"];
const DEV_REFUSED: &[&str] = &[
    "seed",
    "negativePrompt",
    "addWatermark",
    "enhancePrompt",
    "storageUri",
];

/// Checks a case-insensitive enum parameter.
pub(crate) fn enum_param(params: &Value, name: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if allowed.iter().any(|a| a.eq_ignore_ascii_case(s)) => Ok(()),
        Some(other) => Err(ApiError::field(
            &format!("parameters.{name}"),
            format!(
                "Invalid value for parameters.{name}: {other}. Allowed values: {}.",
                allowed.join(", ")
            ),
        )),
    }
}

fn int_param(params: &Value, name: &str) -> Result<Option<i64>, ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    &format!("parameters.{name}"),
                    format!("parameters.{name} must be an integer, got {v}."),
                )
            }),
    }
}

fn bool_param(params: &Value, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::field(
            &format!("parameters.{name}"),
            format!("parameters.{name} must be a boolean, got {v}."),
        )),
    }
}

/// Checks the parameters every operation shares.
pub(crate) fn common_params(ctx: &CallCtx, params: &Value) -> Result<Common, ApiError> {
    if ctx.surface == Surface::Developer {
        developer_refusals(params)?;
    }
    enum_param(params, "safetySetting", SAFETY)?;
    enum_param(params, "personGeneration", PERSON)?;
    enum_param(params, "language", IMAGEN_LANGUAGES)?;
    let samples = sample_count(ctx, params)?;
    let seed = seed(ctx, params)?;
    let storage_uri = params
        .get("storageUri")
        .and_then(Value::as_str)
        .map(str::to_string);
    if storage_uri
        .as_deref()
        .is_some_and(|u| !u.starts_with("gs://"))
    {
        return Err(ApiError::field(
            "parameters.storageUri",
            "storageUri must be a Cloud Storage URI starting with gs://.",
        ));
    }
    Ok(Common {
        samples,
        seed,
        encoding: output_options(params)?,
        storage_uri,
        include_rai: bool_param(params, "includeRaiReason")?.unwrap_or(false),
        include_safety: bool_param(params, "includeSafetyAttributes")?.unwrap_or(false),
        enhance_prompt: bool_param(params, "enhancePrompt")?.unwrap_or(false),
        aspect_ratio: params
            .get("aspectRatio")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The Developer API refused these Imagen parameters (SDK 2.19 refused them client-side).
fn developer_refusals(params: &Value) -> Result<(), ApiError> {
    match DEV_REFUSED
        .iter()
        .find(|n| params.get(**n).is_some_and(|v| !v.is_null()))
    {
        Some(name) => Err(ApiError::field(
            &format!("parameters.{name}"),
            format!("{name} parameter is not supported in Gemini API."),
        )),
        None => Ok(()),
    }
}

fn sample_count(ctx: &CallCtx, params: &Value) -> Result<u32, ApiError> {
    let max = ctx.info.max_outputs as i64;
    let default = if ctx.info.family == Family::ImagenGenerate {
        4.min(max)
    } else {
        1
    };
    let samples = int_param(params, "sampleCount")?.unwrap_or(default);
    if !(1..=max).contains(&samples) && ctx.info.family != Family::Segmentation {
        return Err(ApiError::field(
            "parameters.sampleCount",
            format!(
                "sampleCount must be between 1 and {max} for {}, got {samples}.",
                ctx.model
            ),
        ));
    }
    Ok(samples.max(1) as u32)
}

/// `seed` is a uint32 and, like on Vertex, cannot be combined with watermarking
/// (`addWatermark` defaults to true on the generate models).
fn seed(ctx: &CallCtx, params: &Value) -> Result<i64, ApiError> {
    let seed = int_param(params, "seed")?;
    if seed.is_some_and(|s| !(0..=u32::MAX as i64).contains(&s)) {
        return Err(ApiError::field(
            "parameters.seed",
            "seed must be between 0 and 4294967295.",
        ));
    }
    let watermark = bool_param(params, "addWatermark")?;
    let watermark_on = watermark.unwrap_or(ctx.info.family == Family::ImagenGenerate);
    let upscale = matches!(params.get("mode").and_then(Value::as_str), Some("upscale"));
    if seed.is_some() && watermark_on && !upscale {
        return Err(ApiError::field(
            "parameters.seed",
            "Seed is not supported when addWatermark is true. Set addWatermark to false to use a seed.",
        ));
    }
    Ok(seed.unwrap_or(0))
}

fn output_options(params: &Value) -> Result<Encoding, ApiError> {
    requested_encoding(
        params.get("outputOptions"),
        "parameters.outputOptions.compressionQuality",
        "parameters.outputOptions.mimeType",
    )
}
