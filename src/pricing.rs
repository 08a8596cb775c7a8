//! What a job costs: Google's list prices per model (per 1M input tokens, per 1M output
//! text and thinking tokens, per 1M output image tokens; Imagen per image), a multiplier
//! per tier, and the two sums built on them: a finished job's cost from its usage, and
//! a job's estimate from its spec before it runs (`submit --estimate`, a batch's
//! estimate to finish).
//!
//! The table is Google's Developer API paid-tier pricing as published
//! (https://ai.google.dev/gemini-api/docs/pricing, read through copies of 2026-03 to
//! 2026-10; Vertex lists the same prices). `[prices]` in the config overrides any
//! figure and adds models; the tier multipliers are Google's: Flex and Batch 50 % off,
//! Priority "75 % to 100 % more" (https://ai.google.dev/gemini-api/docs/optimization),
//! 1.8 by default.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::catalog::{self, Family};
pub use crate::config::{ModelPrices, PricesConfig};
use crate::job::result::{ModalityTokens, Usage};
use crate::job::spec::Tier;
use crate::job::{JobSpec, Operation};

const fn tokens(input: f64, text: f64, image: f64) -> ModelPrices {
    ModelPrices {
        input_per_m: input,
        output_text_per_m: text,
        output_image_per_m: image,
        per_image: 0.0,
    }
}

const fn by_image(per_image: f64) -> ModelPrices {
    ModelPrices {
        input_per_m: 0.0,
        output_text_per_m: 0.0,
        output_image_per_m: 0.0,
        per_image,
    }
}

/// Google's standard-tier list prices, by catalog id.
const LIST: &[(&str, ModelPrices)] = &[
    // $0.067 per 1K image (1,120 tokens), $0.045 at 512, $0.101 at 2K, $0.151 at 4K.
    ("gemini-3.1-flash-image", tokens(0.50, 3.00, 60.0)),
    // $0.134 per 1K/2K image, $0.24 at 4K.
    ("gemini-3-pro-image", tokens(2.00, 12.00, 120.0)),
    // $0.034 per 1K image (Google's launch post); text prices from resellers.
    ("gemini-3.1-flash-lite-image", tokens(0.25, 1.50, 30.0)),
    // $0.039 per image (1,290 tokens).
    ("gemini-2.5-flash-image", tokens(0.30, 2.50, 30.0)),
    // Planning and segmentation text models.
    ("gemini-3.5-flash", tokens(1.50, 9.00, 0.0)),
    ("gemini-3.1-flash-lite", tokens(0.25, 1.50, 0.0)),
    // Imagen (shut down on 2026-08-17; kept for old batches and overrides).
    ("imagen-4.0-generate-001", by_image(0.04)),
    ("imagen-4.0-ultra-generate-001", by_image(0.06)),
    ("imagen-4.0-fast-generate-001", by_image(0.02)),
    ("imagen-3.0-generate-001", by_image(0.04)),
    ("imagen-3.0-generate-002", by_image(0.04)),
    ("imagen-3.0-fast-generate-001", by_image(0.02)),
    ("imagen-3.0-capability-001", by_image(0.04)),
    ("imagen-4.0-upscale-preview", by_image(0.06)),
];

/// The price table in force: the list with the config's overrides.
#[derive(Debug, Clone)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrices>,
    config: PricesConfig,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::new(PricesConfig::default())
    }
}

static TABLE: OnceLock<PriceTable> = OnceLock::new();

/// The process's table: the one [`install`]ed, else the list.
pub fn table() -> &'static PriceTable {
    TABLE.get_or_init(PriceTable::default)
}

/// Makes `config` the process's table (first call wins; commands call it once at
/// start-up, after loading the settings).
pub fn install(config: &PricesConfig) {
    let _ = TABLE.set(PriceTable::new(config.clone()));
}

/// Nano-dollars in one US dollar: costs are summed in Redis as integers of these.
pub const NANO: f64 = 1e9;

/// `usd` in whole nano-dollars (what the queue's counters add up).
pub fn to_nano(usd: f64) -> u64 {
    (usd * NANO).round().max(0.0) as u64
}

impl PriceTable {
    /// The list with `config`'s per-model figures replacing its own.
    pub fn new(config: PricesConfig) -> Self {
        let mut models: BTreeMap<String, ModelPrices> =
            LIST.iter().map(|(id, p)| (id.to_string(), *p)).collect();
        for (id, p) in &config.models {
            let id = catalog::lookup(id).map_or(id.as_str(), |m| m.id);
            models.insert(id.to_string(), *p);
        }
        PriceTable { models, config }
    }

    /// A model's standard prices (by any id the catalog resolves).
    pub fn model(&self, model: &str) -> Option<&ModelPrices> {
        let id = catalog::lookup(model).map_or(model, |m| m.id);
        self.models.get(id)
    }

    /// The tier's multiple of the standard price.
    pub fn multiplier(&self, tier: Tier) -> f64 {
        match tier {
            Tier::Standard => 1.0,
            Tier::Flex => self.config.flex,
            Tier::Priority => self.config.priority,
            Tier::Batch => self.config.batch,
        }
    }

