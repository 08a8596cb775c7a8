//! The `GenerateContentRequest` wire schema (spec §4.1) as static tables: every field's
//! camelCase and snake_case name, its kind, and whether only Vertex or only the Developer
//! API knows it. Enum value sets come from the SDK's `types.py`.
//!
//! Data only; `proto` walks requests against it.

use crate::catalog::{HARM_CATEGORIES, HARM_THRESHOLDS};

/// What a field holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Str,
    Bytes,
    Int,
    Float,
    Bool,
    Enum(&'static str, &'static [&'static str]),
    Msg(&'static str, &'static [Field]),
    Any,
    Map,
}

/// Which API surface knows a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    Vertex,
    Developer,
}

/// One proto field.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) camel: &'static str,
    pub(super) snake: &'static str,
    pub(super) kind: Kind,
    pub(super) repeated: bool,
    pub(super) scope: Scope,
}

const fn f(camel: &'static str, snake: &'static str, kind: Kind) -> Field {
    Field {
        camel,
        snake,
        kind,
        repeated: false,
        scope: Scope::All,
    }
}
const fn rep(camel: &'static str, snake: &'static str, kind: Kind) -> Field {
    Field {
        camel,
        snake,
        kind,
        repeated: true,
        scope: Scope::All,
    }
}
const fn vx(mut field: Field) -> Field {
    field.scope = Scope::Vertex;
    field
}
const fn dev(mut field: Field) -> Field {
    field.scope = Scope::Developer;
    field
}

const METHODS: &[&str] = &["HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY", "PROBABILITY"];
const MODALITIES: &[&str] = &["MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO"];
const THINKING_LEVELS: &[&str] = &[
    "THINKING_LEVEL_UNSPECIFIED",
    "MINIMAL",
    "LOW",
    "MEDIUM",
    "HIGH",
    "XHIGH",
];
const PERSON_GENERATION: &[&str] = &[
    "PERSON_GENERATION_UNSPECIFIED",
    "ALLOW_ALL",
    "ALLOW_ADULT",
    "ALLOW_NONE",
];
const PROMINENT_PEOPLE: &[&str] = &[
    "PROMINENT_PEOPLE_UNSPECIFIED",
    "ALLOW_PROMINENT_PEOPLE",
    "BLOCK_PROMINENT_PEOPLE",
];

