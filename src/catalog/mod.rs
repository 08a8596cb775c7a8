//! The model catalog: which Google image models exist, which wire path and family each
//! belongs to, and the documented limits (aspect ratios, sizes, input counts, byte limits,
//! output dimensions) from spec §0 and §5/§7.
//!
//! Shared by job validation (what a client may ask for) and the emulator (what the
//! service answers). It must not know about HTTP, jobs or queues. Where each model is
//! in its lifecycle (stage, shutdown dates, replacement) is [`lifecycle`].

pub mod lifecycle;
mod models;

pub use lifecycle::{Decision, Lifecycle, Stage};

/// The model used when neither the line, `--model` nor the project names one.
pub const DEFAULT_MODEL: &str = "gemini-3.1-flash-image";
pub use models::MODELS;
use models::{GEMINI31_RATIOS, IMAGEN_RATIOS, gemini, imagen};

/// Which Google API a project talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Vertex AI (OAuth2 bearer tokens, or an API key in express mode).
    Vertex,
    /// The Gemini Developer API (`x-goog-api-key`).
    GeminiApi,
}

impl Backend {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vertex => "vertex",
            Backend::GeminiApi => "gemini-api",
        }
    }
}

/// How a model is called and what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Gemini image models over `:generateContent`.
    GeminiImage,
    /// Imagen text-to-image over `:predict` (also upscales with `mode: "upscale"`).
    ImagenGenerate,
    /// Imagen capability models over `:predict` (edit / customization).
    ImagenCapability,
    /// Dedicated Imagen upscale models over `:predict`.
    ImagenUpscale,
    /// Product recontext over `:predict`.
    ProductRecontext,
    /// Virtual try-on over `:predict`.
    VirtualTryOn,
    /// Image segmentation over `:predict`.
    Segmentation,
    /// Gemini text models over `:generateContent`: segmentation answered as JSON
    /// (`box_2d`, `label`, base64 `mask` per object; spec §11), turned into masks.
    GeminiText,
}

impl Family {
    /// True for Gemini image models (the fields and rules of Gemini image output).
    pub fn is_gemini(self) -> bool {
        matches!(self, Family::GeminiImage)
    }

    /// True for every model called over `:generateContent` (Gemini image and text).
    pub fn is_generate_content(self) -> bool {
        matches!(self, Family::GeminiImage | Family::GeminiText)
    }
}

/// One documented model.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    /// Canonical id (without `-preview` / date suffixes the lookup strips).
    pub id: &'static str,
    /// Wire path and capabilities.
    pub family: Family,
    /// Accepted `aspectRatio` values (empty: the model takes no aspect ratio).
    pub aspect_ratios: &'static [&'static str],
    /// Accepted `imageSize` / `sampleImageSize` values (empty: not configurable).
    pub image_sizes: &'static [&'static str],
    /// Maximum number of input images in one request.
    pub max_input_images: u32,
    /// Maximum bytes of one inline input image (decoded).
    pub max_inline_bytes: u64,
    /// Maximum images per request (`candidateCount` for Gemini, `sampleCount` for Imagen).
    pub max_outputs: u32,
    /// Output tokens charged per generated image at 1K (Gemini), for usage estimates.
    pub tokens_per_image: u32,
    /// Accepted `thinkingLevel` values (empty: any the API knows).
    pub thinking_levels: &'static [&'static str],
    /// True for entries `lookup_or_infer` made up for an unlisted id.
    pub inferred: bool,
}

/// Image MIME types Google accepts as inputs (spec §0).
pub const INPUT_MIME_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/heic",
    "image/heif",
];

/// Gemini `HarmCategory` values.
pub const HARM_CATEGORIES: &[&str] = &[
    "HARM_CATEGORY_UNSPECIFIED",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
    "HARM_CATEGORY_IMAGE_HATE",
    "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
    "HARM_CATEGORY_IMAGE_HARASSMENT",
    "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_JAILBREAK",
];

/// Gemini `SafetySetting.HarmBlockThreshold` values.
pub const HARM_THRESHOLDS: &[&str] = &[
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
];

/// Imagen prompt languages (`parameters.language`).
pub const IMAGEN_LANGUAGES: &[&str] = &[
    "auto", "en", "ja", "ko", "hi", "zh", "zh-tw", "pt", "es", "de", "fr", "it",
];

