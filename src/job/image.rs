//! Input images: how a job names one (inline base64, local path, or a `gs://`, `s3://`,
//! `az://`, `https://` URL), MIME sniffing, and resolution to bytes before a provider
//! call.
//!
//! Resolution reads local files and object stores; it must not know about providers'
//! wire formats (a `gs://` image stays a reference so Vertex can read it itself).

use std::path::PathBuf;

use base64::Engine as _;

pub use crate::catalog::INPUT_MIME_TYPES;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where an input image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Base64 bytes in the spec itself.
    Inline(String),
    /// A local file.
    Path(PathBuf),
    /// A `gs://`, `s3://`, `az://`, `http(s)://` URL.
    Url(String),
    /// An object of the project's own output store, by key (`inputs/<sha256>.png`):
    /// what a producer turns a local path or an upload into, so a worker on any
    /// machine reads it (through the store) and never opens a path of its own disk.
    Stored(String),
    /// Image `index` of another job's outputs (`{"output_of": id, "index": n}`), e.g. a
    /// story's previous frame: the worker reads that job's record when it runs (the job
    /// waits for it as a dependency).
    Output {
        /// The job.
        job: String,
        /// Which of its images (0-based).
        index: usize,
    },
}

/// An input image with an optional declared MIME type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// Where the bytes are.
    pub source: ImageSource,
    /// Declared MIME type; sniffed from the bytes when absent.
    pub mime_type: Option<String>,
}

impl ImageInput {
    /// Parses the string form: `data:<mime>;base64,<b64>`, a URL, `file://…` or a path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty image reference".into());
        }
        if let Some(rest) = s.strip_prefix("data:") {
            let (meta, data) = rest
                .split_once(',')
                .ok_or("a data: URL needs `data:<mime>;base64,<data>`")?;
            let mime = meta
                .strip_suffix(";base64")
                .ok_or("a data: URL must be base64 (`;base64,`)")?;
            return Ok(ImageInput {
                source: ImageSource::Inline(data.to_string()),
                mime_type: (!mime.is_empty()).then(|| mime.to_string()),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Self::from_source(ImageSource::Path(path.into())));
        }
        for scheme in ["gs://", "s3://", "az://", "abfs://", "https://", "http://"] {
            if s.starts_with(scheme) {
                url::Url::parse(s).map_err(|e| format!("invalid URL `{s}`: {e}"))?;
                return Ok(Self::from_source(ImageSource::Url(s.to_string())));
            }
        }
        if s.contains("://") {
            return Err(format!(
                "unsupported URL scheme in `{s}` (use gs://, s3://, az://, https://, file:// or a path)"
            ));
        }
        Ok(Self::from_source(ImageSource::Path(s.into())))
    }

    fn from_source(source: ImageSource) -> Self {
        ImageInput {
            source,
            mime_type: None,
        }
    }

    /// Inline bytes with a MIME type.
    pub fn inline_bytes(bytes: &[u8], mime_type: &str) -> Self {
        ImageInput {
            source: ImageSource::Inline(base64::engine::general_purpose::STANDARD.encode(bytes)),
            mime_type: Some(mime_type.to_string()),
        }
    }

    /// True for `gs://` references (Vertex reads those itself).
    pub fn gcs_uri(&self) -> Option<&str> {
        match &self.source {
            ImageSource::Url(u) if u.starts_with("gs://") => Some(u),
            _ => None,
        }
    }
}

/// Decodes base64 the way proto3 JSON parsers do: standard or URL-safe, padded or not.
pub fn decode_base64(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::{
        STANDARD_NO_PAD_INDIFFERENT, URL_SAFE_NO_PAD_INDIFFERENT,
    };
    let trimmed = data.trim();
    if trimmed.contains(['-', '_']) {
        URL_SAFE_NO_PAD_INDIFFERENT.decode(trimmed)
    } else {
        STANDARD_NO_PAD_INDIFFERENT.decode(trimmed)
    }
}

/// Sniffs an image MIME type from magic bytes.
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"heic" | b"heix" | b"hevc" | b"heim" | b"heis" => Some("image/heic"),
            b"mif1" | b"msf1" => Some("image/heif"),
            _ => None,
        }
    } else {
        None
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a std::path::Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<&'a str>,
}

