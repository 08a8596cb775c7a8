//! Where each model is in Google's lifecycle (spec §11, research of 2026-12-01): its
//! stage, release and shutdown dates per backend where they differ, and its
//! replacement. Dates move, so every entry can be overridden from the configuration
//! (`[models."<id>"]`), and the decision — run, warn, migrate or refuse — is one pure
//! function of the entry, the backend and the day ([`Lifecycle::decide`]).
//!
//! Sources: ai.google.dev/gemini-api/docs/deprecations (Gemini API dates),
//! ai.google.dev/gemini-api/docs/models/gemini-3.1-flash-lite-image, the Vertex model
//! pages (docs.cloud.google.com/gemini-enterprise-agent-platform/models), and
//! firebase.google.com/docs/ai-logic/imagen-models-migration ("All Imagen models shut
//! down on August 17, 2026").

use chrono::NaiveDate;

use super::Backend;

/// A model's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Preview: may change or go at short notice.
    Preview,
    /// Generally available.
    Ga,
    /// Announced for shutdown; still answering until its date.
    Deprecated,
    /// Gone: Google answers 404.
    ShutDown,
}

/// One model's lifecycle entry. Dates are `YYYY-MM-DD` (UTC days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Life {
    /// The id exactly as Google spells it (preview ids included).
    pub id: String,
    /// Stage.
    pub stage: Stage,
    /// Release date, as precise as Google gives it (`2026-06` is a month).
    pub released: Option<String>,
    /// Shutdown on the Gemini Developer API.
    pub shutdown_gemini_api: Option<NaiveDate>,
    /// Shutdown on Vertex AI.
    pub shutdown_vertex: Option<NaiveDate>,
    /// What to run instead.
    pub replacement: Option<String>,
}

/// What to do with a job naming a model, on one backend, on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it as named.
    Run,
    /// Run it as named, and tell the user its shutdown is near.
    RunWarn(String),
    /// The model is gone: run `replacement` instead (when migrating), else refuse.
    Retired {
        /// Why, in words (names the date and the replacement).
        why: String,
        /// The replacement, when one is known.
        replacement: Option<String>,
    },
}

/// Days before a shutdown from which submits warn.
pub const WARN_DAYS: i64 = 30;

