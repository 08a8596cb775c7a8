//! Image synthesis: deterministic, cheap PNG/JPEG pictures (and grayscale masks) whose
//! colours come from a hash of the request, cached by key in a bounded cache.
//!
//! A picture shows what happened ([`Look`]): its caption (the prompt's first words, the
//! model and the seed, in an 8×8 bitmap font scaled to the picture) tells frames apart
//! at a glance, and one made from an input image derives from it visibly: an edit,
//! composition or chat turn has the input scaled into its frame and tinted, an upscale
//! is the input resampled, an outpaint keeps the input at the centre of a wider canvas,
//! a segmentation mask is the input's bright pixels.
//!
//! Cheap matters: tests push thousands of requests. Rows are built once per band of
//! identical rows and copied, so the per-pixel work is tiny; the PNG uses fast deflate.
//! The caller folds an input image into the key's seed, so equal keys still render
//! equal bytes and the cache stays correct.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use sha2::{Digest, Sha256};

/// Output encoding of a synthesised image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// RGB PNG.
    Png,
    /// RGB JPEG at the given quality (1..=100).
    Jpeg(u8),
    /// 8-bit grayscale PNG (segmentation masks).
    MaskPng,
}

impl Encoding {
    /// MIME type of the encoded bytes.
    pub fn mime(self) -> &'static str {
        match self {
            Encoding::Jpeg(_) => "image/jpeg",
            Encoding::Png | Encoding::MaskPng => "image/png",
        }
    }

    /// File extension for `gcsUri` / `fileUri` outputs.
    pub fn ext(self) -> &'static str {
        match self {
            Encoding::Jpeg(_) => "jpg",
            Encoding::Png | Encoding::MaskPng => "png",
        }
    }
}

/// What to draw: the seed decides every colour, so equal keys give equal bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageKey {
    /// Hash of model, prompt, seed and sample index.
    pub seed: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Encoding.
    pub encoding: Encoding,
}

