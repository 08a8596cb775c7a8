//! Validation of a `JobSpec` against its model and backend, before anything is enqueued.
//!
//! Every problem is reported with the field it concerns (`images[1]`, `aspect_ratio`),
//! all at once, so a user fixes a file in one pass. Nothing invalid may reach a provider:
//! the rules follow the spec's model table (§0), the Imagen parameter tables (§5) and the
//! Developer API's refusals (§5.7, `sdk2.19.0__*` captures).

mod fields;
mod images;

pub use images::inputs as input_images;
mod ops;
mod references;

use crate::catalog::{self, Backend, Family, ModelInfo};

use super::spec::{JobSpec, Operation, SPEC_VERSION};

/// One problem with a job spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The offending field, as written in the spec (`images[0]`, `reference_images[1].image`).
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl ValidationErrors {
    /// The field names, for tests and API `details`.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.field.as_str()).collect()
    }
}

/// What validation needs to know besides the spec.
#[derive(Debug, Clone, Copy)]
pub struct ValidationContext {
    /// The project's backend (some fields are Vertex-only).
    pub backend: Backend,
    /// Check that local input files exist and fit the size limit (true on the
    /// producer's machine).
    pub check_local_files: bool,
}

impl Default for ValidationContext {
    fn default() -> Self {
        ValidationContext {
            backend: Backend::Vertex,
            check_local_files: true,
        }
    }
}

/// Collects errors while rules run.
pub(crate) struct Report {
    errors: Vec<ValidationError>,
}

impl Report {
    pub(crate) fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates `spec`; `Ok` means a provider can be called with it.
pub fn validate(spec: &JobSpec, ctx: &ValidationContext) -> Result<(), ValidationErrors> {
    let mut r = Report { errors: Vec::new() };
    if spec.version.0 != SPEC_VERSION {
        r.err(
            "v",
            format!(
                "unsupported spec version {} (this build reads {SPEC_VERSION})",
                spec.version.0
            ),
        );
    }
    if let Some(url) = &spec.webhook_url {
        let ok = url::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            r.err(
                "webhook_url",
                format!("`{url}` is not an http:// or https:// URL with a host"),
            );
        }
    }
    if let Some(model) = model_for(spec, &mut r) {
        check_operation(spec, &model, ctx, &mut r);
        if r.errors.is_empty() {
            fields::check_applicable(spec, &model, ctx, &mut r);
            ops::check(spec, &model, ctx, &mut r);
            images::check_all(spec, &model, ctx, &mut r);
        }
    }
    if r.errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(r.errors))
    }
}

fn model_for(spec: &JobSpec, r: &mut Report) -> Option<ModelInfo> {
    if spec.model.trim().is_empty() {
        r.err("model", "a model is required (set it in the job, with --model, or as the project's default_model)");
        return None;
    }
    let found = catalog::lookup_or_infer(&spec.model);
    if found.is_none() {
        let known: Vec<&str> = catalog::MODELS.iter().map(|m| m.id).collect();
        r.err(
            "model",
            format!(
                "unknown model `{}` (known: {})",
                spec.model,
                known.join(", ")
            ),
        );
    }
    found
}

/// Which operations each family serves.
pub fn family_supports(family: Family, op: Operation) -> bool {
    use Operation::*;
    match family {
        Family::GeminiImage => !matches!(op, Segment | Plan | Assemble),
        Family::GeminiText => matches!(op, Segment | Plan),
        Family::ImagenGenerate => matches!(op, Generate | Upscale),
        Family::ImagenCapability => matches!(op, Edit),
        Family::ImagenUpscale => matches!(op, Upscale),
        Family::ProductRecontext | Family::VirtualTryOn => matches!(op, Recontext),
        Family::Segmentation => matches!(op, Segment),
    }
}

fn check_operation(spec: &JobSpec, model: &ModelInfo, ctx: &ValidationContext, r: &mut Report) {
    if !family_supports(model.family, spec.op) {
        r.err(
            "op",
            format!(
                "model `{}` cannot run `{}`; Gemini image models (e.g. gemini-3.1-flash-image) run every operation but segment, which a Gemini text model (e.g. gemini-3.5-flash) runs",
                spec.model, spec.op
            ),
        );
    }
    if ctx.backend == Backend::GeminiApi && !model.family.is_generate_content() {
        r.err(
            "model",
            format!(
                "`{}` is an Imagen-family model: the Gemini Developer API no longer serves Imagen (spec §0); use a Gemini image model or a Vertex project",
                spec.model
            ),
        );
    }
}

#[cfg(test)]
mod tests;
