//! Proto-strict JSON checking for `GenerateContentRequest` (spec §3/§4): unknown fields
//! are refused with Google's `Unknown name "x" at 'path': Cannot find field.` message,
//! scalar types and enum values are checked, and both camelCase and snake_case names are
//! accepted. The result is the same JSON with every known key in canonical camelCase.
//!
//! Describes the wire schema only; semantic rules (limits per model) live in `gemini`.

use serde_json::{Map, Value};

use crate::emulator::envelope::ApiError;
use crate::emulator::media::decode_b64;

use crate::emulator::call::Surface;
use crate::emulator::gemini::schema::{Field, Kind, REQUEST, Scope};

struct Ctx {
    surface: Surface,
    type_prefix: String,
}

/// Checks a `GenerateContentRequest` against the proto and returns it with canonical
/// camelCase keys (nulls dropped). `version` is the path's API version.
pub fn normalize_generate_content(
    body: &Value,
    surface: Surface,
    version: &str,
) -> Result<Value, ApiError> {
    let type_prefix = match surface {
        Surface::Vertex => format!("type.googleapis.com/google.cloud.aiplatform.{version}."),
        Surface::Developer => {
            format!("type.googleapis.com/google.ai.generativelanguage.{version}.")
        }
    };
    let ctx = Ctx {
        surface,
        type_prefix,
    };
    message(&ctx, body, "GenerateContentRequest", REQUEST, "")
}

fn message(
    ctx: &Ctx,
    value: &Value,
    type_name: &str,
    fields: &[Field],
    path: &str,
) -> Result<Value, ApiError> {
    let Some(obj) = value.as_object() else {
        return Err(invalid_value(
            path,
            &format!("{}{type_name}", ctx.type_prefix),
            value,
        ));
    };
    let mut out = Map::new();
    for (key, v) in obj {
        let field = fields.iter().find(|fd| {
            (fd.camel == key || fd.snake == key)
                && match fd.scope {
                    Scope::All => true,
                    Scope::Vertex => ctx.surface == Surface::Vertex,
                    Scope::Developer => ctx.surface == Surface::Developer,
                }
        });
        let Some(field) = field else {
            return Err(unknown_name(key, path));
        };
        if v.is_null() {
            continue;
        }
        let child = join(path, field.snake);
        let normalized = if field.repeated {
            let Some(items) = v.as_array() else {
                return Err(invalid_value(&child, &type_label(ctx, field.kind), v));
            };
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                list.push(scalar(ctx, field.kind, item, &format!("{child}[{i}]"))?);
            }
            Value::Array(list)
        } else {
            scalar(ctx, field.kind, v, &child)?
        };
        out.insert(field.camel.to_string(), normalized);
    }
    Ok(Value::Object(out))
}

fn scalar(ctx: &Ctx, kind: Kind, v: &Value, path: &str) -> Result<Value, ApiError> {
    let ok = match kind {
        Kind::Msg(name, fields) => return message(ctx, v, name, fields, path),
        Kind::Any => true,
        Kind::Str => v.is_string(),
        Kind::Bool => v.is_boolean(),
        Kind::Int => v.as_i64().is_some() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
        Kind::Float => v.is_number() || v.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
        Kind::Map => v
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        Kind::Bytes => {
            if let Some(s) = v.as_str() {
                if decode_b64(s).is_none() {
                    return Err(ApiError::invalid_json(
                        Some(path),
                        format!(
                            "Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
                            excerpt(s)
                        ),
                    ));
                }
                true
            } else {
                false
            }
        }
        Kind::Enum(_, values) => {
            v.as_str().is_some_and(|s| values.contains(&s))
                || v.as_u64().is_some_and(|n| (n as usize) < values.len())
        }
    };
    if ok {
        Ok(v.clone())
    } else {
        Err(invalid_value(path, &type_label(ctx, kind), v))
    }
}

fn type_label(ctx: &Ctx, kind: Kind) -> String {
    match kind {
        Kind::Str => "TYPE_STRING".into(),
        Kind::Bytes => "TYPE_BYTES".into(),
        Kind::Int => "TYPE_INT32".into(),
        Kind::Float => "TYPE_FLOAT".into(),
        Kind::Bool => "TYPE_BOOL".into(),
        Kind::Map | Kind::Any => "google.protobuf.Struct".into(),
        Kind::Enum(name, _) | Kind::Msg(name, _) => format!("{}{name}", ctx.type_prefix),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

fn unknown_name(key: &str, path: &str) -> ApiError {
    let message = if path.is_empty() {
        format!("Invalid JSON payload received. Unknown name \"{key}\": Cannot find field.")
    } else {
        format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
        )
    };
    ApiError::invalid_json(Some(path), message)
}

fn invalid_value(path: &str, type_label: &str, v: &Value) -> ApiError {
    let shown = match v {
        Value::String(s) => format!("\"{}\"", excerpt(s)),
        other => excerpt(&other.to_string()),
    };
    ApiError::invalid_json(
        Some(path),
        format!("Invalid value at '{path}' ({type_label}), {shown}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_is_accepted_and_canonicalised() {
        let body = json!({"contents": [{"role": "user", "parts": [
            {"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]}],
            "generation_config": {"thinking_config": {"thinking_level": "MINIMAL"}}});
        let out = normalize_generate_content(&body, Surface::Developer, "v1").expect("valid");
        assert_eq!(
            out["contents"][0]["parts"][0]["inlineData"]["mimeType"],
            "image/png"
        );
        assert_eq!(
            out["generationConfig"]["thinkingConfig"]["thinkingLevel"],
            "MINIMAL"
        );
    }

    #[test]
    fn unknown_and_vertex_only_fields_are_refused() {
        let body = json!({"contents": [], "generationConfig": {"foo": 1}});
        let e = normalize_generate_content(&body, Surface::Vertex, "v1").unwrap_err();
        assert_eq!(
            e.message,
            "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field."
        );
        let body = json!({"generationConfig": {"imageConfig": {"personGeneration": "ALLOW_ALL"}}});
        assert!(normalize_generate_content(&body, Surface::Developer, "v1").is_err());
        assert!(normalize_generate_content(&body, Surface::Vertex, "v1").is_ok());
    }

    #[test]
    fn enum_and_type_errors_name_the_path() {
        let body = json!({"generationConfig": {"responseModalities": ["IMAGE", "SMELL"]}});
        let e = normalize_generate_content(&body, Surface::Vertex, "v1beta1").unwrap_err();
        assert!(
            e.message
                .starts_with("Invalid value at 'generation_config.response_modalities[1]'"),
            "{}",
            e.message
        );
        let body = json!({"generationConfig": {"candidateCount": "two"}});
        let e = normalize_generate_content(&body, Surface::Vertex, "v1").unwrap_err();
        assert!(e.message.contains("(TYPE_INT32)"), "{}", e.message);
    }
}