/// Hashes the parts that make an image unique into a seed.
pub fn seed_of(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

/// A bounded cache of base64-encoded images.
pub struct ImageCache {
    inner: Mutex<CacheInner>,
    max_bytes: usize,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<ImageKey, Arc<String>>,
    order: VecDeque<ImageKey>,
    bytes: usize,
}

impl ImageCache {
    /// A cache holding at most `max_bytes` of base64 text.
    pub fn new(max_bytes: usize) -> Self {
        ImageCache {
            inner: Mutex::new(CacheInner::default()),
            max_bytes,
        }
    }

    /// The base64 encoding of the image for `key`, rendering it on a miss.
    pub fn get_base64(&self, key: ImageKey) -> Result<Arc<String>, String> {
        self.get_base64_with(key, &Look::default())
    }

    /// The same for a picture with a caption or an input (`look` must follow from the
    /// key's seed: it is not part of the key).
    pub fn get_base64_with(&self, key: ImageKey, look: &Look) -> Result<Arc<String>, String> {
        if let Some(hit) = self.lock().map.get(&key) {
            return Ok(hit.clone());
        }
        let bytes = render_with(key, look)?;
        let b64 = Arc::new(base64::engine::general_purpose::STANDARD.encode(bytes));
        let mut inner = self.lock();
        if b64.len() <= self.max_bytes && !inner.map.contains_key(&key) {
            inner.bytes += b64.len();
            inner.map.insert(key, b64.clone());
            inner.order.push_back(key);
            while inner.bytes > self.max_bytes {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                if let Some(v) = inner.map.remove(&old) {
                    inner.bytes -= v.len();
                }
            }
        }
        Ok(b64)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a picture shows beyond its colours.
#[derive(Debug, Clone, Default)]
pub struct Look {
    /// Lines written at its top left.
    pub caption: Vec<String>,
    /// The input image it is made from, and how.
    pub base: Option<(Arc<Vec<u8>>, Derive)>,
}

/// How a picture derives from its input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    /// An edit, a composition, a chat turn: the input scaled into the frame, tinted.
    Inset,
    /// An upscale: the input resampled to the output's size.
    Resample,
    /// An outpaint: the input kept at the centre, the canvas around it new.
    Extend,
    /// A segmentation mask: the input's bright pixels.
    Mask,
}

/// The caption of a generated picture: the prompt's first words, the model, the seed.
pub fn caption(prompt: &str, model: &str, seed: i64) -> Vec<String> {
    let words: Vec<&str> = prompt.split_whitespace().take(6).collect();
    let mut first = words.join(" ");
    if prompt.split_whitespace().count() > 6 {
        first.push_str(" ...");
    }
    vec![first, model.to_string(), format!("seed {seed}")]
}

/// Renders and encodes the picture for `key` as `look` says.
pub fn render_with(key: ImageKey, look: &Look) -> Result<Vec<u8>, String> {
    let (w, h) = (key.width.max(1), key.height.max(1));
    let channels = if key.encoding == Encoding::MaskPng {
        1
    } else {
        3
    };
    let mut pixels = draw(key.seed, w, h, channels);
    if let Some((bytes, how)) = &look.base {
        // An input that cannot be decoded (WebP, HEIF) leaves the picture as drawn.
        if let Ok(input) = image::load_from_memory(bytes) {
            derive(&mut pixels, (w, h), channels, key.seed, &input, *how);
        }
    }
    if channels == 3 {
        write_caption(&mut pixels, (w, h), &look.caption);
    }
    let mut out = Vec::with_capacity(pixels.len() / 8 + 1024);
    let color = if channels == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let result = match key.encoding {
        Encoding::Png | Encoding::MaskPng => PngEncoder::new_with_quality(
            Cursor::new(&mut out),
            CompressionType::Fast,
            FilterType::Up,
        )
        .write_image(&pixels, w, h, color),
        Encoding::Jpeg(q) => JpegEncoder::new_with_quality(Cursor::new(&mut out), q.clamp(1, 100))
            .write_image(&pixels, w, h, color),
    };
    result.map_err(|e| format!("image encoding failed: {e}"))?;
    Ok(out)
}

/// Puts `input` into `pixels` as `how` says.
fn derive(
    pixels: &mut [u8],
    (w, h): (u32, u32),
    channels: usize,
    seed: u64,
    input: &image::DynamicImage,
    how: Derive,
) {
    use image::imageops::FilterType as F;
    let stride = w as usize * channels;
    let paste = |pixels: &mut [u8], img: &image::RgbImage, tint: Option<[u8; 3]>| {
        let (iw, ih) = img.dimensions();
        let (x0, y0) = ((w - iw.min(w)) / 2, (h - ih.min(h)) / 2);
        for (x, y, p) in img.enumerate_pixels() {
            let (px, py) = ((x0 + x) as usize, (y0 + y) as usize);
            if px >= w as usize || py >= h as usize {
                continue;
            }
            let at = py * stride + px * 3;
            for c in 0..3 {
                let v = match tint {
                    Some(t) => (u16::from(p[c]) * 3 + u16::from(t[c])) / 4,
                    None => u16::from(p[c]),
                };
                pixels[at + c] = v as u8;
            }
        }
    };
    match how {
        Derive::Mask => {
            let luma = input.resize_exact(w, h, F::Nearest).to_luma8();
            for (i, v) in luma.as_raw().iter().enumerate().take(pixels.len()) {
                pixels[i * channels..(i + 1) * channels].fill(if *v >= 128 { 255 } else { 0 });
            }
        }
        _ if channels != 3 => {}
        Derive::Resample => {
            let img = input.resize_exact(w, h, F::Triangle).to_rgb8();
            pixels.copy_from_slice(img.as_raw());
        }
        Derive::Inset => {
            // Nearest: cheap (a story pushes thousands of edits through the emulator).
            let img = input.resize_exact((w * 3 / 4).max(1), (h * 3 / 4).max(1), F::Nearest);
            let tint = [
                (seed & 0xff) as u8,
                (seed >> 8 & 0xff) as u8,
                (seed >> 16 & 0xff) as u8,
            ];
            paste(pixels, &img.to_rgb8(), Some(tint));
        }
        Derive::Extend => {
            // The input at its own scale when it fits, else scaled to two thirds.
            let (iw, ih) = (input.width(), input.height());
            let img = if iw < w && ih < h {
                input.to_rgb8()
            } else {
                input
                    .resize_exact((w * 2 / 3).max(1), (h * 2 / 3).max(1), F::Triangle)
                    .to_rgb8()
            };
            paste(pixels, &img, None);
        }
    }
}

/// Writes `lines` at the top left, white with a black drop shadow (readable on any
/// colour), in an 8×8 bitmap font scaled so a line is about 1/64 of the picture's width
/// high. Only the letters' own pixels are touched: a caption costs little next to the
/// picture's encoding (the suite pushes thousands of images through a debug build).
fn write_caption(pixels: &mut [u8], (w, h): (u32, u32), lines: &[String]) {
    let (w, h) = (w as usize, h as usize);
    let scale = (w / 512).max(1);
    let glyph = 8 * scale;
    let margin = glyph / 2;
    let mut block = |left: usize, top: usize, value: u8| {
        if left + scale > w || top + scale > h {
            return;
        }
        for y in top..top + scale {
            let at = (y * w + left) * 3;
            pixels[at..at + 3 * scale].fill(value);
        }
    };
    for (n, line) in lines.iter().enumerate() {
        let top = margin + n * (glyph + 2 * scale);
        for (i, ch) in line.chars().enumerate() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                b'?' as usize
            };
            let left = margin + i * glyph;
            for (gy, bits) in font8x8::legacy::BASIC_LEGACY[code].iter().enumerate() {
                for gx in (0..8).filter(|gx| bits >> gx & 1 == 1) {
                    let (x, y) = (left + gx * scale, top + gy * scale);
                    block(x + scale, y + scale, 0);
                    block(x, y, 255);
                }
            }
        }
    }
}

