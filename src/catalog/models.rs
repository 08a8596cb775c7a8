//! The table of documented models (spec §0, §5, §7, §11) and the constructors it uses.

use super::{Family, ModelInfo};

const MB: u64 = 1_000_000;
const GEMINI_RATIOS: &[&str] = &[
    "1:1", "3:2", "2:3", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];
pub(super) const GEMINI31_RATIOS: &[&str] = &[
    "1:1", "3:2", "2:3", "3:4", "1:4", "4:1", "4:3", "4:5", "5:4", "1:8", "8:1", "9:16", "16:9",
    "21:9", "9:21",
];
/// 3.1 Flash-Lite Image: "14 aspect ratios" (ai.google.dev models page); the page's
/// list is garbled, so these are 3.1 Flash's without 9:21 [INF].
const LITE_RATIOS: &[&str] = &[
    "1:1", "3:2", "2:3", "3:4", "1:4", "4:1", "4:3", "4:5", "5:4", "1:8", "8:1", "9:16", "16:9",
    "21:9",
];
pub(super) const IMAGEN_RATIOS: &[&str] = &["1:1", "3:4", "4:3", "9:16", "16:9"];

pub(super) const fn gemini(
    id: &'static str,
    ratios: &'static [&'static str],
    sizes: &'static [&'static str],
    max_in: u32,
    max_out: u32,
    tokens: u32,
) -> ModelInfo {
    ModelInfo {
        id,
        family: Family::GeminiImage,
        aspect_ratios: ratios,
        image_sizes: sizes,
        max_input_images: max_in,
        max_inline_bytes: 7 * MB,
        max_outputs: max_out,
        tokens_per_image: tokens,
        thinking_levels: &[],
        inferred: false,
    }
}

pub(super) const fn imagen(
    id: &'static str,
    family: Family,
    ratios: &'static [&'static str],
    sizes: &'static [&'static str],
    max_in: u32,
    max_out: u32,
) -> ModelInfo {
    ModelInfo {
        id,
        family,
        aspect_ratios: ratios,
        image_sizes: sizes,
        max_input_images: max_in,
        max_inline_bytes: 10 * MB,
        max_outputs: max_out,
        tokens_per_image: 0,
        thinking_levels: &[],
        inferred: false,
    }
}

/// Every model the worker and the emulator know.
pub const MODELS: &[ModelInfo] = &[
    gemini("gemini-2.5-flash-image", GEMINI_RATIOS, &[], 3, 8, 1290),
    gemini(
        "gemini-3-pro-image",
        GEMINI_RATIOS,
        &["1K", "2K", "4K"],
        14,
        1,
        1120,
    ),
    gemini(
        "gemini-3.1-flash-image",
        GEMINI31_RATIOS,
        &["512", "1K", "2K", "4K"],
        14,
        1,
        1120,
    ),
    // "Nano Banana 2 Lite": 1K only, thinking minimal or high, 65,536 input / 4,096
    // output tokens (ai.google.dev/gemini-api/docs/models/gemini-3.1-flash-lite-image).
    ModelInfo {
        thinking_levels: &["MINIMAL", "HIGH"],
        ..gemini(
            "gemini-3.1-flash-lite-image",
            LITE_RATIOS,
            &["1K"],
            14,
            1,
            1120,
        )
    },
    imagen(
        "imagen-3.0-generate-001",
        Family::ImagenGenerate,
        IMAGEN_RATIOS,
        &[],
        1,
        4,
    ),
    imagen(
        "imagen-3.0-generate-002",
        Family::ImagenGenerate,
        IMAGEN_RATIOS,
        &[],
        1,
        4,
    ),
    imagen(
        "imagen-3.0-fast-generate-001",
        Family::ImagenGenerate,
        IMAGEN_RATIOS,
        &[],
        1,
        4,
    ),
    imagen(
        "imagen-4.0-generate-001",
        Family::ImagenGenerate,
        IMAGEN_RATIOS,
        &["1K", "2K"],
        1,
        4,
    ),
    imagen(
        "imagen-4.0-fast-generate-001",
        Family::ImagenGenerate,
        IMAGEN_RATIOS,
        &["1K", "2K"],
        1,
        4,
    ),
    imagen(
        "imagen-4.0-ultra-generate-001",
        Family::ImagenGenerate,
        IMAGEN_RATIOS,
        &["1K", "2K"],
        1,
        4,
    ),
    imagen(
        "imagen-3.0-capability-001",
        Family::ImagenCapability,
        IMAGEN_RATIOS,
        &[],
        4,
        4,
    ),
    imagen(
        "imagen-4.0-ingredients",
        Family::ImagenCapability,
        IMAGEN_RATIOS,
        &[],
        4,
        4,
    ),
    imagen("imagen-4.0-upscale", Family::ImagenUpscale, &[], &[], 1, 1),
    imagen("imagegeneration@002", Family::ImagenUpscale, &[], &[], 1, 1),
    imagen(
        "imagen-product-recontext",
        Family::ProductRecontext,
        &[],
        &[],
        3,
        4,
    ),
    imagen("virtual-try-on", Family::VirtualTryOn, &[], &[], 2, 4),
    // Text models segment (spec §11: "gemini-3.5-flash and newer Flash models"): one
    // image per segment job (validation), up to 100 masks out; as text models they take
    // up to 3,600 images and inline data up to the request's 20 MB.
    text("gemini-3.5-flash"),
    text("gemini-3.1-flash-lite"),
    imagen(
        "image-segmentation-001",
        Family::Segmentation,
        &[],
        &[],
        2,
        100,
    ),
];

/// A Gemini text model, as far as this product uses one (segmentation).
pub(super) const fn text(id: &'static str) -> ModelInfo {
    ModelInfo {
        id,
        family: Family::GeminiText,
        aspect_ratios: &[],
        image_sizes: &[],
        max_input_images: 3600,
        max_inline_bytes: 20 * MB,
        max_outputs: 100,
        tokens_per_image: 0,
        thinking_levels: &[],
        inferred: false,
    }
}
