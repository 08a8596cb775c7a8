//! The emulator's scenario: latency, fault rates, safety markers, auth tables and quotas.
//!
//! Parsed from TOML (`--scenario file.toml`) or JSON (`POST /emulator/scenario`); the same
//! shape serialises back out of `GET /emulator/scenario`. This module only describes and
//! checks the knobs; it must not act on requests.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::emulator::EmulatorError;

/// Everything that shapes how the emulator answers. Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Seed for the fault/latency RNG; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Fixed latency per image request in milliseconds (shorthand for `[latency] ms`).
    pub latency_ms: Option<u64>,
    /// Latency as a fixed value, a uniform range or a weighted table, plus per-model overrides.
    pub latency: LatencyConfig,
    /// Prompts containing this text are blocked (`promptFeedback.blockReason` / RAI filter).
    pub blocked_marker: String,
    /// Prompts containing this text finish with `IMAGE_SAFETY` (Imagen: samples filtered).
    pub image_safety_marker: String,
    /// Prompts containing this text finish with `NO_IMAGE` (Imagen: empty predictions).
    pub no_image_marker: String,
    /// When true, `[[fail:503]]`, `[[fail:timeout]]`, `[[fail:reset]]`, `[[fail:malformed]]`,
    /// `[[fail:non_json]]`, `[[fail:429]]` (shared-quota style) in a prompt force that fault.
    pub fault_markers: bool,
    /// Random fault rates.
    pub faults: Faults,
    /// Model ids answered with 404 as if retired (exact id or catalog id).
    pub retired_models: Vec<String>,
    /// Bearer tokens accepted on Vertex paths besides the ones the emulator issued.
    pub static_tokens: Vec<String>,
    /// API key → GCP project id. Empty: any non-empty key is accepted as project `default`.
    pub api_keys: BTreeMap<String, String>,
    /// Lifetime of issued access tokens in seconds.
    pub token_ttl_s: u64,
    /// Largest accepted request body in bytes (413 above).
    pub max_request_bytes: u64,
    /// Project id answered by the metadata server stand-in.
    pub metadata_project_id: String,
    /// The metadata server stand-in answers its token path with 503 (an outage of the
    /// credential source, as on a VM whose metadata server is unreachable).
    pub metadata_unavailable: bool,
    /// `quota.<project>."<model>"` limits (model key: exact id as requested or catalog id).
    pub quota: BTreeMap<String, BTreeMap<String, QuotaLimits>>,
    /// Share (0..=1) of Priority calls served at standard, as Google does when a
    /// project is over its Priority limit (`x-gemini-service-tier: standard`).
    pub priority_downgrade_rate: f64,
    /// How Developer-API batches (`:batchGenerateContent`) progress.
    pub batch: BatchScenario,
}

/// `[batch]`: a batch's turnaround and faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchScenario {
    /// Time in `BATCH_STATE_PENDING` after creation, ms.
    pub pending_ms: u64,
    /// Time from creation to the end (`SUCCEEDED`, or `EXPIRED` with `expire`), ms.
    pub turnaround_ms: u64,
    /// Share (0..=1) of answered lines written twice under one key, as Google has been
    /// seen to do (spec §11).
    pub duplicate_rate: f64,
    /// Batches end `BATCH_STATE_EXPIRED`, with no results (the 48 h limit).
    pub expire: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: None,
            latency_ms: None,
            latency: LatencyConfig::default(),
            blocked_marker: "[[blocked]]".into(),
            image_safety_marker: "[[image_safety]]".into(),
            no_image_marker: "[[no_image]]".into(),
            fault_markers: true,
            faults: Faults::default(),
            retired_models: Vec::new(),
            static_tokens: Vec::new(),
            api_keys: BTreeMap::new(),
            token_ttl_s: 3600,
            max_request_bytes: 500 * 1024 * 1024,
            metadata_project_id: "demo-proj".into(),
            metadata_unavailable: false,
            quota: BTreeMap::new(),
            priority_downgrade_rate: 0.0,
            batch: BatchScenario::default(),
        }
    }
}

/// A latency distribution. Precedence: `table`, then `min_ms`..`max_ms`, then `ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencySpec {
    /// Fixed latency.
    pub ms: Option<u64>,
    /// Lower bound of a uniform range.
    pub min_ms: Option<u64>,
    /// Upper bound of a uniform range.
    pub max_ms: Option<u64>,
    /// Weighted choices (`[[latency.table]] ms = 200, weight = 0.9`).
    pub table: Vec<LatencyBucket>,
}