/// Horizontal gradient between two hashed colours, in bands of checkered blocks; rows of
/// a band are identical, so each band is computed once and copied.
fn draw(seed: u64, w: u32, h: u32, channels: usize) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let c0 = [
        (seed & 0xff) as u8,
        (seed >> 8 & 0xff) as u8,
        (seed >> 16 & 0xff) as u8,
    ];
    let c1 = [
        (seed >> 24 & 0xff) as u8,
        (seed >> 32 & 0xff) as u8,
        (seed >> 40 & 0xff) as u8,
    ];
    let block = 16 + (seed >> 48 & 0x3f) as usize;
    let stride = w * channels;
    let mut pixels = vec![0u8; stride * h];
    let mut row = vec![0u8; stride];
    let mut band_start = 0;
    while band_start < h {
        let band = band_start / block;
        for x in 0..w {
            let t = (x * 255 / w.max(1)) as u32;
            let checker = if ((x / block) + band).is_multiple_of(2) {
                0
            } else {
                40
            };
            for c in 0..channels {
                let (a, b) = (c0[c] as u32, c1[c] as u32);
                let v = (a * (255 - t) + b * t) / 255;
                row[x * channels + c] = (v as u8).wrapping_add(checker);
            }
        }
        let band_end = (band_start + block).min(h);
        for y in band_start..band_end {
            pixels[y * stride..(y + 1) * stride].copy_from_slice(&row);
        }
        band_start = band_end;
    }
    pixels
}

/// The encoding requested by output options (`{"mimeType", "compressionQuality"}`, on
/// either wire path): PNG by default, JPEG at the given quality (75 when unset). Errors
/// name the request's own field paths.
pub(crate) fn requested_encoding(
    opts: Option<&serde_json::Value>,
    quality_field: &str,
    mime_field: &str,
) -> Result<Encoding, crate::emulator::envelope::ApiError> {
    use crate::emulator::envelope::ApiError;
    let Some(opts) = opts.filter(|v| !v.is_null()) else {
        return Ok(Encoding::Png);
    };
    let quality = match opts.get("compressionQuality") {
        None | Some(serde_json::Value::Null) => 75,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::field(quality_field, "compressionQuality must be an integer.")
        })?,
    };
    if !(0..=100).contains(&quality) {
        return Err(ApiError::field(
            quality_field,
            format!("compressionQuality must be between 0 and 100, got {quality}."),
        ));
    }
    match opts
        .get("mimeType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("image/png")
    {
        "image/png" => Ok(Encoding::Png),
        "image/jpeg" => Ok(Encoding::Jpeg(quality.max(1) as u8)),
        other => Err(ApiError::field(
            mime_field,
            format!("Unsupported mimeType {other}; use image/png or image/jpeg."),
        )),
    }
}

/// Renders (or takes from the cache) the image of `seed` at `(width, height)` as `look`
/// says, base64-encoded. `seed` must cover everything `look` shows (its input included).
pub(crate) fn render_b64(
    cache: &ImageCache,
    seed: u64,
    (width, height): (u32, u32),
    encoding: Encoding,
    look: &Look,
) -> Result<Arc<String>, crate::emulator::envelope::ApiError> {
    cache
        .get_base64_with(
            ImageKey {
                seed,
                width,
                height,
                encoding,
            },
            look,
        )
        .map_err(|e| crate::emulator::envelope::ApiError::new(500, e))
}

/// A short digest of an input image, to fold into a seed.
pub(crate) fn digest_of(bytes: &[u8]) -> String {
    crate::storage::sha256_hex(bytes)[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(key: ImageKey) -> Result<Vec<u8>, String> {
        render_with(key, &Look::default())
    }

    fn key(seed: u64, encoding: Encoding) -> ImageKey {
        ImageKey {
            seed,
            width: 64,
            height: 48,
            encoding,
        }
    }

    #[test]
    fn equal_keys_render_equal_bytes_and_decode_to_the_size() {
        let a = render(key(7, Encoding::Png)).expect("png");
        assert_eq!(a, render(key(7, Encoding::Png)).expect("png"));
        assert_ne!(a, render(key(8, Encoding::Png)).expect("png"));
        let img = image::load_from_memory(&a).expect("decodes");
        assert_eq!((img.width(), img.height()), (64, 48));
        let jpg = render(key(7, Encoding::Jpeg(80))).expect("jpeg");
        assert_eq!(&jpg[..2], &[0xff, 0xd8]);
        let mask = image::load_from_memory(&render(key(7, Encoding::MaskPng)).expect("mask"))
            .expect("decodes");
        assert_eq!(mask.color(), image::ColorType::L8);
    }

    #[test]
    fn cache_evicts_beyond_its_budget() {
        let cache = ImageCache::new(1000);
        for s in 0..20 {
            cache.get_base64(key(s, Encoding::Png)).expect("renders");
        }
        assert!(cache.lock().bytes <= 1000);
    }
}