fn day(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

/// The built-in table (spec §11). Ids not listed are current (GA) with no dates.
fn builtin() -> Vec<Life> {
    let imagen_gone = day(2026, 8, 17);
    let mut table = vec![
        life(
            "gemini-3.1-flash-image",
            Stage::Ga,
            Some("2026-05-28"),
            None,
            None,
            None,
        ),
        life(
            "gemini-3-pro-image",
            Stage::Ga,
            Some("2026-05-28"),
            None,
            None,
            None,
        ),
        life(
            "gemini-3.1-flash-lite-image",
            Stage::Ga,
            Some("2026-06"),
            None,
            None,
            None,
        ),
        life(
            "gemini-3.1-flash-image-preview",
            Stage::ShutDown,
            None,
            day(2026, 6, 25),
            day(2026, 7, 17),
            Some("gemini-3.1-flash-image"),
        ),
        life(
            "gemini-3-pro-image-preview",
            Stage::ShutDown,
            None,
            day(2026, 6, 25),
            None,
            Some("gemini-3-pro-image"),
        ),
        // Past its Gemini API shutdown (2026-10-02); no Vertex date was announced.
        life(
            "gemini-2.5-flash-image",
            Stage::Deprecated,
            Some("2025-10-02"),
            day(2026, 10, 2),
            None,
            Some("gemini-3.1-flash-image"),
        ),
        life(
            "gemini-2.5-flash-image-preview",
            Stage::ShutDown,
            None,
            None,
            None,
            Some("gemini-3.1-flash-image"),
        ),
        // Text models (segmentation; spec §11, ai.google.dev deprecations): 3.5 Flash
        // has no shutdown announced; 3.1 Flash-Lite's Gemini API shutdown is
        // 2027-05-07, its replacement inferred [INF].
        life(
            "gemini-3.5-flash",
            Stage::Ga,
            Some("2026-05-19"),
            None,
            None,
            None,
        ),
        life(
            "gemini-3.1-flash-lite",
            Stage::Ga,
            Some("2026-05-07"),
            day(2027, 5, 7),
            None,
            Some("gemini-3.5-flash"),
        ),
    ];
    // Every Imagen generate and capability model: shut down on both backends. Upscale,
    // product recontext, virtual try-on and segmentation are not confirmed either way
    // (spec §11) and stay current until a date is configured.
    for id in [
        "imagen-3.0-generate-001",
        "imagen-3.0-generate-002",
        "imagen-3.0-fast-generate-001",
        "imagen-4.0-generate-001",
        "imagen-4.0-fast-generate-001",
        "imagen-4.0-ultra-generate-001",
        "imagen-3.0-capability-001",
        "imagen-4.0-ingredients",
    ] {
        table.push(life(
            id,
            Stage::ShutDown,
            None,
            imagen_gone,
            imagen_gone,
            Some("gemini-3.1-flash-image"),
        ));
    }
    table
}

fn life(
    id: &str,
    stage: Stage,
    released: Option<&str>,
    shutdown_gemini_api: Option<NaiveDate>,
    shutdown_vertex: Option<NaiveDate>,
    replacement: Option<&str>,
) -> Life {
    Life {
        id: id.to_string(),
        stage,
        released: released.map(str::to_string),
        shutdown_gemini_api,
        shutdown_vertex,
        replacement: replacement.map(str::to_string),
    }
}

/// A configured change to one entry (`[models."<id>"]`): any field given wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifeOverride {
    /// Stage.
    pub stage: Option<Stage>,
    /// Release date.
    pub released: Option<String>,
    /// Shutdown on both backends (`YYYY-MM-DD`), unless one is given below.
    pub shutdown: Option<NaiveDate>,
    /// Shutdown on the Gemini Developer API.
    pub shutdown_gemini_api: Option<NaiveDate>,
    /// Shutdown on Vertex AI.
    pub shutdown_vertex: Option<NaiveDate>,
    /// What to run instead.
    pub replacement: Option<String>,
}

/// The lifecycle table: built in, with the configured overrides applied.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    entries: Vec<Life>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { entries: builtin() }
    }
}

impl Lifecycle {
    /// The built-in table with `overrides` (model id → change) applied.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a String, &'a LifeOverride)>,
    ) -> Self {
        let mut table = Lifecycle::default();
        for (id, o) in overrides {
            let pos = table.entries.iter().position(|e| &e.id == id);
            let entry = match pos {
                Some(i) => &mut table.entries[i],
                None => {
                    table
                        .entries
                        .push(life(id, Stage::Ga, None, None, None, None));
                    table.entries.last_mut().expect("pushed")
                }
            };
            if let Some(s) = o.stage {
                entry.stage = s;
            }
            if let Some(r) = &o.released {
                entry.released = Some(r.clone());
            }
            if let Some(d) = o.shutdown {
                entry.shutdown_gemini_api = Some(d);
                entry.shutdown_vertex = Some(d);
            }
            if let Some(d) = o.shutdown_gemini_api {
                entry.shutdown_gemini_api = Some(d);
            }
            if let Some(d) = o.shutdown_vertex {
                entry.shutdown_vertex = Some(d);
            }
            if let Some(r) = &o.replacement {
                entry.replacement = Some(r.clone());
            }
        }
        table
    }

    /// The entry of `model` (the id as written, `models/` prefixes stripped).
    pub fn get(&self, model: &str) -> Option<&Life> {
        let id = model
            .strip_prefix("publishers/google/models/")
            .or_else(|| model.strip_prefix("models/"))
            .unwrap_or(model);
        self.entries.iter().find(|e| e.id == id)
    }

    /// What to do with a job naming `model` on `backend` on `today`.
    pub fn decide(&self, model: &str, backend: Backend, today: NaiveDate) -> Decision {
        let Some(life) = self.get(model) else {
            return Decision::Run;
        };
        let shutdown = match backend {
            Backend::GeminiApi => life.shutdown_gemini_api,
            Backend::Vertex => life.shutdown_vertex,
        };
        let on = match backend {
            Backend::GeminiApi => "the Gemini API",
            Backend::Vertex => "Vertex AI",
        };
        let instead = life
            .replacement
            .as_deref()
            .map(|r| format!("; its replacement is {r}"))
            .unwrap_or_default();
        let past = shutdown.is_some_and(|d| d <= today);
        if life.stage == Stage::ShutDown || past {
            let when = shutdown
                .map(|d| format!(" on {on} since {d}"))
                .unwrap_or_default();
            return Decision::Retired {
                why: format!("{} is shut down{when}{instead}", life.id),
                replacement: life.replacement.clone(),
            };
        }
        if let Some(d) = shutdown
            && (d - today).num_days() <= WARN_DAYS
        {
            let days = (d - today).num_days();
            return Decision::RunWarn(format!(
                "{} shuts down on {on} on {d} (in {days} days){instead}",
                life.id
            ));
        }
        Decision::Run
    }
}

