//! The Developer API's Files API, as far as batches need it: resumable uploads
//! (`POST /upload/{ver}/files` with `X-Goog-Upload-Command: start`, then the bytes in
//! `upload` chunks and an `upload, finalize`, answered with `x-goog-upload-status`),
//! `GET /{ver}/files/{id}`, `DELETE`, and `GET /download/{ver}/files/{id}:download`.
//! A batch's output file is written here too.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::emulator::envelope::ApiError;
use crate::emulator::routes::Route;
use crate::emulator::state::{AppState, StoredFile};

/// Files are kept this long (the Files API's 48 hours).
const RETENTION_S: i64 = 48 * 3600;

/// A `File` resource for `bytes` under `id`.
pub fn resource(id: &str, mime: &str, display_name: &str, size: usize) -> Value {
    let now = chrono::Utc::now();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let expires = (now + chrono::Duration::seconds(RETENTION_S))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "name": format!("files/{id}"),
        "displayName": display_name,
        "mimeType": mime,
        "sizeBytes": size.to_string(),
        "createTime": ts,
        "updateTime": ts,
        "expirationTime": expires,
        "sha256Hash": "",
        "uri": format!("https://generativelanguage.googleapis.com/v1beta/files/{id}"),
        "state": "ACTIVE",
        "source": "UPLOADED",
    })
}

/// Stores a file the emulator wrote (a batch's output) and returns its name.
pub fn store(state: &AppState, project: &str, id: &str, mime: &str, bytes: Vec<u8>) -> String {
    let resource = resource(id, mime, id, bytes.len());
    let name = format!("files/{id}");
    state.files().stored.insert(
        id.to_string(),
        StoredFile {
            project: project.to_string(),
            resource,
            bytes,
        },
    );
    name
}

/// The bytes of `name` (`files/<id>`) when `project` owns it.
pub fn bytes_of(state: &AppState, project: &str, name: &str) -> Option<Vec<u8>> {
    let id = name.strip_prefix("files/").unwrap_or(name);
    state
        .files()
        .stored
        .get(id)
        .filter(|f| f.project == project)
        .map(|f| f.bytes.clone())
}

fn not_found() -> ApiError {
    ApiError::not_found("Requested entity was not found.")
}

fn upload_status(status: &'static str, body: Value, url: Option<String>) -> Response {
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert("x-goog-upload-status", HeaderValue::from_static(status));
    if let Some(url) = url.and_then(|u| HeaderValue::from_str(&u).ok()) {
        resp.headers_mut().insert("x-goog-upload-url", url);
    }
    resp
}

/// Answers a Files API route.
pub fn handle(
    state: &AppState,
    route: Route,
    project: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let result = match route {
        Route::FileUpload(version) => {
            return upload(state, &version, project, headers, query, body);
        }
        Route::FileGet(_, id) => state
            .files()
            .stored
            .get(&id)
            .filter(|f| f.project == project)
            .map(|f| axum::Json(f.resource.clone()).into_response())
            .ok_or_else(not_found),
        Route::FileDelete(_, id) => {
            let mut files = state.files();
            match files.stored.get(&id) {
                Some(f) if f.project == project => {
                    files.stored.remove(&id);
                    Ok(axum::Json(json!({})).into_response())
                }
                _ => Err(not_found()),
            }
        }
        Route::FileDownload(_, id) => state
            .files()
            .stored
            .get(&id)
            .filter(|f| f.project == project)
            .map(|f| {
                let mime = f.resource["mimeType"]
                    .as_str()
                    .unwrap_or("application/octet-stream");
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, mime.to_string())],
                    f.bytes.clone(),
                )
                    .into_response()
            })
            .ok_or_else(not_found),
        _ => Err(not_found()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The resumable protocol: `start` answers the upload URL; `upload` appends a chunk at
/// its offset; `finalize` (with or after the last chunk) stores the file.
fn upload(
    state: &AppState,
    version: &str,
    project: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let command = headers
        .get("x-goog-upload-command")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let Some(upload_id) = query.get("upload_id") else {
        if !command.contains("start") {
            return ApiError::new(
                400,
                "Uploads must use the resumable protocol (X-Goog-Upload-Command: start).",
            )
            .into_response();
        }
        let meta: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let file = meta.get("file").cloned().unwrap_or(json!({}));
        let mime = headers
            .get("x-goog-upload-header-content-type")
            .and_then(|v| v.to_str().ok())
            .or_else(|| file.get("mimeType").and_then(Value::as_str))
            .unwrap_or("application/octet-stream")
            .to_string();
        let mut file = file;
        file["mimeType"] = json!(mime);
        let id = format!("{:016x}", state.random_u64());
        state
            .files()
            .uploads
            .insert(id.clone(), (project.to_string(), file, Vec::new()));
        let url = format!(
            "{}/upload/{version}/files?upload_id={id}&upload_protocol=resumable",
            state.base_url()
        );
        return upload_status("active", json!({}), Some(url));
    };
    let mut files = state.files();
    let offset: usize = headers
        .get("x-goog-upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let Some((owner, file, bytes)) = files.uploads.get_mut(upload_id) else {
        return ApiError::not_found("No such upload.").into_response();
    };
    if owner != project {
        return ApiError::not_found("No such upload.").into_response();
    }
    if offset != bytes.len() {
        let message = format!(
            "Upload offset {offset} does not match the {} bytes received.",
            bytes.len()
        );
        return ApiError::new(400, message).into_response();
    }
    bytes.extend_from_slice(body);
    if !command.contains("finalize") {
        return upload_status("active", json!({}), None);
    }
    let mime = file["mimeType"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let display = file["displayName"].as_str().unwrap_or("");
    let resource = resource(upload_id, mime, display, bytes.len());
    let bytes = std::mem::take(bytes);
    files.uploads.remove(upload_id);
    files.stored.insert(
        upload_id.clone(),
        StoredFile {
            project: project.to_string(),
            resource: resource.clone(),
            bytes,
        },
    );
    upload_status("final", json!({"file": resource}), None)
}