impl Serialize for ImageInput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut w = Wire {
            data: None,
            path: None,
            url: None,
            stored: None,
            output_of: None,
            index: None,
            mime_type: self.mime_type.as_deref(),
        };
        match &self.source {
            ImageSource::Inline(d) => w.data = Some(d),
            ImageSource::Path(p) => w.path = Some(p),
            ImageSource::Url(u) => w.url = Some(u),
            ImageSource::Stored(k) => w.stored = Some(k),
            ImageSource::Output { job, index } => {
                w.output_of = Some(job);
                w.index = Some(*index);
            }
        }
        w.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ImageInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        match value {
            serde_json::Value::String(s) => ImageInput::parse(&s).map_err(D::Error::custom),
            serde_json::Value::Object(map) => from_object(map).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "an image is a string (path, URL or data: URL) or an object with one of `data`, `path`, `url`; got {other}"
            ))),
        }
    }
}

fn from_object(mut map: serde_json::Map<String, serde_json::Value>) -> Result<ImageInput, String> {
    let mut source = None;
    let mut mime_type = None;
    let index = match map.remove("index") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| format!("image `index` must be a whole number, got {v}"))?
                as usize,
        ),
    };
    if index.is_some() && !map.contains_key("output_of") {
        return Err("image `index` goes with `output_of`".into());
    }
    for (key, value) in map {
        let text = value
            .as_str()
            .ok_or_else(|| format!("image field `{key}` must be a string"))?
            .to_string();
        let next = match key.as_str() {
            "data" | "bytes_base64_encoded" | "bytesBase64Encoded" => ImageSource::Inline(text),
            "path" => ImageSource::Path(text.into()),
            "stored" => {
                if text.is_empty() || text.starts_with('/') || text.split('/').any(|s| s == "..") {
                    return Err(format!(
                        "image `stored` is a key inside the project's output store, got `{text}`"
                    ));
                }
                ImageSource::Stored(text)
            }
            "url" | "uri" | "gcs_uri" | "gcsUri" => match ImageInput::parse(&text)?.source {
                ImageSource::Url(u) => ImageSource::Url(u),
                _ => return Err(format!("image `{key}` must be a URL, got `{text}`")),
            },
            "output_of" if !text.is_empty() => ImageSource::Output {
                job: text,
                index: index.unwrap_or(0),
            },
            "mime_type" | "mimeType" => {
                mime_type = Some(text);
                continue;
            }
            other => {
                return Err(format!(
                    "unknown image field `{other}` (expected `data`, `path`, `url`, `stored`, `output_of`, `mime_type`)"
                ));
            }
        };
        if source.replace(next).is_some() {
            return Err(
                "an image takes exactly one of `data`, `path`, `url`, `stored`, `output_of`".into(),
            );
        }
    }
    let source =
        source.ok_or("an image needs one of `data`, `path`, `url`, `stored`, `output_of`")?;
    Ok(ImageInput { source, mime_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_parse_to_their_source() {
        assert_eq!(
            ImageInput::parse("gs://b/o.png").unwrap().source,
            ImageSource::Url("gs://b/o.png".into())
        );
        assert_eq!(
            ImageInput::parse("./a.png").unwrap().source,
            ImageSource::Path("./a.png".into())
        );
        let d = ImageInput::parse("data:image/png;base64,AAAA").unwrap();
        assert_eq!(d.mime_type.as_deref(), Some("image/png"));
        assert!(ImageInput::parse("ftp://x/y").is_err());
    }

    #[test]
    fn object_form_refuses_two_sources_and_unknown_fields() {
        let two: Result<ImageInput, _> = serde_json::from_str(r#"{"data":"AA","path":"x"}"#);
        assert!(two.unwrap_err().to_string().contains("exactly one"));
        let unknown: Result<ImageInput, _> = serde_json::from_str(r#"{"bytes":"AA"}"#);
        assert!(unknown.unwrap_err().to_string().contains("`bytes`"));
    }

    #[test]
    fn base64_variants_decode() {
        assert_eq!(decode_base64("_-8").unwrap(), vec![0xff, 0xef]);
        assert_eq!(decode_base64("/+8=").unwrap(), vec![0xff, 0xef]);
        assert_eq!(decode_base64("/+8").unwrap(), vec![0xff, 0xef]);
    }
}
