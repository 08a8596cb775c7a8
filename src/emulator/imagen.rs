//! `:predict` request validation for the Imagen family (spec §5): the envelope, the
//! parameters every operation shares (sampleCount, enums compared case-insensitively,
//! output options, seed vs watermark, Developer-API restrictions) and the generate and
//! upscale operations. Edit, recontext, try-on and segment inputs are in `imagen_inputs`.
//!
//! Produces an `ImagenPlan`; `imagen_response` turns it into predictions.

use serde_json::{Map, Value};

use crate::catalog::{self, Family};

use super::call::CallCtx;
use super::envelope::ApiError;
use super::imagen_inputs::{self, image_field};
use super::proto::Surface;
use super::synth::Encoding;

/// Which `:predict` operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Text to image.
    Generate,
    /// Edit / customization with reference images.
    Edit,
    /// Upscale an image.
    Upscale,
    /// Product recontext.
    Recontext,
    /// Virtual try-on.
    TryOn,
    /// Segmentation masks.
    Segment,
}

/// What a valid predict request asks for.
#[derive(Debug, Clone)]
pub struct ImagenPlan {
    /// Operation.
    pub op: Op,
    /// Prompt text ("" when the operation has none).
    pub prompt: String,
    /// `parameters.seed` (0 when absent).
    pub seed: i64,
    /// Number of samples (or masks for segmentation).
    pub samples: u32,
    /// Output dimensions.
    pub dims: (u32, u32),
    /// Output encoding.
    pub encoding: Encoding,
    /// `parameters.storageUri`: answer `gcsUri` instead of bytes.
    pub storage_uri: Option<String>,
    /// `parameters.includeRaiReason`.
    pub include_rai: bool,
    /// `parameters.includeSafetyAttributes`.
    pub include_safety: bool,
    /// `parameters.enhancePrompt`.
    pub enhance_prompt: bool,
    /// Segmentation mask labels, one per mask.
    pub mask_labels: Vec<String>,
}

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
const LANGUAGES: &[&str] = &[
    "auto", "en", "ja", "ko", "hi", "zh", "zh-tw", "pt", "es", "de", "fr", "it",
];
const DEV_REFUSED: &[&str] = &[
    "seed",
    "negativePrompt",
    "addWatermark",
    "enhancePrompt",
    "storageUri",
];

/// Validates a predict body and plans the answer.
pub fn plan(ctx: &CallCtx, body: &Value) -> Result<ImagenPlan, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid_json(
            None,
            format!(
                "Invalid JSON payload received. Expected an object, got {}.",
                kind_of(body)
            ),
        ));
    };
    if ctx.surface == Surface::Developer && obj.contains_key("labels") {
        return Err(ApiError::field(
            "labels",
            "labels parameter is not supported in Gemini API.",
        ));
    }
    let instances = obj.get("instances").and_then(Value::as_array);
    let Some(instances) = instances.filter(|i| !i.is_empty()) else {
        return Err(ApiError::field(
            "instances",
            "instances must contain exactly one instance; got none.",
        ));
    };
    if instances.len() > 1 {
        return Err(ApiError::field(
            "instances",
            format!(
                "instances must contain exactly one instance; got {}.",
                instances.len()
            ),
        ));
    }
    let instance = camelize(&instances[0]);
    let params = camelize(obj.get("parameters").unwrap_or(&Value::Null));
    if !instance.is_object() {
        return Err(ApiError::field(
            "instances[0]",
            "instance must be an object.",
        ));
    }
    if !(params.is_object() || params.is_null()) {
        return Err(ApiError::field(
            "parameters",
            "parameters must be an object.",
        ));
    }
    let common = common_params(ctx, &params)?;
    let upscale_mode = params
        .get("mode")
        .and_then(Value::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case("upscale"));
    match ctx.info.family {
        Family::ImagenUpscale => upscale(ctx, &instance, &params, common),
        Family::ImagenGenerate if upscale_mode => upscale(ctx, &instance, &params, common),
        Family::ImagenGenerate => generate(ctx, &instance, &params, common),
        Family::ImagenCapability => imagen_inputs::edit(ctx, &instance, &params, common),
        Family::ProductRecontext => imagen_inputs::recontext(ctx, &instance, common),
        Family::VirtualTryOn => imagen_inputs::try_on(ctx, &instance, common),
        Family::Segmentation => imagen_inputs::segment(ctx, &instance, &params),
        Family::GeminiImage => Err(ApiError::failed_precondition(
            "Gemini cannot be accessed through Vertex Predict/RawPredict API. Please follow https://cloud.google.com/vertex-ai/docs/generative-ai/start/quickstarts/quickstart-multimodal for Gemini usage.",
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "a list",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Object(_) => "an object",
    }
}

/// Rewrites snake_case keys to camelCase (the SDK leaks `style_description`,
/// `subject_type`, …; `instances`/`parameters` are free-form `Value`s).
pub fn camelize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let key = if k.contains('_') {
                    snake_to_camel(k)
                } else {
                    k.clone()
                };
                out.insert(key, camelize(val));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(camelize).collect()),
        other => other.clone(),
    }
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

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

