//! Gemini `Content` / `Part`: the conversation shape used for chat history in job specs
//! and on the `:generateContent` wire.
//!
//! Serialises camelCase (what Google documents); accepts snake_case too, because the
//! official SDK leaks it (`inline_data.mime_type`, spec §3) and proto3 JSON parsers take
//! both.

use serde::{Deserialize, Serialize};

/// One turn of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// `user` or `model`; may be absent on single-turn requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The parts of the turn, in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a turn: text, inline bytes or a file reference, possibly a thought.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Inline bytes (base64 on the wire).
    #[serde(
        default,
        alias = "inline_data",
        skip_serializing_if = "Option::is_none"
    )]
    pub inline_data: Option<Blob>,
    /// A file by URI (`gs://…` on Vertex, Files API URI on the Developer API).
    #[serde(default, alias = "file_data", skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    /// True for thought parts (never outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque signature that must be sent back with the part in later turns.
    #[serde(
        default,
        alias = "thought_signature",
        skip_serializing_if = "Option::is_none"
    )]
    pub thought_signature: Option<String>,
}

/// Inline bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    /// MIME type, e.g. `image/png`.
    #[serde(default, alias = "mime_type")]
    pub mime_type: String,
    /// Base64 data.
    #[serde(default)]
    pub data: String,
}

/// A file reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    /// MIME type.
    #[serde(default, alias = "mime_type", skip_serializing_if = "String::is_empty")]
    pub mime_type: String,
    /// `gs://…` or a Files API URI.
    #[serde(alias = "file_uri")]
    pub file_uri: String,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }

    /// An inline-bytes part.
    pub fn inline(mime_type: impl Into<String>, data_b64: impl Into<String>) -> Self {
        Part {
            inline_data: Some(Blob {
                mime_type: mime_type.into(),
                data: data_b64.into(),
            }),
            ..Part::default()
        }
    }

    /// A file-reference part.
    pub fn file(mime_type: impl Into<String>, uri: impl Into<String>) -> Self {
        Part {
            file_data: Some(FileData {
                mime_type: mime_type.into(),
                file_uri: uri.into(),
            }),
            ..Part::default()
        }
    }

    /// True when this part is a thought (skipped for outputs, spec §4.2).
    pub fn is_thought(&self) -> bool {
        self.thought.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_snake_case_and_writes_camel_case() {
        let part: Part = serde_json::from_str(
            r#"{"inline_data":{"mime_type":"image/png","data":"AA=="},"thought_signature":"c2ln"}"#,
        )
        .unwrap();
        let out = serde_json::to_value(&part).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"inlineData":{"mimeType":"image/png","data":"AA=="},"thoughtSignature":"c2ln"})
        );
    }
}
