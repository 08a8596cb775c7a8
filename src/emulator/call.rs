//! What every model call carries once routed and authenticated: surface, version,
//! project, location, the model as requested and its catalog entry.
//!
//! Pure data plus small helpers shared by the generateContent and predict handlers.

use crate::catalog::ModelInfo;

/// Which API a request arrived on (some fields exist on only one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Vertex AI (project paths and express mode).
    Vertex,
    /// Gemini Developer API.
    Developer,
}

/// A routed, authenticated model call.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// Vertex or Developer API.
    pub surface: Surface,
    /// True for Vertex express mode (API key, no project in the path).
    pub express: bool,
    /// API version from the path.
    pub version: String,
    /// GCP project (from the path, or the API key's project).
    pub project: String,
    /// Location (`global` for the Developer API and express mode).
    pub location: String,
    /// Model id exactly as requested.
    pub model: String,
    /// Catalog entry.
    pub info: &'static ModelInfo,
    /// Method (`generateContent`, `predict`, …).
    pub method: String,
}

impl CallCtx {
    /// The model resource name as Google writes it in messages.
    pub fn resource(&self) -> String {
        resource_name(
            self.surface,
            self.express,
            &self.project,
            &self.location,
            &self.model,
        )
    }

    /// Stats key `"<project>/<model>"`.
    pub fn stats_key(&self) -> String {
        format!("{}/{}", self.project, self.model)
    }

    /// True for Gemini 3.x image models (thought signatures are mandatory in history).
    pub fn is_gemini3(&self) -> bool {
        self.info.id.starts_with("gemini-3")
    }
}

/// The model resource name for messages (`projects/p/locations/l/publishers/google/models/m`
/// on Vertex, `models/m` on the Developer API).
pub fn resource_name(
    surface: Surface,
    express: bool,
    project: &str,
    location: &str,
    model: &str,
) -> String {
    match (surface, express) {
        (Surface::Developer, _) => format!("models/{model}"),
        (Surface::Vertex, true) => format!("publishers/google/models/{model}"),
        (Surface::Vertex, false) => {
            format!("projects/{project}/locations/{location}/publishers/google/models/{model}")
        }
    }
}

/// Rough token count of a text (about four characters per token, at least one).
pub fn text_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4).max(1)
}