fn common_params(ctx: &CallCtx, params: &Value) -> Result<Common, ApiError> {
    if ctx.surface == Surface::Developer
        && let Some(name) = DEV_REFUSED
            .iter()
            .find(|n| params.get(**n).is_some_and(|v| !v.is_null()))
    {
        return Err(ApiError::field(
            &format!("parameters.{name}"),
            format!("{name} parameter is not supported in Gemini API."),
        ));
    }
    enum_param(params, "safetySetting", SAFETY)?;
    enum_param(params, "personGeneration", PERSON)?;
    enum_param(params, "language", LANGUAGES)?;
    let max = ctx.info.max_outputs as i64;
    let samples =
        int_param(params, "sampleCount")?.unwrap_or(if ctx.info.family == Family::ImagenGenerate {
            4.min(max)
        } else {
            1
        });
    if !(1..=max).contains(&samples) && ctx.info.family != Family::Segmentation {
        return Err(ApiError::field(
            "parameters.sampleCount",
            format!(
                "sampleCount must be between 1 and {max} for {}, got {samples}.",
                ctx.model
            ),
        ));
    }
    let seed = int_param(params, "seed")?;
    if seed.is_some_and(|s| !(0..=u32::MAX as i64).contains(&s)) {
        return Err(ApiError::field(
            "parameters.seed",
            "seed must be between 0 and 4294967295.",
        ));
    }
    let watermark = bool_param(params, "addWatermark")?;
    let watermark_on = watermark.unwrap_or(ctx.info.family == Family::ImagenGenerate);
    if seed.is_some()
        && watermark_on
        && !matches!(params.get("mode").and_then(Value::as_str), Some("upscale"))
    {
        return Err(ApiError::field(
            "parameters.seed",
            "Seed is not supported when addWatermark is true. Set addWatermark to false to use a seed.",
        ));
    }
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
        samples: samples as u32,
        seed: seed.unwrap_or(0),
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

fn output_options(params: &Value) -> Result<Encoding, ApiError> {
    let Some(opts) = params.get("outputOptions").filter(|v| !v.is_null()) else {
        return Ok(Encoding::Png);
    };
    let quality = int_param(opts, "compressionQuality")
        .map_err(|_| {
            ApiError::field(
                "parameters.outputOptions.compressionQuality",
                "compressionQuality must be an integer.",
            )
        })?
        .unwrap_or(75);
    if !(0..=100).contains(&quality) {
        return Err(ApiError::field(
            "parameters.outputOptions.compressionQuality",
            format!("compressionQuality must be between 0 and 100, got {quality}."),
        ));
    }
    match opts
        .get("mimeType")
        .and_then(Value::as_str)
        .unwrap_or("image/png")
    {
        "image/png" => Ok(Encoding::Png),
        "image/jpeg" => Ok(Encoding::Jpeg(quality.max(1) as u8)),
        other => Err(ApiError::field(
            "parameters.outputOptions.mimeType",
            format!("Unsupported mimeType {other}; use image/png or image/jpeg."),
        )),
    }
}

/// Dimensions from `aspectRatio` (and size) per the catalog; 1:1 1K by default.
pub(crate) fn ratio_dims(
    ctx: &CallCtx,
    ratio: Option<&str>,
    size: Option<&str>,
) -> Result<(u32, u32), ApiError> {
    catalog::dimensions(ctx.info, ratio, size).ok_or_else(|| {
        if size.is_some()
            && ctx
                .info
                .image_sizes
                .iter()
                .all(|s| !size.is_some_and(|z| s.eq_ignore_ascii_case(z)))
        {
            ApiError::field(
                "parameters.sampleImageSize",
                format!(
                    "Unsupported sampleImageSize \"{}\" for {}.",
                    size.unwrap_or(""),
                    ctx.model
                ),
            )
        } else {
            ApiError::field(
                "parameters.aspectRatio",
                format!(
                    "Unsupported aspectRatio \"{}\" for {}. Supported: 1:1, 3:4, 4:3, 9:16, 16:9.",
                    ratio.unwrap_or(""),
                    ctx.model
                ),
            )
        }
    })
}

/// A plan with the common parameters filled in.
pub(crate) fn base_plan(op: Op, prompt: String, dims: (u32, u32), c: Common) -> ImagenPlan {
    ImagenPlan {
        op,
        prompt,
        seed: c.seed,
        samples: c.samples,
        dims,
        encoding: c.encoding,
        storage_uri: c.storage_uri,
        include_rai: c.include_rai,
        include_safety: c.include_safety,
        enhance_prompt: c.enhance_prompt,
        mask_labels: Vec::new(),
    }
}

fn generate(
    ctx: &CallCtx,
    instance: &Value,
    params: &Value,
    c: Common,
) -> Result<ImagenPlan, ApiError> {
    let prompt = instance.get("prompt").and_then(Value::as_str).unwrap_or("");
    if prompt.trim().is_empty() {
        return Err(ApiError::field(
            "instances[0].prompt",
            "instances[0].prompt is required for image generation.",
        ));
    }
    let size = params.get("sampleImageSize").and_then(Value::as_str);
    let dims = ratio_dims(ctx, c.aspect_ratio.as_deref(), size)?;
    Ok(base_plan(Op::Generate, prompt.to_string(), dims, c))
}

fn upscale(
    ctx: &CallCtx,
    instance: &Value,
    params: &Value,
    c: Common,
) -> Result<ImagenPlan, ApiError> {
    let image = instance.get("image").ok_or_else(|| {
        ApiError::field(
            "instances[0].image",
            "instances[0].image is required for upscaling.",
        )
    })?;
    let dims = image_field(ctx, image, "instances[0].image")?;
    let factor = params
        .pointer("/upscaleConfig/upscaleFactor")
        .and_then(Value::as_str);
    let n = match factor {
        Some("x2") => 2,
        Some("x3") => 3,
        Some("x4") => 4,
        other => {
            return Err(ApiError::field(
                "parameters.upscaleConfig.upscaleFactor",
                format!(
                    "upscaleFactor must be one of x2, x3, x4; got {}.",
                    other.unwrap_or("nothing")
                ),
            ));
        }
    };
    let (w, h) = dims.unwrap_or((1024, 1024));
    let out = (w * n, h * n);
    if u64::from(out.0) * u64::from(out.1) > 17_000_000 {
        return Err(ApiError::field(
            "parameters.upscaleConfig.upscaleFactor",
            format!(
                "Upscaling {w}x{h} by {} gives {}x{}, above the 17 megapixel limit.",
                factor.unwrap_or(""),
                out.0,
                out.1
            ),
        ));
    }
    let mut plan = base_plan(Op::Upscale, String::new(), out, c);
    plan.samples = 1;
    Ok(plan)
}