/// The global latency plus per-model overrides (`[latency.models."gemini-3-pro-image"]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Fixed latency.
    pub ms: Option<u64>,
    /// Lower bound of a uniform range.
    pub min_ms: Option<u64>,
    /// Upper bound of a uniform range.
    pub max_ms: Option<u64>,
    /// Weighted choices.
    pub table: Vec<LatencyBucket>,
    /// Overrides by model id (exact id as requested or catalog id).
    pub models: BTreeMap<String, LatencySpec>,
}

/// One weighted latency choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyBucket {
    /// Latency of this bucket.
    pub ms: u64,
    /// Relative weight (need not sum to 1).
    pub weight: f64,
}

/// Random fault rates (each 0..=1, checked in this order on one roll).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// 500 INTERNAL.
    pub rate_500: f64,
    /// 503 UNAVAILABLE ("The model is overloaded").
    pub rate_503: f64,
    /// Dynamic-Shared-Quota 429 without details.
    pub rate_429_shared: f64,
    /// Hold the request `timeout_ms`, then 504 DEADLINE_EXCEEDED.
    pub rate_timeout: f64,
    /// Drop the connection without a complete response.
    pub rate_reset: f64,
    /// 200 with a truncated JSON body.
    pub rate_malformed: f64,
    /// 503 with an HTML body.
    pub rate_non_json: f64,
    /// How long a timeout fault holds the request.
    pub timeout_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_500: 0.0,
            rate_503: 0.0,
            rate_429_shared: 0.0,
            rate_timeout: 0.0,
            rate_reset: 0.0,
            rate_malformed: 0.0,
            rate_non_json: 0.0,
            timeout_ms: 120_000,
        }
    }
}

/// Limits of one project on one base model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    /// Requests per minute: a token bucket refilled at rpm/60 per second.
    pub rpm: Option<u64>,
    /// Requests the rpm bucket holds (default: 6 s worth, at least `min(rpm, 10)`).
    pub burst: Option<u64>,
    /// Requests in flight at once.
    pub concurrent: Option<u64>,
    /// Requests per day (24 h window from the first request).
    pub rpd: Option<u64>,
}

impl QuotaLimits {
    /// The rpm bucket's size.
    pub fn burst_of(&self, rpm: u64) -> u64 {
        self.burst.unwrap_or((rpm / 10).max(rpm.min(10))).max(1)
    }
}

impl Scenario {
    /// Parses and checks a TOML scenario.
    pub fn from_toml_str(s: &str) -> Result<Self, EmulatorError> {
        let scenario: Scenario =
            toml::from_str(s).map_err(|e| EmulatorError::Scenario(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and checks a TOML scenario file.
    pub fn from_file(path: &Path) -> Result<Self, EmulatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmulatorError::Scenario(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text)
    }

    /// Checks value ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), EmulatorError> {
        let f = &self.faults;
        let rates = [
            ("faults.rate_500", f.rate_500),
            ("faults.rate_503", f.rate_503),
            ("faults.rate_429_shared", f.rate_429_shared),
            ("faults.rate_timeout", f.rate_timeout),
            ("faults.rate_reset", f.rate_reset),
            ("faults.rate_malformed", f.rate_malformed),
            ("faults.rate_non_json", f.rate_non_json),
        ];
        for (key, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(EmulatorError::Scenario(format!(
                    "{key} must be between 0 and 1, got {rate}"
                )));
            }
        }
        let sum: f64 = rates.iter().map(|(_, r)| r).sum();
        if sum > 1.0 + 1e-9 {
            return Err(EmulatorError::Scenario(format!(
                "faults.rate_* must sum to at most 1, got {sum}"
            )));
        }
        self.latency.as_spec().validate("latency")?;
        for (model, spec) in &self.latency.models {
            spec.validate(&format!("latency.models.\"{model}\""))?;
        }
        Ok(())
    }

    /// The latency spec that applies to a model (requested id first, then catalog id).
    pub fn latency_for(&self, requested: &str, catalog_id: &str) -> LatencySpec {
        if let Some(spec) = self
            .latency
            .models
            .get(requested)
            .or_else(|| self.latency.models.get(catalog_id))
        {
            return spec.clone();
        }
        let mut spec = self.latency.as_spec();
        if spec.ms.is_none() {
            spec.ms = self.latency_ms;
        }
        spec
    }

