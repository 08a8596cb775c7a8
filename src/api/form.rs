//! A request's fields and files, whatever the client sent: a JSON object, a multipart
//! form (Python `requests` with `files=`), or a urlencoded form (`data=` alone). Form
//! values are text; those that are clearly booleans or numbers (`True`, `0.7`) become
//! JSON booleans and numbers, except in fields that are text by nature (a prompt of
//! "42" stays a string). Files are read with a per-file limit (413 naming the field).

use axum::extract::{FromRequest as _, Multipart, Request};
use axum::http::header;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Fields that are always text.
const TEXT_FIELDS: &[&str] = &[
    "prompt",
    "model",
    "aspect_ratio",
    "image_size",
    "composition_style",
    "webhook_url",
    "style",
    "region_description",
    "negative_prompt",
    "system_instruction",
    "system_prompt",
    "message",
    "description",
    "content_type",
];
/// Fields a form may repeat, collected into a list.
const LIST_FIELDS: &[&str] = &["response_modalities", "direction"];

/// One uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The form field it came in.
    pub field: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The declared content type.
    pub content_type: Option<String>,
}

/// What a request carried.
#[derive(Debug, Default)]
pub struct Form {
    /// Its fields.
    pub fields: Map<String, Value>,
    /// Its files, in order.
    pub files: Vec<Upload>,
}

fn typed(key: &str, text: String) -> Value {
    if TEXT_FIELDS.contains(&key) {
        return Value::String(text);
    }
    match text.as_str() {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        t => t
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| t.parse::<f64>().map(Value::from))
            .unwrap_or(Value::String(text)),
    }
}

impl Form {
    fn push_text(&mut self, key: String, text: String) {
        let value = typed(&key, text);
        if LIST_FIELDS.contains(&key.as_str()) {
            let list = self
                .fields
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(value);
            }
        } else {
            self.fields.insert(key, value);
        }
    }

    /// Reads `req`, files at most `max_file` bytes each.
    pub async fn read(req: Request, max_file: u64) -> Result<Form, ApiError> {
        let kind = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if kind.starts_with("multipart/form-data") {
            return Self::multipart(req, max_file).await;
        }
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(body_error)?;
        if kind.starts_with("application/x-www-form-urlencoded") {
            let mut form = Form::default();
            for (k, v) in url::form_urlencoded::parse(&body) {
                form.push_text(k.into_owned(), v.into_owned());
            }
            return Ok(form);
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
        match value {
            Value::Object(fields) => Ok(Form {
                fields,
                files: Vec::new(),
            }),
            _ => Err(ApiError::invalid("the body must be a JSON object")),
        }
    }

    async fn multipart(req: Request, max_file: u64) -> Result<Form, ApiError> {
        let mut parts = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::invalid(format!("not a multipart form: {e}")))?;
        let mut form = Form::default();
        while let Some(mut field) = parts.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            if field.file_name().is_none() {
                let text = field.text().await.map_err(multipart_error)?;
                form.push_text(name, text);
                continue;
            }
            let content_type = field.content_type().map(str::to_string);
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if (bytes.len() + chunk.len()) as u64 > max_file {
                    // Count the rest, so the client learns how big the file was.
                    let mut size = (bytes.len() + chunk.len()) as u64;
                    while let Ok(Some(c)) = field.chunk().await {
                        size += c.len() as u64;
                    }
                    return Err(ApiError::too_large(&name, size, max_file));
                }
                bytes.extend_from_slice(&chunk);
            }
            // An empty file part is what a browser sends for a file input left empty.
            if !bytes.is_empty() {
                form.files.push(Upload {
                    field: name,
                    bytes,
                    content_type,
                });
            }
        }
        Ok(form)
    }

    /// Removes and returns field `key`.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.fields.remove(key)
    }

    /// The files sent as `field`.
    pub fn files_of(&mut self, field: &str) -> Vec<Upload> {
        let (mine, rest) = std::mem::take(&mut self.files)
            .into_iter()
            .partition(|f| f.field == field);
        self.files = rest;
        mine
    }
}

fn body_error(e: axum::Error) -> ApiError {
    ApiError::too_large("body", 0, 0)
        .with_details(Value::Null)
        .with_message(e.to_string())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("body", 0, 0)
            .with_details(Value::Null)
            .with_message(e.body_text())
    } else {
        ApiError::invalid(format!("malformed multipart form: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_typed_except_text_fields() {
        assert_eq!(typed("preserve_subject", "True".into()), Value::Bool(true));
        assert_eq!(typed("edit_strength", "0.7".into()), Value::from(0.7));
        assert_eq!(typed("number_of_images", "2".into()), Value::from(2));
        assert_eq!(typed("prompt", "42".into()), Value::from("42"));
        assert_eq!(
            typed("composition_style", "blend".into()),
            Value::from("blend")
        );
        assert_eq!(typed("prompt", "null".into()), Value::from("null"));
        let mut f = Form::default();
        f.push_text("direction".into(), "top".into());
        f.push_text("direction".into(), "right".into());
        assert_eq!(f.fields["direction"], serde_json::json!(["top", "right"]));
    }
}
