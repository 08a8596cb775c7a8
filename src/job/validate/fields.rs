//! Which optional fields apply to which model family, operation and backend.
//!
//! A field that would be silently dropped, or that Google would refuse, is an error that
//! says where it does apply: users learn the model's surface from these messages.

use crate::catalog::{Backend, Family, ModelInfo};
use crate::job::spec::{JobSpec, Operation};

use super::{Report, ValidationContext};

/// Where a field may appear.
#[derive(Clone, Copy)]
enum Scope {
    /// Gemini image models, any backend.
    Gemini,
    /// Gemini image models on Vertex only.
    GeminiVertex,
    /// Imagen families (listed) on any backend.
    Imagen(&'static [Family]),
    /// Imagen families (listed) on Vertex only.
    ImagenVertex(&'static [Family]),
    /// Gemini (any backend) or the listed Imagen families.
    Both(&'static [Family]),
    /// Gemini on Vertex, or the listed Imagen families on Vertex.
    BothVertex(&'static [Family]),
}

const GEN: &[Family] = &[Family::ImagenGenerate];
const GEN_EDIT: &[Family] = &[Family::ImagenGenerate, Family::ImagenCapability];
const GEN_RECONTEXT: &[Family] = &[
    Family::ImagenGenerate,
    Family::ProductRecontext,
    Family::VirtualTryOn,
];
const IMAGE_OUT: &[Family] = &[
    Family::ImagenGenerate,
    Family::ImagenCapability,
    Family::ImagenUpscale,
    Family::ProductRecontext,
    Family::VirtualTryOn,
];
const SEED: &[Family] = &[
    Family::ImagenGenerate,
    Family::ImagenCapability,
    Family::ProductRecontext,
    Family::VirtualTryOn,
];
const EDIT: &[Family] = &[Family::ImagenCapability];
const STEPS: &[Family] = &[
    Family::ImagenCapability,
    Family::ProductRecontext,
    Family::VirtualTryOn,
];
const UPSCALE: &[Family] = &[Family::ImagenGenerate, Family::ImagenUpscale];
const SEGMENT: &[Family] = &[Family::Segmentation, Family::GeminiText];
const SEGMENT_IMAGEN: &[Family] = &[Family::Segmentation];
/// A story's planner.
const TEXT: &[Family] = &[Family::GeminiText];

impl Scope {
    fn allows(self, family: Family, backend: Backend) -> bool {
        let vertex = backend == Backend::Vertex;
        match self {
            Scope::Gemini => family.is_gemini(),
            Scope::GeminiVertex => family.is_gemini() && vertex,
            Scope::Imagen(fs) => fs.contains(&family),
            Scope::ImagenVertex(fs) => vertex && fs.contains(&family),
            Scope::Both(fs) => family.is_gemini() || fs.contains(&family),
            Scope::BothVertex(fs) => vertex && (family.is_gemini() || fs.contains(&family)),
        }
    }

    fn describe(self) -> String {
        let names = |fs: &[Family]| {
            fs.iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        match self {
            Scope::Gemini => "Gemini image models".into(),
            Scope::GeminiVertex => "Gemini image models on Vertex AI".into(),
            Scope::Imagen(fs) => format!("{} models", names(fs)),
            Scope::ImagenVertex(fs) => format!("{} models on Vertex AI", names(fs)),
            Scope::Both(fs) => format!("Gemini image models and {} models", names(fs)),
            Scope::BothVertex(fs) => {
                format!("Vertex AI (Gemini image models and {} models)", names(fs))
            }
        }
    }
}

/// `(field, is set, scope, operations it applies to — empty: all)`.
fn table(s: &JobSpec) -> Vec<(&'static str, bool, Scope, &'static [Operation])> {
    use Operation::*;
    vec![
        ("history", !s.history.is_empty(), Scope::Gemini, &[Chat]),
        (
            "description",
            s.description.is_some(),
            Scope::Both(TEXT),
            &[Story, Plan],
        ),
        (
            "frames",
            s.frames.is_some(),
            Scope::Both(TEXT),
            &[Story, Plan],
        ),
        (
            "content_type",
            s.content_type.is_some(),
            Scope::Both(TEXT),
            &[Story, Plan],
        ),
        (
            "style",
            s.style.is_some(),
            Scope::Both(TEXT),
            &[Story, Plan],
        ),
        ("chain", s.chain.is_some(), Scope::Gemini, &[Story]),
        (
            "planner_model",
            s.planner_model.is_some(),
            Scope::Gemini,
            &[Story],
        ),
        (
            "frame_prompts",
            !s.frame_prompts.is_empty(),
            Scope::Gemini,
            &[Story],
        ),
        (
            "reference_images",
            !s.reference_images.is_empty(),
            Scope::Both(EDIT),
            &[Edit],
        ),
        (
            "product_images",
            !s.product_images.is_empty(),
            Scope::Both(STEPS),
            &[Recontext],
        ),
        (
            "person_image",
            s.person_image.is_some(),
            Scope::Both(&[Family::VirtualTryOn]),
            &[Recontext],
        ),
        (
            "scribble_image",
            s.scribble_image.is_some(),
            Scope::Imagen(SEGMENT),
            &[Segment],
        ),
        (
            "number_of_images",
            s.number_of_images.is_some(),
            Scope::Both(IMAGE_OUT),
            &[],
        ),
        (
            "aspect_ratio",
            s.aspect_ratio.is_some(),
            Scope::Both(GEN_EDIT),
            &[],
        ),
        ("image_size", s.image_size.is_some(), Scope::Both(GEN), &[]),
        (
            "output_mime_type",
            s.output_mime_type.is_some(),
            Scope::BothVertex(IMAGE_OUT),
            &[],
        ),
        (
            "output_compression_quality",
            s.output_compression_quality.is_some(),
            Scope::BothVertex(IMAGE_OUT),
            &[],
        ),
        (
            "output_gcs_uri",
            s.output_gcs_uri.is_some(),
            Scope::BothVertex(IMAGE_OUT),
            &[],
        ),
        ("seed", s.seed.is_some(), Scope::Both(SEED), &[]),
        (
            "negative_prompt",
            s.negative_prompt.is_some(),
            Scope::ImagenVertex(GEN_EDIT),
            &[],
        ),
        (
            "add_watermark",
            s.add_watermark.is_some(),
            Scope::ImagenVertex(IMAGE_OUT),
            &[],
        ),
        (
            "enhance_prompt",
            s.enhance_prompt.is_some(),
            Scope::ImagenVertex(GEN_RECONTEXT),
            &[Generate, Recontext],
        ),
        (
            "guidance_scale",
            s.guidance_scale.is_some(),
            Scope::Imagen(GEN_EDIT),
            &[],
        ),
        (
            "safety_filter_level",
            s.safety_filter_level.is_some(),
            Scope::Imagen(IMAGE_OUT),
            &[],
        ),
        (
            "person_generation",
            s.person_generation.is_some(),
            Scope::BothVertex(IMAGE_OUT),
            &[],
        ),
        (
            "include_rai_reason",
            s.include_rai_reason.is_some(),
            Scope::Imagen(IMAGE_OUT),
            &[],
        ),
        (
            "include_safety_attributes",
            s.include_safety_attributes.is_some(),
            Scope::Imagen(GEN_EDIT),
            &[],
        ),
        (
            "language",
            s.language.is_some(),
            Scope::Imagen(GEN_EDIT),
            &[],
        ),
        (
            "edit_mode",
            s.edit_mode.is_some(),
            Scope::Imagen(EDIT),
            &[Edit],
        ),
        (
            "base_steps",
            s.base_steps.is_some(),
            Scope::Imagen(STEPS),
            &[Edit, Recontext],
        ),
        (
            "upscale_factor",
            s.upscale_factor.is_some(),
            Scope::Imagen(UPSCALE),
            &[Upscale],
        ),
        (
            "enhance_input_image",
            s.enhance_input_image.is_some(),
            Scope::Imagen(UPSCALE),
            &[Upscale],
        ),
        (
            "image_preservation_factor",
            s.image_preservation_factor.is_some(),
            Scope::Imagen(UPSCALE),
            &[Upscale],
        ),
        (
            "segment_mode",
            s.segment_mode.is_some(),
            Scope::Imagen(SEGMENT),
            &[Segment],
        ),
        (
            "max_predictions",
            s.max_predictions.is_some(),
            Scope::Imagen(SEGMENT),
            &[Segment],
        ),
        (
            "confidence_threshold",
            s.confidence_threshold.is_some(),
            Scope::Imagen(SEGMENT_IMAGEN),
            &[Segment],
        ),
        (
            "mask_dilation",
            s.mask_dilation.is_some(),
            Scope::Imagen(SEGMENT_IMAGEN),
            &[Segment],
        ),
        (
            "binary_color_threshold",
            s.binary_color_threshold.is_some(),
            Scope::Imagen(SEGMENT),
            &[Segment],
        ),
        (
            "response_modalities",
            s.response_modalities.is_some(),
            Scope::Gemini,
            &[],
        ),
        ("temperature", s.temperature.is_some(), Scope::Gemini, &[]),
        ("top_p", s.top_p.is_some(), Scope::Gemini, &[]),
        ("top_k", s.top_k.is_some(), Scope::Gemini, &[]),
        (
            "thinking_level",
            s.thinking_level.is_some(),
            Scope::Gemini,
            &[],
        ),
        (
            "include_thoughts",
            s.include_thoughts.is_some(),
            Scope::Gemini,
            &[],
        ),
        (
            "safety_settings",
            !s.safety_settings.is_empty(),
            Scope::Gemini,
            &[],
        ),
        (
            "system_instruction",
            s.system_instruction.is_some(),
            Scope::Gemini,
            &[],
        ),
        (
            "prominent_people",
            s.prominent_people.is_some(),
            Scope::GeminiVertex,
            &[],
        ),
        (
            "labels",
            !s.labels.is_empty(),
            Scope::BothVertex(&[
                Family::ImagenGenerate,
                Family::ImagenCapability,
                Family::ImagenUpscale,
                Family::ProductRecontext,
                Family::VirtualTryOn,
                Family::Segmentation,
            ]),
            &[],
        ),
        (
            "images",
            !s.images.is_empty(),
            Scope::Both(&[
                Family::ImagenGenerate,
                Family::ImagenUpscale,
                Family::Segmentation,
                Family::GeminiText,
            ]),
            &[Edit, Upscale, Segment, Compose, Chat, Recontext],
        ),
    ]
}

/// Reports every set field that the model, operation or backend does not take.
pub(super) fn check_applicable(
    spec: &JobSpec,
    model: &ModelInfo,
    ctx: &ValidationContext,
    r: &mut Report,
) {
    for (field, set, scope, ops) in table(spec) {
        if !set {
            continue;
        }
        if !scope.allows(model.family, ctx.backend) {
            r.err(
                field,
                format!(
                    "not accepted by `{}` on the {} backend; it applies to {}",
                    spec.model,
                    ctx.backend.as_str(),
                    scope.describe()
                ),
            );
        } else if !ops.is_empty() && !ops.contains(&spec.op) {
            let names: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
            r.err(
                field,
                format!(
                    "does not apply to op `{}` (only to {})",
                    spec.op,
                    names.join(", ")
                ),
            );
        }
    }
}