    /// What a finished call cost: its usage (or, for a model priced by the image, its
    /// `images`) at the prices of `tier`. `None` for a model the table does not know.
    pub fn cost(&self, model: &str, tier: Tier, usage: Option<&Usage>, images: u32) -> Option<f64> {
        let p = self.model(model)?;
        let standard = match usage {
            Some(u) if p.per_image == 0.0 => {
                let image = u.output_tokens_of("IMAGE").unwrap_or(if images > 0 {
                    u.candidates_token_count
                } else {
                    0
                });
                let text = u.candidates_token_count.saturating_sub(image) + u.thoughts_token_count;
                (u.prompt_token_count as f64 * p.input_per_m
                    + text as f64 * p.output_text_per_m
                    + image as f64 * p.output_image_per_m)
                    / 1e6
            }
            _ => images as f64 * p.per_image,
        };
        Some(standard * self.multiplier(tier))
    }

    /// What a job is expected to cost before it runs: its prompt at about four
    /// characters a token, its input images and its outputs at the tokens Google charges
    /// for their size (no thinking counted). `None` for a model the table does not know
    /// or a job that calls no model.
    pub fn estimate(&self, spec: &JobSpec, tier: Tier) -> Option<f64> {
        if spec.op == Operation::Assemble {
            return Some(0.0);
        }
        let info = catalog::lookup_or_infer(&spec.model)?;
        let p = self.model(&spec.model)?;
        let outputs = spec.number_of_images.unwrap_or(1).max(1) as u64;
        if p.per_image > 0.0 || !info.family.is_generate_content() {
            return Some(outputs as f64 * p.per_image * self.multiplier(tier));
        }
        let text: usize = spec.prompt.as_deref().map_or(0, str::len)
            + spec.system_instruction.as_deref().map_or(0, str::len)
            + spec.description.as_deref().map_or(0, str::len);
        let prompt_tokens = (text as u64).div_ceil(4).max(1)
            + spec.images.len() as u64 * catalog::input_image_tokens(&info) as u64;
        let (image, out_text) = match (info.family, spec.op) {
            (Family::GeminiText, Operation::Plan) => (0, 120 * spec.frames.unwrap_or(1) as u64),
            (Family::GeminiText, _) => (0, 200),
            _ => (
                outputs * catalog::output_image_tokens(&info, spec.image_size.as_deref()) as u64,
                0,
            ),
        };
        let usage = Usage {
            prompt_token_count: prompt_tokens,
            candidates_token_count: image + out_text,
            candidates_tokens_details: vec![ModalityTokens {
                modality: "IMAGE".into(),
                token_count: image,
            }],
            ..Default::default()
        };
        self.cost(&spec.model, tier, Some(&usage), outputs as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, image: u64, text: u64) -> Usage {
        Usage {
            prompt_token_count: prompt,
            candidates_token_count: image + text,
            candidates_tokens_details: vec![ModalityTokens {
                modality: "IMAGE".into(),
                token_count: image,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_one_k_image_costs_what_google_lists() {
        let t = PriceTable::default();
        let c = t
            .cost(
                "gemini-3.1-flash-image",
                Tier::Standard,
                Some(&usage(0, 1120, 0)),
                1,
            )
            .unwrap();
        assert!((c - 0.0672).abs() < 1e-9, "{c}");
        let pro = t
            .cost(
                "gemini-3-pro-image",
                Tier::Standard,
                Some(&usage(0, 2000, 0)),
                1,
            )
            .unwrap();
        assert!((pro - 0.24).abs() < 1e-9, "{pro}");
        let batch = t
            .cost(
                "gemini-3.1-flash-image",
                Tier::Batch,
                Some(&usage(0, 1120, 0)),
                1,
            )
            .unwrap();
        assert!((batch - 0.0336).abs() < 1e-9, "{batch}");
    }

    #[test]
    fn prompt_and_text_tokens_are_priced_apart_from_image_tokens() {
        let t = PriceTable::default();
        let c = t
            .cost(
                "gemini-3.1-flash-image",
                Tier::Standard,
                Some(&usage(1000, 1120, 100)),
                1,
            )
            .unwrap();
        let want = (1000.0 * 0.5 + 1120.0 * 60.0 + 100.0 * 3.0) / 1e6;
        assert!((c - want).abs() < 1e-12, "{c} vs {want}");
    }

    #[test]
    fn overrides_replace_a_model_and_tiers_scale() {
        let mut config = PricesConfig {
            priority: 2.0,
            ..Default::default()
        };
        config.models.insert(
            "gemini-3.1-flash-image-preview".into(),
            tokens(1.0, 1.0, 100.0),
        );
        let t = PriceTable::new(config);
        let c = t
            .cost(
                "gemini-3.1-flash-image",
                Tier::Priority,
                Some(&usage(0, 1000, 0)),
                1,
            )
            .unwrap();
        assert!((c - 0.2).abs() < 1e-12, "{c}");
        assert!(t.cost("no-such-model", Tier::Standard, None, 1).is_none());
    }

    #[test]
    fn an_estimate_counts_outputs_at_their_size() {
        let t = PriceTable::default();
        let spec = JobSpec {
            image_size: Some("2K".into()),
            ..JobSpec::generate("gemini-3.1-flash-image", "a red fox in the snow")
        };
        let e = t.estimate(&spec, Tier::Standard).unwrap();
        let want = (6.0 * 0.5 + 1680.0 * 60.0) / 1e6;
        assert!((e - want).abs() < 1e-12, "{e} vs {want}");
        assert!(
            PricesConfig {
                flex: 0.0,
                ..Default::default()
            }
            .check()
            .is_err()
        );
    }
}
