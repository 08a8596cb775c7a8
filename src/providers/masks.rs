//! A Gemini text model's segmentation answer → full-size mask PNGs, like Imagen's.
//!
//! The answer (spec §11; ai.google.dev/gemini-api/docs/image-understanding) is a JSON
//! list, often inside a ```json fence, with one entry per object: `box_2d` as
//! `[y0, x0, y1, x1]` normalised to 0–1000, a `label`, and `mask`, a base64 PNG
//! probability map (a `data:image/png;base64,` URL) covering the box. Each mask is
//! scaled into its box, thresholded (`binary_color_threshold`, 127 by default; -1 keeps
//! the probabilities) and placed on a black image of the input's size. An entry with no
//! mask fills its box; a box of no area is skipped. An answer that is not such a list
//! is malformed (retried like any malformed response); an empty list is an answer.

use image::{GrayImage, ImageEncoder as _, Luma, imageops};
use serde::Deserialize;

use super::error::{ProviderError, TransientKind};
use super::response::{MaskAnswer, OutputImage};

#[derive(Deserialize)]
struct Entry {
    /// Kept as sent (integers stay integers in `labels`).
    box_2d: Vec<serde_json::Number>,
    #[serde(default)]
    mask: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

fn malformed(message: String) -> ProviderError {
    ProviderError::Transient {
        kind: TransientKind::Malformed,
        status: Some(200),
        message: format!("segmentation answer: {message}"),
        retry_after: None,
    }
}

/// The JSON inside an optional Markdown code fence.
fn unfenced(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// Decodes the model's text into masks of `answer.width` × `answer.height`.
pub fn decode(text: &str, answer: MaskAnswer) -> Result<Vec<OutputImage>, ProviderError> {
    let entries: Vec<Entry> = serde_json::from_str(unfenced(text))
        .map_err(|e| malformed(format!("not a JSON list of box_2d/mask/label entries: {e}")))?;
    let mut out = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        if out.len() as u32 >= answer.max {
            break;
        }
        if let Some(image) = place(i, &entry, answer)? {
            out.push(image);
        }
    }
    Ok(out)
}

/// The box in pixels `(x0, y0, x1, y1)`, or `None` when it has no area.
fn pixel_box(b: &[f64], w: u32, h: u32) -> Option<(u32, u32, u32, u32)> {
    let scale =
        |v: f64, size: u32| ((v.clamp(0.0, 1000.0) / 1000.0) * f64::from(size)).round() as u32;
    let (y0, x0, y1, x1) = (
        scale(b[0], h),
        scale(b[1], w),
        scale(b[2], h),
        scale(b[3], w),
    );
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
}

fn place(
    i: usize,
    entry: &Entry,
    answer: MaskAnswer,
) -> Result<Option<OutputImage>, ProviderError> {
    if entry.box_2d.len() != 4 {
        return Err(malformed(format!(
            "entry {i}: box_2d has {} numbers, not 4",
            entry.box_2d.len()
        )));
    }
    let numbers: Vec<f64> = entry
        .box_2d
        .iter()
        .filter_map(serde_json::Number::as_f64)
        .collect();
    let Some((x0, y0, x1, y1)) = pixel_box(&numbers, answer.width, answer.height) else {
        return Ok(None);
    };
    let (bw, bh) = (x1 - x0, y1 - y0);
    let probabilities = match &entry.mask {
        Some(m) => {
            let data = m.split_once(',').map_or(m.as_str(), |(_, d)| d);
            let bytes = crate::job::image::decode_base64(data)
                .map_err(|e| malformed(format!("entry {i}: mask is not base64: {e}")))?;
            let mask = image::load_from_memory(&bytes)
                .map_err(|e| malformed(format!("entry {i}: mask is not an image: {e}")))?
                .to_luma8();
            imageops::resize(&mask, bw, bh, imageops::FilterType::Triangle)
        }
        None => GrayImage::from_pixel(bw, bh, Luma([255])),
    };
    let mut full = GrayImage::new(answer.width, answer.height);
    for (x, y, Luma([p])) in probabilities.enumerate_pixels() {
        let v = match answer.threshold {
            t if t < 0 => *p,
            t if i16::from(*p) > t => 255,
            _ => 0,
        };
        full.put_pixel(x0 + x, y0 + y, Luma([v]));
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(
        full.as_raw(),
        answer.width,
        answer.height,
        image::ExtendedColorType::L8,
    )
    .map_err(|e| malformed(format!("entry {i}: encoding the mask: {e}")))?;
    let label = entry.label.clone().unwrap_or_default();
    Ok(Some(OutputImage {
        bytes: png.into(),
        gcs_uri: None,
        mime_type: "image/png".into(),
        enhanced_prompt: None,
        safety_attributes: None,
        labels: Some(serde_json::json!([{ "label": label, "box_2d": entry.box_2d }])),
    }))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn answer(width: u32, height: u32) -> MaskAnswer {
        MaskAnswer {
            width,
            height,
            threshold: 127,
            max: 100,
        }
    }

    /// A PNG data URL of a `w`×`h` probability map from `f(x, y)`.
    fn mask_url(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> String {
        let img = GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png.into_inner())
        )
    }

    fn pixels(img: &OutputImage) -> GrayImage {
        image::load_from_memory(&img.bytes).unwrap().to_luma8()
    }

    #[test]
    fn masks_are_scaled_into_their_box_on_a_full_size_image() {
        // The left half of the map is confident, the right half not.
        let mask = mask_url(64, 64, |x, _| if x < 32 { 240 } else { 20 });
        let text = format!(
            "```json\n[{{\"box_2d\": [200, 100, 600, 500], \"mask\": \"{mask}\", \"label\": \"the cat\"}}]\n```"
        );
        let out = decode(&text, answer(300, 200)).unwrap();
        assert_eq!(out.len(), 1);
        let m = pixels(&out[0]);
        assert_eq!(m.dimensions(), (300, 200));
        // Box: x 30..150, y 40..120; its left half (x < 90) is the object.
        assert_eq!(m.get_pixel(31, 41).0, [255]);
        assert_eq!(m.get_pixel(85, 118).0, [255]);
        assert_eq!(m.get_pixel(140, 60).0, [0], "below the threshold");
        assert_eq!(m.get_pixel(10, 10).0, [0], "outside the box");
        assert_eq!(m.get_pixel(60, 130).0, [0], "outside the box");
        assert!(m.pixels().all(|p| p.0 == [0] || p.0 == [255]));
        assert_eq!(out[0].labels.as_ref().unwrap()[0]["label"], "the cat");
    }

    #[test]
    fn threshold_minus_one_keeps_probabilities_and_no_mask_fills_the_box() {
        let mask = mask_url(4, 4, |_, _| 100);
        let text = format!(
            "[{{\"box_2d\": [0, 0, 500, 500], \"mask\": \"{mask}\", \"label\": \"a\"}}, {{\"box_2d\": [500, 500, 1000, 1000], \"label\": \"b\"}}]"
        );
        let raw = MaskAnswer {
            threshold: -1,
            ..answer(10, 10)
        };
        let out = decode(&text, raw).unwrap();
        assert_eq!(pixels(&out[0]).get_pixel(2, 2).0, [100]);
        assert_eq!(pixels(&out[1]).get_pixel(7, 7).0, [255]);
        assert_eq!(pixels(&out[1]).get_pixel(2, 2).0, [0]);
    }

    #[test]
    fn empty_degenerate_capped_and_malformed_answers() {
        assert!(decode("[]", answer(8, 8)).unwrap().is_empty());
        let degenerate = "[{\"box_2d\": [500, 500, 500, 900], \"label\": \"line\"}]";
        assert!(decode(degenerate, answer(8, 8)).unwrap().is_empty());
        let three =
            "[{\"box_2d\": [0,0,10,10]}, {\"box_2d\": [0,0,20,20]}, {\"box_2d\": [0,0,30,30]}]";
        let capped = MaskAnswer {
            max: 2,
            ..answer(100, 100)
        };
        assert_eq!(decode(three, capped).unwrap().len(), 2);
        for bad in [
            "I cannot see any objects.",
            "{\"box_2d\": [0, 0, 1, 1]}",
            "[{\"box_2d\": [0, 0, 1]}]",
            "[{\"box_2d\": [0, 0, 500, 500], \"mask\": \"data:image/png;base64,AAAA\"}]",
        ] {
            let e = decode(bad, answer(8, 8)).unwrap_err();
            assert!(
                matches!(
                    e,
                    ProviderError::Transient {
                        kind: TransientKind::Malformed,
                        ..
                    }
                ),
                "{bad}: {e:?}"
            );
        }
    }
}
