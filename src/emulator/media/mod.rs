//! Input media handling shared by both wire paths: lenient base64 (proto3 JSON accepts
//! standard or URL-safe, padded or not), MIME checks and reading image dimensions.
//!
//! Only inspects bytes; never renders output images (that is `synth`).

pub(super) mod synth;

use std::io::Cursor;

pub use crate::catalog::INPUT_MIME_TYPES;

/// Decodes base64 in any of the alphabets/padding styles proto3 JSON parsers accept.
pub fn decode_b64(data: &str) -> Option<Vec<u8>> {
    crate::job::image::decode_base64(data).ok()
}

/// Image format detected from magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP (dimensions not read).
    Webp,
    /// HEIC/HEIF (dimensions not read).
    Heif,
}

/// Detects the image format from magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<Sniffed> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Sniffed::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(Sniffed::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Sniffed::Webp)
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Some(Sniffed::Heif)
    } else {
        None
    }
}

/// Result of inspecting an input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    /// Detected format.
    pub format: Sniffed,
    /// `(width, height)` when the header could be read (PNG/JPEG).
    pub dims: Option<(u32, u32)>,
}

/// Reads the format and, for PNG/JPEG, the dimensions from the header; `None` when the
/// bytes are not an image.
pub fn inspect(bytes: &[u8]) -> Option<Inspected> {
    let format = sniff(bytes)?;
    let dims = match format {
        Sniffed::Png | Sniffed::Jpeg => {
            let reader = image::ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .ok()?;
            Some(reader.into_dimensions().ok()?)
        }
        Sniffed::Webp | Sniffed::Heif => None,
    };
    Some(Inspected { format, dims })
}

pub use crate::catalog::nearest_ratio;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_every_proto3_variant() {
        for s in ["+/8=", "+/8", "-_8=", "-_8"] {
            assert_eq!(decode_b64(s), Some(vec![0xfb, 0xff]), "{s}");
        }
        assert_eq!(decode_b64("not base64!"), None);
    }

    #[test]
    fn nearest_ratio_keeps_the_shape() {
        assert_eq!(
            nearest_ratio(1920, 1080, &["1:1", "16:9", "4:3"]),
            Some("16:9")
        );
        assert_eq!(nearest_ratio(2, 2, &["1:1", "16:9"]), Some("1:1"));
    }
}