/// Finds a model by id. Accepts the documented suffixes: `-preview`, `-preview-MM-DD`,
/// `-001`/`-08-04` style versions on families whose ids carry them, and a
/// `publishers/google/models/` or `models/` prefix.
pub fn lookup(model: &str) -> Option<&'static ModelInfo> {
    let id = model
        .strip_prefix("publishers/google/models/")
        .or_else(|| model.strip_prefix("models/"))
        .unwrap_or(model);
    if let Some(m) = MODELS.iter().find(|m| m.id == id) {
        return Some(m);
    }
    let base = strip_preview(id);
    if let Some(m) = MODELS.iter().find(|m| m.id == base) {
        return Some(m);
    }
    // Families whose public ids carry a version or date we do not enumerate.
    MODELS
        .iter()
        .filter(|m| {
            matches!(
                m.family,
                Family::ImagenUpscale | Family::ProductRecontext | Family::VirtualTryOn
            ) || m.id == "imagen-4.0-ingredients"
        })
        .find(|m| base.starts_with(m.id) && base[m.id.len()..].starts_with('-'))
}

/// Like `lookup`, but infers a generic entry for ids the catalog does not list yet
/// (`gemini-*-image*` → Gemini image, `imagen-*-generate-*` → Imagen generate), so a new
/// model works by changing its name only. Limits of inferred models are the loosest
/// documented ones; Google validates the rest.
pub fn lookup_or_infer(model: &str) -> Option<ModelInfo> {
    if let Some(m) = lookup(model) {
        return Some(*m);
    }
    if model.starts_with("gemini-") && model.contains("-image") {
        let mut m = gemini(
            "gemini-image",
            GEMINI31_RATIOS,
            &["512", "1K", "2K", "4K"],
            14,
            8,
            1120,
        );
        m.inferred = true;
        return Some(m);
    }
    if model.starts_with("imagen-") && model.contains("-generate") {
        let mut m = imagen(
            "imagen-generate",
            Family::ImagenGenerate,
            IMAGEN_RATIOS,
            &["1K", "2K"],
            1,
            4,
        );
        m.inferred = true;
        return Some(m);
    }
    None
}

/// `gemini-3-pro-image-preview` → `gemini-3-pro-image`;
/// `imagen-4.0-ultra-generate-preview-06-06` → `imagen-4.0-ultra-generate-001`.
fn strip_preview(id: &str) -> String {
    if let Some(pos) = id.find("-preview") {
        let head = &id[..pos];
        if head.starts_with("imagen-4.0-") && head.ends_with("-generate") {
            return format!("{head}-001");
        }
        return head.to_string();
    }
    id.to_string()
}

