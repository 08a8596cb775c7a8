//! Wire enums of `JobSpec`: serde names are the values Google expects, with short
//! lowercase aliases for people writing job files.

use serde::{Deserialize, Serialize};

/// Declares a wire enum whose serde names are the wire values, with lowercase aliases.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:literal | $alias:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(
                #[doc = $wire]
                #[serde(rename = $wire, alias = $alias)]
                $variant,
            )+
        }
        impl $name {
            /// The value sent to Google.
            pub fn wire(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }
        }
    };
}

wire_enum!(
    /// Kind of Imagen reference image.
    ReferenceType {
        Raw = "REFERENCE_TYPE_RAW" | "raw",
        Mask = "REFERENCE_TYPE_MASK" | "mask",
        Control = "REFERENCE_TYPE_CONTROL" | "control",
        Style = "REFERENCE_TYPE_STYLE" | "style",
        Subject = "REFERENCE_TYPE_SUBJECT" | "subject",
        Content = "REFERENCE_TYPE_CONTENT" | "content",
    }
);

wire_enum!(
    /// How an edit mask is obtained.
    MaskMode {
        Default = "MASK_MODE_DEFAULT" | "default",
        UserProvided = "MASK_MODE_USER_PROVIDED" | "user_provided",
        Background = "MASK_MODE_BACKGROUND" | "background",
        Foreground = "MASK_MODE_FOREGROUND" | "foreground",
        Semantic = "MASK_MODE_SEMANTIC" | "semantic",
    }
);

wire_enum!(
    /// Control image type.
    ControlType {
        Default = "CONTROL_TYPE_DEFAULT" | "default",
        Canny = "CONTROL_TYPE_CANNY" | "canny",
        Scribble = "CONTROL_TYPE_SCRIBBLE" | "scribble",
        FaceMesh = "CONTROL_TYPE_FACE_MESH" | "face_mesh",
    }
);

wire_enum!(
    /// Subject type for subject customization.
    SubjectType {
        Default = "SUBJECT_TYPE_DEFAULT" | "default",
        Person = "SUBJECT_TYPE_PERSON" | "person",
        Animal = "SUBJECT_TYPE_ANIMAL" | "animal",
        Product = "SUBJECT_TYPE_PRODUCT" | "product",
    }
);

wire_enum!(
    /// Imagen edit mode.
    EditMode {
        Default = "EDIT_MODE_DEFAULT" | "default",
        InpaintRemoval = "EDIT_MODE_INPAINT_REMOVAL" | "inpaint_removal",
        InpaintInsertion = "EDIT_MODE_INPAINT_INSERTION" | "inpaint_insertion",
        Outpaint = "EDIT_MODE_OUTPAINT" | "outpaint",
        ControlledEditing = "EDIT_MODE_CONTROLLED_EDITING" | "controlled_editing",
        Style = "EDIT_MODE_STYLE" | "style",
        Bgswap = "EDIT_MODE_BGSWAP" | "bgswap",
        ProductImage = "EDIT_MODE_PRODUCT_IMAGE" | "product_image",
    }
);

wire_enum!(
    /// Segmentation mode.
    SegmentMode {
        Foreground = "FOREGROUND" | "foreground",
        Background = "BACKGROUND" | "background",
        Prompt = "PROMPT" | "prompt",
        Semantic = "SEMANTIC" | "semantic",
        Interactive = "INTERACTIVE" | "interactive",
    }
);

wire_enum!(
    /// Imagen safety filter level.
    SafetyFilterLevel {
        BlockLowAndAbove = "BLOCK_LOW_AND_ABOVE" | "block_low_and_above",
        BlockMediumAndAbove = "BLOCK_MEDIUM_AND_ABOVE" | "block_medium_and_above",
        BlockOnlyHigh = "BLOCK_ONLY_HIGH" | "block_only_high",
        BlockNone = "BLOCK_NONE" | "block_none",
    }
);

wire_enum!(
    /// Person generation policy.
    PersonGeneration {
        DontAllow = "DONT_ALLOW" | "dont_allow",
        AllowAdult = "ALLOW_ADULT" | "allow_adult",
        AllowAll = "ALLOW_ALL" | "allow_all",
        AllowNone = "ALLOW_NONE" | "allow_none",
    }
);

wire_enum!(
    /// Prominent people policy (Gemini on Vertex).
    ProminentPeople {
        Unspecified = "PROMINENT_PEOPLE_UNSPECIFIED" | "unspecified",
        Allow = "ALLOW_PROMINENT_PEOPLE" | "allow",
        Block = "BLOCK_PROMINENT_PEOPLE" | "block",
    }
);

wire_enum!(
    /// Gemini thinking level.
    ThinkingLevel {
        Minimal = "MINIMAL" | "minimal",
        Low = "LOW" | "low",
        Medium = "MEDIUM" | "medium",
        High = "HIGH" | "high",
        XHigh = "XHIGH" | "xhigh",
    }
);

/// How Google serves (and prices) a job: `standard`; `flex` (half price, best effort,
/// minutes); `priority` (a premium, served at standard when over its limit); `batch`
/// (Google's Batch API, half price, up to a day). Spec §11.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Pay as you go.
    #[default]
    Standard,
    /// Best effort at a discount (`service_tier: flex`).
    Flex,
    /// A premium for latency (`service_tier: priority`).
    Priority,
    /// Google's Batch API.
    Batch,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 4] = [Tier::Standard, Tier::Flex, Tier::Priority, Tier::Batch];

    /// The spelling in job files, `service_tier`, records, metrics and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Flex => "flex",
            Tier::Priority => "priority",
            Tier::Batch => "batch",
        }
    }

    /// Whether Google offers `model` at this tier (spec §11; each model page's
    /// "consumption options"). Flex and Priority exist on `:generateContent` only: not on
    /// 3.1 Flash Image nor 3.1 Flash-Lite Image ("Flex inference: Not supported"), on the
    /// Gemini text models and 3 Pro Image (on Vertex, Flex and Priority PayGo also need the
    /// `global` endpoint, which Google checks). Batch: every `:generateContent` model.
    pub fn offered_on(self, info: &crate::catalog::ModelInfo) -> bool {
        use crate::catalog::Family;
        match self {
            Tier::Standard => true,
            Tier::Batch => info.family.is_generate_content(),
            Tier::Flex | Tier::Priority => match info.family {
                Family::GeminiText => true,
                Family::GeminiImage => !matches!(
                    info.id,
                    "gemini-3.1-flash-image"
                        | "gemini-3.1-flash-lite-image"
                        | "gemini-2.5-flash-image"
                ),
                _ => false,
            },
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == lower)
            .ok_or_else(|| {
                format!("unknown tier `{s}` (expected standard, flex, priority or batch)")
            })
    }
}
