//! Path parsing for the Google API surface (spec §1). axum cannot split `{model}:{method}`
//! inside one segment, so every API path goes through this parser from a fallback route.
//!
//! Maps a method + path to a `Route`; it does no auth and reads no body.

use axum::http::Method;

use crate::emulator::call::Surface;

/// A recognised API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST …/models/{model}:{method}`.
    Model(ModelTarget),
    /// `POST /{ver}/projects/{p}/locations/{l}/batchPredictionJobs`.
    VertexBatchCreate(VertexLoc),
    /// `GET …/batchPredictionJobs/{id}`.
    VertexBatchGet(VertexLoc, String),
    /// `POST …/batchPredictionJobs/{id}:cancel`.
    VertexBatchCancel(VertexLoc, String),
    /// `GET /{ver}/batches/{id}`.
    DevBatchGet(String, String),
    /// `POST /{ver}/batches/{id}:cancel`.
    DevBatchCancel(String, String),
    /// `DELETE /{ver}/batches/{id}`.
    DevBatchDelete(String, String),
    /// `POST /upload/{ver}/files`: a resumable upload's start, or (with `upload_id`)
    /// its bytes.
    FileUpload(String),
    /// `GET /{ver}/files/{id}`.
    FileGet(String, String),
    /// `DELETE /{ver}/files/{id}`.
    FileDelete(String, String),
    /// `GET /download/{ver}/files/{id}:download` (or without `/download`).
    FileDownload(String, String),
}

/// Version, project and location of a Vertex path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexLoc {
    /// API version.
    pub version: String,
    /// Project id.
    pub project: String,
    /// Location.
    pub location: String,
}

/// A model method call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTarget {
    /// API surface.
    pub surface: Surface,
    /// Vertex express mode (no project in the path).
    pub express: bool,
    /// API version.
    pub version: String,
    /// Project from the path (Vertex project paths only).
    pub project: Option<String>,
    /// Location (`global` when the path has none).
    pub location: String,
    /// Publisher (`google`).
    pub publisher: String,
    /// Model id.
    pub model: String,
    /// Method after the colon.
    pub method: String,
}

const VERTEX_VERSIONS: &[&str] = &["v1", "v1beta1"];
const DEV_VERSIONS: &[&str] = &["v1", "v1beta", "v1alpha"];

fn model_method(seg: &str) -> Option<(String, String)> {
    let (model, method) = seg.rsplit_once(':')?;
    (!model.is_empty() && !method.is_empty()).then(|| (model.to_string(), method.to_string()))
}

fn model_route(
    surface: Surface,
    version: &str,
    project: Option<&str>,
    location: Option<&str>,
    publisher: &str,
    segment: &str,
) -> Option<Route> {
    let (model, method) = model_method(segment)?;
    Some(Route::Model(ModelTarget {
        surface,
        express: surface == Surface::Vertex && project.is_none(),
        version: version.to_string(),
        project: project.map(str::to_string),
        location: location.unwrap_or("global").to_string(),
        publisher: publisher.to_string(),
        model,
        method,
    }))
}

/// Parses an API path; `None` for anything Google would not serve.
pub fn parse(method: &Method, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let post = method == Method::POST;
    let vertex = |v: &&str| VERTEX_VERSIONS.contains(v);
    match segs.as_slice() {
        [
            v,
            "projects",
            p,
            "locations",
            l,
            "publishers",
            publisher,
            "models",
            mm,
        ] if post && vertex(v) => model_route(Surface::Vertex, v, Some(p), Some(l), publisher, mm),
        [v, "publishers", publisher, "models", mm] if post && vertex(v) => {
            model_route(Surface::Vertex, v, None, None, publisher, mm)
        }
        [v, "models", mm] if post && DEV_VERSIONS.contains(v) => {
            model_route(Surface::Developer, v, None, None, "google", mm)
        }
        [
            v,
            "projects",
            p,
            "locations",
            l,
            "batchPredictionJobs",
            rest @ ..,
        ] if vertex(v) => {
            let loc = VertexLoc {
                version: v.to_string(),
                project: p.to_string(),
                location: l.to_string(),
            };
            vertex_batch(method, loc, rest)
        }
        [v, "batches", id] if DEV_VERSIONS.contains(v) => dev_batch(method, v, id),
        ["upload", v, "files"] if post && DEV_VERSIONS.contains(v) => {
            Some(Route::FileUpload(v.to_string()))
        }
        // The SDK downloads from `/{ver}/files/{id}:download`, Google's docs from
        // `/download/{ver}/files/{id}:download`: both are served.
        [v, "files", id]
            if DEV_VERSIONS.contains(v) && method == Method::GET && id.ends_with(":download") =>
        {
            Some(Route::FileDownload(
                v.to_string(),
                id.trim_end_matches(":download").to_string(),
            ))
        }
        [v, "files", id] if DEV_VERSIONS.contains(v) && !id.contains(':') => match *method {
            Method::GET => Some(Route::FileGet(v.to_string(), id.to_string())),
            Method::DELETE => Some(Route::FileDelete(v.to_string(), id.to_string())),
            _ => None,
        },
        ["download", v, "files", id] if method == Method::GET && DEV_VERSIONS.contains(v) => {
            let id = id.strip_suffix(":download")?;
            Some(Route::FileDownload(v.to_string(), id.to_string()))
        }
        _ => None,
    }
}

fn vertex_batch(method: &Method, loc: VertexLoc, rest: &[&str]) -> Option<Route> {
    match (method, rest) {
        (&Method::POST, []) => Some(Route::VertexBatchCreate(loc)),
        (&Method::GET, [id]) if !id.contains(':') => {
            Some(Route::VertexBatchGet(loc, id.to_string()))
        }
        (&Method::POST, [id]) => {
            let (id, action) = id.split_once(':')?;
            (action == "cancel").then(|| Route::VertexBatchCancel(loc, id.to_string()))
        }
        _ => None,
    }
}

fn dev_batch(method: &Method, version: &str, id: &str) -> Option<Route> {
    match *method {
        Method::GET if !id.contains(':') => Some(Route::DevBatchGet(version.into(), id.into())),
        Method::DELETE => Some(Route::DevBatchDelete(version.into(), id.into())),
        Method::POST => {
            let (id, action) = id.split_once(':')?;
            (action == "cancel").then(|| Route::DevBatchCancel(version.into(), id.into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_paths_parse() {
        let r = parse(
            &Method::POST,
            "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash-image:generateContent",
        );
        let Some(Route::Model(t)) = r else {
            panic!("model route")
        };
        assert_eq!(
            (t.model.as_str(), t.method.as_str(), t.express),
            ("gemini-2.5-flash-image", "generateContent", false)
        );
        let Some(Route::Model(t)) =
            parse(&Method::POST, "/v1/models/imagen-4.0-generate-001:predict")
        else {
            panic!("dev")
        };
        assert_eq!(t.surface, Surface::Developer);
        let Some(Route::Model(t)) =
            parse(&Method::POST, "/v1beta1/publishers/google/models/m:predict")
        else {
            panic!("express")
        };
        assert!(t.express);
        assert_eq!(
            parse(&Method::GET, "/v1/batches/abc"),
            Some(Route::DevBatchGet("v1".into(), "abc".into()))
        );
        assert!(parse(&Method::POST, "/v2/models/m:generateContent").is_none());
        assert!(
            parse(
                &Method::POST,
                "/v1beta/projects/p/locations/l/publishers/google/models/m:predict"
            )
            .is_none()
        );
    }
}