/// Today, in UTC.
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn shut_down_and_past_dates_retire_a_model_per_backend() {
        let t = Lifecycle::default();
        let today = d("2026-12-03");
        assert_eq!(
            t.decide("gemini-3.1-flash-image", Backend::GeminiApi, today),
            Decision::Run
        );
        let Decision::Retired { why, replacement } =
            t.decide("gemini-2.5-flash-image", Backend::GeminiApi, today)
        else {
            panic!("2.5 is past its Gemini API shutdown")
        };
        assert_eq!(replacement.as_deref(), Some("gemini-3.1-flash-image"));
        assert!(why.contains("since 2026-10-02"), "{why}");
        // No Vertex date was announced for 2.5.
        assert_eq!(
            t.decide("gemini-2.5-flash-image", Backend::Vertex, today),
            Decision::Run
        );
        assert!(matches!(
            t.decide("imagen-4.0-generate-001", Backend::Vertex, today),
            Decision::Retired { .. }
        ));
        assert!(matches!(
            t.decide("models/gemini-3-pro-image-preview", Backend::GeminiApi, today),
            Decision::Retired { replacement: Some(r), .. } if r == "gemini-3-pro-image"
        ));
        // Before its date, 2.5 warned within 30 days and ran.
        assert!(matches!(
            t.decide("gemini-2.5-flash-image", Backend::GeminiApi, d("2026-09-10")),
            Decision::RunWarn(w) if w.contains("in 22 days")
        ));
        assert_eq!(
            t.decide(
                "gemini-2.5-flash-image",
                Backend::GeminiApi,
                d("2026-08-01")
            ),
            Decision::Run
        );
    }

    #[test]
    fn overrides_move_dates_and_stages() {
        let later = LifeOverride {
            shutdown_gemini_api: Some(d("2027-03-01")),
            ..Default::default()
        };
        let gone = LifeOverride {
            stage: Some(Stage::ShutDown),
            replacement: Some("gemini-3-pro-image".into()),
            ..Default::default()
        };
        let a = "gemini-2.5-flash-image".to_string();
        let b = "gemini-3.1-flash-image".to_string();
        let t = Lifecycle::with_overrides([(&a, &later), (&b, &gone)]);
        let today = d("2026-12-03");
        assert_eq!(t.decide(&a, Backend::GeminiApi, today), Decision::Run);
        assert!(matches!(
            t.decide(&a, Backend::GeminiApi, d("2027-02-20")),
            Decision::RunWarn(_)
        ));
        assert!(matches!(
            t.decide(&b, Backend::Vertex, today),
            Decision::Retired { replacement: Some(r), .. } if r == "gemini-3-pro-image"
        ));
    }
}