    /// The quota limits of a project on a model and the key they were found under.
    pub fn quota_for(
        &self,
        project: &str,
        requested: &str,
        catalog_id: &str,
    ) -> Option<(String, QuotaLimits)> {
        let models = self.quota.get(project)?;
        if let Some(l) = models.get(requested) {
            return Some((requested.to_string(), l.clone()));
        }
        models
            .get(catalog_id)
            .map(|l| (catalog_id.to_string(), l.clone()))
    }
}

impl LatencyConfig {
    fn as_spec(&self) -> LatencySpec {
        LatencySpec {
            ms: self.ms,
            min_ms: self.min_ms,
            max_ms: self.max_ms,
            table: self.table.clone(),
        }
    }
}

impl LatencySpec {
    fn validate(&self, key: &str) -> Result<(), EmulatorError> {
        if let (Some(lo), Some(hi)) = (self.min_ms, self.max_ms)
            && lo > hi
        {
            return Err(EmulatorError::Scenario(format!(
                "{key}.min_ms ({lo}) is greater than {key}.max_ms ({hi})"
            )));
        }
        if self
            .table
            .iter()
            .any(|b| b.weight.is_nan() || b.weight < 0.0)
        {
            return Err(EmulatorError::Scenario(format!(
                "{key}.table weights must be non-negative"
            )));
        }
        Ok(())
    }

    /// Draws one latency in milliseconds; `unit` is a uniform sample in `[0, 1)`.
    pub fn sample(&self, unit: f64) -> u64 {
        let total: f64 = self.table.iter().map(|b| b.weight).sum();
        if total > 0.0 {
            let mut target = unit * total;
            for bucket in &self.table {
                if target < bucket.weight {
                    return bucket.ms;
                }
                target -= bucket.weight;
            }
            return self.table.last().map_or(0, |b| b.ms);
        }
        match (self.min_ms, self.max_ms) {
            (Some(lo), Some(hi)) => lo + ((hi - lo) as f64 * unit) as u64,
            (Some(lo), None) => lo,
            (None, Some(hi)) => (hi as f64 * unit) as u64,
            (None, None) => self.ms.unwrap_or(0),
        }
    }

    /// The largest latency this spec can produce (used to estimate when a slot frees).
    pub fn max(&self) -> u64 {
        let table_max = self.table.iter().map(|b| b.ms).max();
        table_max
            .or(self.max_ms)
            .or(self.min_ms)
            .or(self.ms)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_doc_example_parses() {
        let s = Scenario::from_toml_str(
            r#"
latency_ms = 200
blocked_marker = "[[blocked]]"
[faults]
rate_500 = 0.0
rate_503 = 0.0
rate_429_shared = 0.0
rate_timeout = 0.0
[quota.acme."gemini-2.5-flash-image"]
rpm = 600
concurrent = 16
"#,
        )
        .expect("parses");
        assert_eq!(
            s.latency_for("gemini-2.5-flash-image", "x").sample(0.5),
            200
        );
        let (key, q) = s
            .quota_for("acme", "gemini-2.5-flash-image", "gemini-2.5-flash-image")
            .expect("quota");
        assert_eq!(key, "gemini-2.5-flash-image");
        assert_eq!(q.rpm, Some(600));
        assert_eq!(q.concurrent, Some(16));
    }

    #[test]
    fn latency_table_and_model_override() {
        let s = Scenario::from_toml_str(
            r#"
[[latency.table]]
ms = 200
weight = 0.9
[[latency.table]]
ms = 2000
weight = 0.1
[latency.models."gemini-3-pro-image"]
min_ms = 10
max_ms = 20
"#,
        )
        .expect("parses");
        let g = s.latency_for("gemini-2.5-flash-image", "gemini-2.5-flash-image");
        assert_eq!(g.sample(0.1), 200);
        assert_eq!(g.sample(0.95), 2000);
        let p = s.latency_for("gemini-3-pro-image-preview", "gemini-3-pro-image");
        assert_eq!(p.sample(0.5), 15);
    }

    #[test]
    fn bad_rate_and_unknown_key_are_rejected_with_the_key_name() {
        let e = Scenario::from_toml_str("[faults]\nrate_503 = 1.5").unwrap_err();
        assert!(e.to_string().contains("faults.rate_503"), "{e}");
        let e = Scenario::from_toml_str("latncy_ms = 5").unwrap_err();
        assert!(e.to_string().contains("latncy_ms"), "{e}");
    }
}