/// The allowed aspect ratio closest to `w:h` (used to keep an input's shape).
pub fn nearest_ratio<'a>(w: u32, h: u32, allowed: &[&'a str]) -> Option<&'a str> {
    let target = (w.max(1) as f64 / h.max(1) as f64).ln();
    allowed
        .iter()
        .filter_map(|r| {
            let (a, b) = r.split_once(':')?;
            let v = (a.parse::<f64>().ok()? / b.parse::<f64>().ok()?).ln();
            Some((*r, (v - target).abs()))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
}

/// Output dimensions `(width, height)` for a generated image, per the documented tables.
/// `image_size` is `None` for the model's default (1K). Returns `None` for a ratio or size
/// the model does not accept.
pub fn dimensions(
    model: &ModelInfo,
    aspect_ratio: Option<&str>,
    image_size: Option<&str>,
) -> Option<(u32, u32)> {
    let ratio = aspect_ratio.unwrap_or("1:1");
    if !model.aspect_ratios.is_empty() && !model.aspect_ratios.contains(&ratio) {
        return None;
    }
    let size = image_size.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &size
        && !model.image_sizes.iter().any(|k| k.eq_ignore_ascii_case(s))
    {
        return None;
    }
    let (w, h) = match model.family {
        Family::GeminiImage if model.id == "gemini-2.5-flash-image" => gemini25_1k(ratio)?,
        Family::GeminiImage => gemini3_1k(ratio)?,
        _ => imagen_1k(ratio)?,
    };
    let (num, den) = match size.as_deref() {
        None | Some("1K") => (1, 1),
        Some("512") => (1, 2),
        Some("2K") => (2, 1),
        Some("4K") => (4, 1),
        Some(_) => return None,
    };
    Some((w * num / den, h * num / den))
}

fn gemini25_1k(ratio: &str) -> Option<(u32, u32)> {
    Some(match ratio {
        "1:1" => (1024, 1024),
        "2:3" => (832, 1248),
        "3:2" => (1248, 832),
        "3:4" => (864, 1184),
        "4:3" => (1184, 864),
        "4:5" => (896, 1152),
        "5:4" => (1152, 896),
        "9:16" => (768, 1344),
        "16:9" => (1344, 768),
        "21:9" => (1536, 672),
        _ => return None,
    })
}

fn gemini3_1k(ratio: &str) -> Option<(u32, u32)> {
    Some(match ratio {
        "1:1" => (1024, 1024),
        "2:3" => (848, 1264),
        "3:2" => (1264, 848),
        "3:4" => (896, 1200),
        "4:3" => (1200, 896),
        "4:5" => (928, 1152),
        "5:4" => (1152, 928),
        "9:16" => (768, 1376),
        "16:9" => (1376, 768),
        "21:9" => (1584, 672),
        "9:21" => (672, 1584),
        // The extreme ratios of 3.1 Flash: about one megapixel, multiples of 16.
        "1:4" => (512, 2048),
        "4:1" => (2048, 512),
        "1:8" => (368, 2944),
        "8:1" => (2944, 368),
        _ => return None,
    })
}

fn imagen_1k(ratio: &str) -> Option<(u32, u32)> {
    Some(match ratio {
        "1:1" => (1024, 1024),
        "3:4" => (896, 1280),
        "4:3" => (1280, 896),
        "9:16" => (768, 1408),
        "16:9" => (1408, 768),
        _ => return None,
    })
}

/// Output tokens Google charges per generated image at `size` (spec §0 table; pricing
/// page: 747 / 1,120 / 1,680 / 2,520 for 3.1 Flash at 512 / 1K / 2K / 4K, 2,000 for
/// 3 Pro at 4K).
pub fn output_image_tokens(info: &ModelInfo, size: Option<&str>) -> u32 {
    match (info.id, size) {
        ("gemini-3-pro-image", Some("4K")) => 2000,
        ("gemini-3.1-flash-image", Some("512")) => 747,
        ("gemini-3.1-flash-image", Some("2K")) => 1680,
        ("gemini-3.1-flash-image", Some("4K")) => 2520,
        _ => info.tokens_per_image,
    }
}

/// Input tokens Google counts per input image (spec §0 table).
pub fn input_image_tokens(info: &ModelInfo) -> u32 {
    match info.id {
        "gemini-3-pro-image" => 560,
        "gemini-3.1-flash-image" => 1120,
        _ => 258,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_and_dated_ids_resolve_to_their_family() {
        assert_eq!(
            lookup("gemini-3-pro-image-preview").unwrap().id,
            "gemini-3-pro-image"
        );
        assert_eq!(
            lookup("imagen-4.0-ultra-generate-preview-06-06")
                .unwrap()
                .id,
            "imagen-4.0-ultra-generate-001"
        );
        assert_eq!(
            lookup("virtual-try-on-preview-08-04").unwrap().family,
            Family::VirtualTryOn
        );
        assert_eq!(
            lookup("imagen-product-recontext-preview-06-30")
                .unwrap()
                .family,
            Family::ProductRecontext
        );
        assert_eq!(
            lookup("imagen-4.0-upscale-preview").unwrap().family,
            Family::ImagenUpscale
        );
        assert!(lookup("gemini-9-image").is_none());
        assert!(lookup("imagen-4.0-ingredientsx").is_none());
    }

    #[test]
    fn dimensions_follow_the_documented_tables() {
        let g25 = lookup("gemini-2.5-flash-image").unwrap();
        assert_eq!(dimensions(g25, Some("16:9"), None), Some((1344, 768)));
        assert_eq!(dimensions(g25, Some("1:8"), None), None);
        assert_eq!(dimensions(g25, None, Some("2K")), None);
        let pro = lookup("gemini-3-pro-image").unwrap();
        assert_eq!(
            dimensions(pro, Some("21:9"), Some("2K")),
            Some((3168, 1344))
        );
        let f31 = lookup("gemini-3.1-flash-image").unwrap();
        assert_eq!(dimensions(f31, Some("1:8"), Some("512")), Some((184, 1472)));
        let i4 = lookup("imagen-4.0-generate-001").unwrap();
        assert_eq!(dimensions(i4, Some("9:16"), Some("2k")), Some((1536, 2816)));
    }
}
