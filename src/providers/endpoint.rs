//! Where a request goes: base URL and path for (backend, location, version, model,
//! method), per spec §1 — regional, `global`, `us`/`eu` multi-region, express mode and the
//! Developer API.

use crate::catalog::Backend;
use crate::config::ProjectConfig;

/// The API method a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Imagen-family `:predict`.
    Predict,
    /// Gemini `:generateContent`.
    GenerateContent,
}

impl Method {
    /// The `:{method}` suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Predict => "predict",
            Method::GenerateContent => "generateContent",
        }
    }
}

/// Everything needed to address one project's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Which API.
    pub backend: Backend,
    /// Base URL without a trailing slash (`https://aiplatform.googleapis.com`, or the
    /// emulator).
    pub base_url: String,
    /// `v1`, `v1beta1`, `v1beta`.
    pub version: String,
    /// GCP project id (Vertex, not express mode).
    pub project: Option<String>,
    /// Vertex location.
    pub location: String,
    /// Vertex express mode: API key, no project/location in the path.
    pub express: bool,
}

impl Target {
    /// The target of a configured project.
    pub fn from_config(p: &ProjectConfig) -> Self {
        let api_key = p.credentials.starts_with("env:");
        let express = p.backend == Backend::Vertex
            && api_key
            && p.gcp_project.as_deref().unwrap_or("").is_empty();
        let base_url = match &p.endpoint {
            Some(ep) => ep.trim_end_matches('/').to_string(),
            None => default_base_url(p.backend, &p.location, express),
        };
        Target {
            backend: p.backend,
            base_url,
            version: p.api_version().to_string(),
            project: p.gcp_project.clone().filter(|s| !s.is_empty()),
            location: p.location.clone(),
            express,
        }
    }

    /// The path (no host) for `model` and `method`.
    pub fn path(&self, model: &str, method: Method) -> String {
        let m = method.as_str();
        match self.backend {
            Backend::GeminiApi => {
                let id = model.strip_prefix("models/").unwrap_or(model);
                format!("/{}/models/{id}:{m}", self.version)
            }
            Backend::Vertex => {
                let model_path = vertex_model_path(model);
                if self.express || self.project.is_none() {
                    format!("/{}/{model_path}:{m}", self.version)
                } else {
                    format!(
                        "/{}/projects/{}/locations/{}/{model_path}:{m}",
                        self.version,
                        self.project.as_deref().unwrap_or_default(),
                        self.location
                    )
                }
            }
        }
    }

    /// The full URL for `model` and `method`.
    pub fn url(&self, model: &str, method: Method) -> String {
        format!("{}{}", self.base_url, self.path(model, method))
    }
}

/// `gemini-x` → `publishers/google/models/gemini-x`; `a/b` → `publishers/a/models/b`;
/// a full `publishers/…` or `projects/…` name is kept (spec §1, SDK `t_model`).
fn vertex_model_path(model: &str) -> String {
    if model.starts_with("publishers/") || model.starts_with("projects/") {
        return model.to_string();
    }
    let id = model.strip_prefix("models/").unwrap_or(model);
    match id.split_once('/') {
        Some((publisher, name)) => format!("publishers/{publisher}/models/{name}"),
        None => format!("publishers/google/models/{id}"),
    }
}

/// Google's host for a backend and location (spec §1).
pub fn default_base_url(backend: Backend, location: &str, express: bool) -> String {
    match backend {
        Backend::GeminiApi => "https://generativelanguage.googleapis.com".into(),
        Backend::Vertex if express || location == "global" => {
            "https://aiplatform.googleapis.com".into()
        }
        Backend::Vertex if location == "us" || location == "eu" => {
            format!("https://aiplatform.{location}.rep.googleapis.com")
        }
        Backend::Vertex => format!("https://{location}-aiplatform.googleapis.com"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex(location: &str) -> Target {
        Target {
            backend: Backend::Vertex,
            base_url: default_base_url(Backend::Vertex, location, false),
            version: "v1".into(),
            project: Some("p".into()),
            location: location.into(),
            express: false,
        }
    }

    #[test]
    fn vertex_urls_follow_location_kind() {
        assert_eq!(
            vertex("us-central1").url("gemini-2.5-flash-image", Method::GenerateContent),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash-image:generateContent"
        );
        assert_eq!(
            vertex("global").url("imagen-4.0-generate-001", Method::Predict),
            "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/models/imagen-4.0-generate-001:predict"
        );
        assert_eq!(
            vertex("eu").url("m", Method::Predict),
            "https://aiplatform.eu.rep.googleapis.com/v1/projects/p/locations/eu/publishers/google/models/m:predict"
        );
        assert_eq!(
            vertex("us").path("acme/m", Method::Predict),
            "/v1/projects/p/locations/us/publishers/acme/models/m:predict"
        );
    }

    #[test]
    fn express_mode_and_developer_api_have_no_project() {
        let mut t = vertex("global");
        t.express = true;
        t.version = "v1beta1".into();
        assert_eq!(
            t.path("gemini-2.5-flash-image", Method::GenerateContent),
            "/v1beta1/publishers/google/models/gemini-2.5-flash-image:generateContent"
        );
        let dev = Target {
            backend: Backend::GeminiApi,
            base_url: default_base_url(Backend::GeminiApi, "global", false),
            version: "v1beta".into(),
            project: None,
            location: "global".into(),
            express: false,
        };
        assert_eq!(
            dev.url("models/gemini-2.5-flash-image", Method::GenerateContent),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash-image:generateContent"
        );
    }
}