const BLOB: &[Field] = &[
    f("mimeType", "mime_type", Kind::Str),
    f("data", "data", Kind::Bytes),
    f("displayName", "display_name", Kind::Str),
];
const FILE_DATA: &[Field] = &[
    f("mimeType", "mime_type", Kind::Str),
    f("fileUri", "file_uri", Kind::Str),
    f("displayName", "display_name", Kind::Str),
];
const PART: &[Field] = &[
    f("text", "text", Kind::Str),
    f("inlineData", "inline_data", Kind::Msg("Blob", BLOB)),
    f("fileData", "file_data", Kind::Msg("FileData", FILE_DATA)),
    f("thought", "thought", Kind::Bool),
    f("thoughtSignature", "thought_signature", Kind::Bytes),
    f("functionCall", "function_call", Kind::Any),
    f("functionResponse", "function_response", Kind::Any),
    f("executableCode", "executable_code", Kind::Any),
    f("codeExecutionResult", "code_execution_result", Kind::Any),
    f("videoMetadata", "video_metadata", Kind::Any),
    f("mediaResolution", "media_resolution", Kind::Any),
    f("partMetadata", "part_metadata", Kind::Any),
];
const CONTENT: &[Field] = &[
    f("role", "role", Kind::Str),
    rep("parts", "parts", Kind::Msg("Part", PART)),
];
const SAFETY_SETTING: &[Field] = &[
    f(
        "category",
        "category",
        Kind::Enum("HarmCategory", HARM_CATEGORIES),
    ),
    f(
        "threshold",
        "threshold",
        Kind::Enum("SafetySetting.HarmBlockThreshold", HARM_THRESHOLDS),
    ),
    vx(f(
        "method",
        "method",
        Kind::Enum("SafetySetting.HarmBlockMethod", METHODS),
    )),
];
const IMAGE_OUTPUT_OPTIONS: &[Field] = &[
    f("mimeType", "mime_type", Kind::Str),
    f("compressionQuality", "compression_quality", Kind::Int),
];
const IMAGE_CONFIG: &[Field] = &[
    f("aspectRatio", "aspect_ratio", Kind::Str),
    f("imageSize", "image_size", Kind::Str),
    vx(f(
        "personGeneration",
        "person_generation",
        Kind::Enum("ImageConfig.PersonGeneration", PERSON_GENERATION),
    )),
    vx(f(
        "prominentPeople",
        "prominent_people",
        Kind::Enum("ImageConfig.ProminentPeople", PROMINENT_PEOPLE),
    )),
    vx(f(
        "imageOutputOptions",
        "image_output_options",
        Kind::Msg("ImageConfig.ImageOutputOptions", IMAGE_OUTPUT_OPTIONS),
    )),
];
const THINKING_CONFIG: &[Field] = &[
    f("includeThoughts", "include_thoughts", Kind::Bool),
    f("thinkingBudget", "thinking_budget", Kind::Int),
    f(
        "thinkingLevel",
        "thinking_level",
        Kind::Enum(
            "GenerationConfig.ThinkingConfig.ThinkingLevel",
            THINKING_LEVELS,
        ),
    ),
];
const GENERATION_CONFIG: &[Field] = &[
    f("temperature", "temperature", Kind::Float),
    f("topP", "top_p", Kind::Float),
    f("topK", "top_k", Kind::Float),
    f("candidateCount", "candidate_count", Kind::Int),
    f("maxOutputTokens", "max_output_tokens", Kind::Int),
    rep("stopSequences", "stop_sequences", Kind::Str),
    f("presencePenalty", "presence_penalty", Kind::Float),
    f("frequencyPenalty", "frequency_penalty", Kind::Float),
    f("seed", "seed", Kind::Int),
    f("responseMimeType", "response_mime_type", Kind::Str),
    f("responseSchema", "response_schema", Kind::Any),
    f("responseJsonSchema", "response_json_schema", Kind::Any),
    f("responseLogprobs", "response_logprobs", Kind::Bool),
    f("logprobs", "logprobs", Kind::Int),
    rep(
        "responseModalities",
        "response_modalities",
        Kind::Enum("GenerationConfig.Modality", MODALITIES),
    ),
    f("mediaResolution", "media_resolution", Kind::Any),
    f("speechConfig", "speech_config", Kind::Any),
    f(
        "thinkingConfig",
        "thinking_config",
        Kind::Msg("GenerationConfig.ThinkingConfig", THINKING_CONFIG),
    ),
    f(
        "imageConfig",
        "image_config",
        Kind::Msg("ImageConfig", IMAGE_CONFIG),
    ),
    f(
        "enableAffectiveDialog",
        "enable_affective_dialog",
        Kind::Bool,
    ),
    vx(f("routingConfig", "routing_config", Kind::Any)),
    vx(f("audioTimestamp", "audio_timestamp", Kind::Bool)),
    vx(f(
        "modelSelectionConfig",
        "model_selection_config",
        Kind::Any,
    )),
    dev(f(
        "enableEnhancedCivicAnswers",
        "enable_enhanced_civic_answers",
        Kind::Bool,
    )),
];
const OUTPUT_CONFIG: &[Field] = &[f("outputUriPrefix", "output_uri_prefix", Kind::Str)];
/// `GenerateContentRequest`.
pub(super) const REQUEST: &[Field] = &[
    rep("contents", "contents", Kind::Msg("Content", CONTENT)),
    f(
        "systemInstruction",
        "system_instruction",
        Kind::Msg("Content", CONTENT),
    ),
    rep("tools", "tools", Kind::Any),
    f("toolConfig", "tool_config", Kind::Any),
    rep(
        "safetySettings",
        "safety_settings",
        Kind::Msg("SafetySetting", SAFETY_SETTING),
    ),
    f(
        "generationConfig",
        "generation_config",
        Kind::Msg("GenerationConfig", GENERATION_CONFIG),
    ),
    f("cachedContent", "cached_content", Kind::Str),
    f("model", "model", Kind::Str),
    f("serviceTier", "service_tier", Kind::Str),
    vx(f("labels", "labels", Kind::Map)),
    vx(f(
        "outputConfig",
        "output_config",
        Kind::Msg("OutputConfig", OUTPUT_CONFIG),
    )),
    vx(f("modelArmorConfig", "model_armor_config", Kind::Any)),
];
