//! `:predict` request validation for the Imagen family (spec §5): the envelope
//! (`instances`/`parameters`, snake_case keys camelised), dispatch by model family, and
//! the generate and upscale operations. Shared parameters are in `params`; edit,
//! recontext and try-on inputs in `inputs`; segmentation in `segment`.
//!
//! Produces an `ImagenPlan`; `response` turns it into predictions.

mod inputs;
mod params;
pub(super) mod response;
mod segment;

use serde_json::{Map, Value};

use crate::catalog::{self, Family};

use crate::emulator::call::CallCtx;
use crate::emulator::call::Surface;
use crate::emulator::envelope::ApiError;
use crate::emulator::imagen::inputs::image_field;
use crate::emulator::imagen::params::{Common, common_params};
use crate::emulator::media::synth::Encoding;

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
    /// The input image the answer derives from (an edit's raw reference, the image to
    /// upscale or segment, a product), and how.
    pub base: Option<(
        std::sync::Arc<Vec<u8>>,
        crate::emulator::media::synth::Derive,
    )>,
}

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
    let mut plan = match ctx.info.family {
        Family::ImagenUpscale => upscale(ctx, &instance, &params, common),
        Family::ImagenGenerate if upscale_mode => upscale(ctx, &instance, &params, common),
        Family::ImagenGenerate => generate(ctx, &instance, &params, common),
        Family::ImagenCapability => inputs::edit(ctx, &instance, &params, common),
        Family::ProductRecontext => inputs::recontext(ctx, &instance, common),
        Family::VirtualTryOn => inputs::try_on(ctx, &instance, common),
        Family::Segmentation => crate::emulator::imagen::segment::segment(ctx, &instance, &params),
        Family::GeminiImage | Family::GeminiText => Err(ApiError::failed_precondition(
            "Gemini cannot be accessed through Vertex Predict/RawPredict API. Please follow https://cloud.google.com/vertex-ai/docs/generative-ai/start/quickstarts/quickstart-multimodal for Gemini usage.",
        )),
    }?;
    plan.base = base_image(&instance, &params, plan.op);
    Ok(plan)
}

/// The input image an answer derives from, and how (inline bytes only: a `gcsUri` is
/// not read).
fn base_image(
    instance: &Value,
    params: &Value,
    op: Op,
) -> Option<(
    std::sync::Arc<Vec<u8>>,
    crate::emulator::media::synth::Derive,
)> {
    use crate::emulator::media::synth::Derive;
    let bytes_at = |v: Option<&Value>| {
        v.and_then(|i| i.get("bytesBase64Encoded"))
            .and_then(Value::as_str)
            .and_then(crate::emulator::media::decode_b64)
    };
    let (bytes, how) = match op {
        Op::Generate => return None,
        Op::Upscale => (bytes_at(instance.get("image")), Derive::Resample),
        Op::Segment => (bytes_at(instance.get("image")), Derive::Mask),
        Op::Edit => {
            let raw = instance
                .get("referenceImages")
                .and_then(Value::as_array)?
                .iter()
                .find(|r| {
                    r.get("referenceType").and_then(Value::as_str) == Some("REFERENCE_TYPE_RAW")
                })?;
            let outpaint =
                params.get("editMode").and_then(Value::as_str) == Some("EDIT_MODE_OUTPAINT");
            let how = if outpaint {
                Derive::Extend
            } else {
                Derive::Inset
            };
            (bytes_at(raw.get("referenceImage")), how)
        }
        Op::Recontext | Op::TryOn => {
            let product = instance
                .get("productImages")
                .and_then(Value::as_array)
                .and_then(|p| p.first())
                .and_then(|p| p.get("image"));
            let person = instance.get("personImage").and_then(|p| p.get("image"));
            (bytes_at(person.or(product)), Derive::Inset)
        }
    };
    Some((std::sync::Arc::new(bytes?), how))
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
        base: None,
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
