//! JobSpec → the exact HTTP request Google expects (method, path, JSON body, headers).
//!
//! Pure functions: inputs must already be resolved (every image inline or a `gs://`
//! reference, see `providers::inputs`). Only fields the job sets are sent, so a job
//! written like an SDK call produces the SDK's body byte for byte (the golden tests hold
//! this against `spec/captures`). Bodies are camelCase (spec §3).

mod gemini;
mod imagen;
mod plan;
mod segment;

pub use plan::schema as plan_schema;

use serde_json::{Map, Value};

use crate::catalog::{self, Family};
use crate::job::JobSpec;
use crate::job::image::{ImageInput, ImageSource};
use crate::job::spec::Tier;

use super::endpoint::{Method, Target};
use super::response::ResponseKind;

/// One request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WireRequest {
    /// The API method.
    pub method: Method,
    /// What the response must carry (decides how it is classified).
    pub reply: ResponseKind,
    /// Full URL.
    pub url: String,
    /// Path with leading slash (for logs and golden tests).
    pub path: String,
    /// JSON body.
    pub body: Value,
    /// Extra headers (`X-Server-Timeout`).
    pub headers: Vec<(String, String)>,
}

/// Why a request could not be built (a bug upstream: validation or resolution missed it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The model is unknown.
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    /// An image was not resolved before building.
    #[error("{0}: image not resolved to inline bytes or gs:// before the call")]
    Unresolved(String),
    /// The operation does not exist for this model family.
    #[error("model `{model}` cannot run `{op}`")]
    Unsupported {
        /// Model id.
        model: String,
        /// Operation.
        op: String,
    },
}

/// Builds the request for `spec` against `target`.
pub fn build(spec: &JobSpec, target: &Target) -> Result<WireRequest, BuildError> {
    let model = catalog::lookup_or_infer(&spec.model)
        .ok_or_else(|| BuildError::UnknownModel(spec.model.clone()))?;
    let (method, reply, body) = match model.family {
        Family::GeminiImage => (
            Method::GenerateContent,
            ResponseKind::Content,
            gemini::body(spec, target)?,
        ),
        Family::GeminiText if spec.op == crate::job::Operation::Plan => (
            Method::GenerateContent,
            ResponseKind::Plan(spec.frames.unwrap_or(1)),
            plan::body(spec, target),
        ),
        Family::GeminiText => {
            let (body, reply) = segment::body(spec, target)?;
            (Method::GenerateContent, reply, body)
        }
        Family::Segmentation => (
            Method::Predict,
            ResponseKind::Masks,
            imagen::body(spec, model.family, target)?,
        ),
        family => (
            Method::Predict,
            ResponseKind::Images,
            imagen::body(spec, family, target)?,
        ),
    };
    let mut body = body;
    let mut headers = Vec::new();
    if let Some(t) = spec.timeout_s {
        headers.push(("X-Server-Timeout".to_string(), t.to_string()));
    }
    // Flex and Priority (spec §11): the Developer API takes `serviceTier` at the top of
    // the request (as the SDK sends it), Vertex a request-type header.
    if let Some(tier @ (Tier::Flex | Tier::Priority)) = spec.tier
        && model.family.is_generate_content()
    {
        match target.backend {
            crate::catalog::Backend::GeminiApi => {
                body["serviceTier"] = Value::from(tier.as_str());
            }
            crate::catalog::Backend::Vertex => headers.push((
                "X-Vertex-AI-LLM-Shared-Request-Type".to_string(),
                tier.as_str().to_string(),
            )),
        }
    }
    Ok(WireRequest {
        method,
        reply,
        url: target.url(&spec.model, method),
        path: target.path(&spec.model, method),
        body,
        headers,
    })
}

/// A JSON object that only keeps what is set.
#[derive(Default)]
pub(crate) struct Obj(Map<String, Value>);

impl Obj {
    pub(crate) fn new() -> Self {
        Obj(Map::new())
    }
    /// Sets `key` when `value` is `Some`.
    pub(crate) fn opt<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(key.to_string(), v.into());
        }
        self
    }
    /// Sets `key` when `value` is a non-empty object.
    pub(crate) fn nested(&mut self, key: &str, value: Obj) -> &mut Self {
        if !value.0.is_empty() {
            self.0.insert(key.to_string(), Value::Object(value.0));
        }
        self
    }
    /// Sets `key` unconditionally.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.0.insert(key.to_string(), value.into());
        self
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A resolved image: inline base64 with its MIME type, or a `gs://` URI.
pub(crate) enum Resolved<'a> {
    Inline { data: &'a str, mime: String },
    Gcs { uri: &'a str, mime: Option<&'a str> },
}

pub(crate) fn resolved<'a>(field: &str, img: &'a ImageInput) -> Result<Resolved<'a>, BuildError> {
    match &img.source {
        ImageSource::Inline(data) => {
            let mime = match &img.mime_type {
                Some(m) => m.clone(),
                None => crate::job::image::decode_base64(data)
                    .ok()
                    .and_then(|b| crate::job::image::sniff_mime(&b))
                    .unwrap_or("image/png")
                    .to_string(),
            };
            Ok(Resolved::Inline { data, mime })
        }
        ImageSource::Url(u) if u.starts_with("gs://") => Ok(Resolved::Gcs {
            uri: u,
            mime: img.mime_type.as_deref(),
        }),
        _ => Err(BuildError::Unresolved(field.to_string())),
    }
}

/// `labels` at the top level of Vertex bodies.
pub(crate) fn labels(spec: &JobSpec) -> Option<Value> {
    (!spec.labels.is_empty()).then(|| serde_json::to_value(&spec.labels).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests;
