//! Gemini text models (`gemini-3.5-flash`, `gemini-3.1-flash-lite`): the answers the
//! product asks them for. A request that asks for segmentation masks (Google's
//! documented instruction, spec §11) with an image is answered as the model does: a JSON
//! list with `box_2d` (`[y0, x0, y1, x1]`, 0–1000), `label` and `mask` (a base64 PNG
//! probability map of the box) per object, inside a ```json fence unless the request set
//! `responseMimeType: application/json`. Anything else gets a short text answer.
//!
//! The objects are found in the image itself: pixels far from the colour of the image's
//! border are foreground; with several labels asked for ("the cat, the sofa"), the
//! foreground's bounding box is split into that many columns, one object each. An image
//! with no foreground answers `[]`.

use base64::Engine as _;
use image::{GrayImage, Luma, RgbImage, imageops};
use serde_json::{Value, json};

use crate::emulator::envelope::ApiError;

/// How far (sum of channel differences) from the border colour a foreground pixel is.
const FOREGROUND_DISTANCE: u32 = 60;
/// Masks are sent at most this many pixels on a side, as probability maps to be scaled.
const MASK_SIDE: u32 = 256;
/// At most this many objects per answer.
const MAX_OBJECTS: usize = 8;

/// What a text-model request asks for.
#[derive(Debug, Clone, Default)]
pub struct TextAsk {
    /// The first input image, when the request asks for segmentation masks.
    pub segment_image: Option<Vec<u8>>,
    /// `responseMimeType: application/json`: no Markdown fence.
    pub json_mode: bool,
    /// `responseSchema` (JSON mode): the answer is a value of that schema.
    pub schema: Option<Value>,
}

/// Reads the request's ask; refuses image output, which text models do not produce.
pub fn ask(model: &str, req: &Value, prompt: &str) -> Result<TextAsk, ApiError> {
    let config = req.get("generationConfig").cloned().unwrap_or(Value::Null);
    let modalities = config.get("responseModalities").and_then(Value::as_array);
    if modalities.is_some_and(|m| m.iter().any(|v| v.as_str() != Some("TEXT"))) {
        return Err(ApiError::field(
            "generation_config.response_modalities",
            format!("Model {model} does not support the requested response modalities: image"),
        ));
    }
    if config.get("imageConfig").is_some() {
        return Err(ApiError::field(
            "generation_config.image_config",
            format!("Image config is not supported for model {model}."),
        ));
    }
    let json_mode =
        config.get("responseMimeType").and_then(Value::as_str) == Some("application/json");
    let wants_masks = prompt.to_ascii_lowercase().contains("segmentation mask");
    let segment_image = wants_masks.then(|| first_inline_image(req)).flatten();
    let schema = config.get("responseSchema").filter(|_| json_mode).cloned();
    Ok(TextAsk {
        segment_image,
        json_mode,
        schema,
    })
}

fn first_inline_image(req: &Value) -> Option<Vec<u8>> {
    req.get("contents")?
        .as_array()?
        .iter()
        .filter(|c| c.get("role").and_then(Value::as_str) != Some("model"))
        .flat_map(|c| {
            c.get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find_map(|p| p.pointer("/inlineData/data").and_then(Value::as_str))
        .and_then(crate::emulator::media::decode_b64)
}

/// The answer's text.
pub fn answer(ask: &TextAsk, prompt: &str) -> String {
    if let (Some(schema), None) = (&ask.schema, &ask.segment_image) {
        return structured(schema, prompt).to_string();
    }
    let Some(bytes) = &ask.segment_image else {
        let head: String = prompt.chars().take(80).collect();
        return format!("This is the emulator's answer to: {head}");
    };
    let objects = image::load_from_memory(bytes)
        .map(|img| segment(&img.to_rgb8(), &labels(prompt)))
        .unwrap_or_default();
    let list = serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default();
    if ask.json_mode {
        list
    } else {
        format!("```json\n{list}\n```")
    }
}

/// The labels asked for: "Give the segmentation masks for the cat, the sofa. …".
fn labels(prompt: &str) -> Vec<String> {
    let lower = prompt.to_ascii_lowercase();
    let target = lower
        .find("segmentation masks for ")
        .map(|i| &prompt[i + "segmentation masks for ".len()..])
        .and_then(|rest| rest.split('.').next())
        .unwrap_or("");
    let labels: Vec<String> = target
        .split(',')
        .flat_map(|s| s.split(" and "))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .take(MAX_OBJECTS)
        .collect();
    if labels.is_empty() {
        vec!["object".into()]
    } else {
        labels
    }
}

fn border_colour(img: &RgbImage) -> [u32; 3] {
    let (w, h) = img.dimensions();
    let mut sum = [0u64; 3];
    let mut n = 0u64;
    let mut add = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        for c in 0..3 {
            sum[c] += u64::from(p[c]);
        }
        n += 1;
    };
    for x in 0..w {
        add(x, 0);
        add(x, h - 1);
    }
    for y in 0..h {
        add(0, y);
        add(w - 1, y);
    }
    sum.map(|s| (s / n.max(1)) as u32)
}

/// The foreground map of the image.
fn foreground(img: &RgbImage) -> GrayImage {
    let bg = border_colour(img);
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        let d: u32 = (0..3).map(|c| u32::from(p[c]).abs_diff(bg[c])).sum();
        Luma([if d > FOREGROUND_DISTANCE { 255 } else { 0 }])
    })
}

/// The tight box `(x0, y0, x1, y1)` (exclusive ends) of the foreground within columns
/// `cols`, if any.
fn tight_box(fg: &GrayImage, cols: std::ops::Range<u32>) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for y in 0..fg.height() {
        for x in cols.clone() {
            if fg.get_pixel(x, y).0[0] > 0 {
                let (x0, y0, x1, y1) = b.unwrap_or((x, y, x + 1, y + 1));
                b = Some((x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)));
            }
        }
    }
    b
}

fn segment(img: &RgbImage, labels: &[String]) -> Vec<Value> {
    let (w, h) = img.dimensions();
    if w < 2 || h < 2 {
        return Vec::new();
    }
    let fg = foreground(img);
    let Some((x0, _, x1, _)) = tight_box(&fg, 0..w) else {
        return Vec::new();
    };
    let k = labels.len() as u32;
    let span = (x1 - x0).div_ceil(k);
    let mut out = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let from = x0 + span * i as u32;
        let to = (from + span).min(x1);
        let Some((bx0, by0, bx1, by1)) = (from < to).then(|| tight_box(&fg, from..to)).flatten()
        else {
            continue;
        };
        let crop = imageops::crop_imm(&fg, bx0, by0, bx1 - bx0, by1 - by0).to_image();
        let scale = f64::from(MASK_SIDE) / f64::from(crop.width().max(crop.height()));
        let map = if scale < 1.0 {
            let mw = ((f64::from(crop.width()) * scale).round() as u32).max(1);
            let mh = ((f64::from(crop.height()) * scale).round() as u32).max(1);
            imageops::resize(&crop, mw, mh, imageops::FilterType::Triangle)
        } else {
            crop
        };
        let mut png = std::io::Cursor::new(Vec::new());
        if map.write_to(&mut png, image::ImageFormat::Png).is_err() {
            continue;
        }
        let norm = |v: u32, size: u32| (u64::from(v) * 1000 / u64::from(size)) as u32;
        out.push(json!({
            "box_2d": [norm(by0, h), norm(bx0, w), norm(by1, h), norm(bx1, w)],
            "mask": format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png.into_inner())
            ),
            "label": label,
        }));
    }
    out
}

/// Stages a planned sequence moves through, for readable, distinct frame prompts.
const STAGES: [&str; 8] = [
    "the opening: everything laid out",
    "the first step under way",
    "the work taking shape",
    "a close-up of the key detail",
    "the middle of the process",
    "nearly there: the last touches",
    "the finished result",
    "the result presented",
];

/// What the request is about: the text after "… for:" up to its first sentence end.
fn subject(prompt: &str) -> String {
    let after = prompt.split_once(" for: ").map_or(prompt, |(_, rest)| rest);
    let head = after
        .split(". ")
        .next()
        .unwrap_or(after)
        .trim_end_matches('.');
    head.chars().take(160).collect()
}

/// A deterministic value of `schema` (Gemini's OpenAPI subset) for `prompt`: objects
/// with their properties, arrays of `maxItems` (else `minItems`, else 3) items, and
/// strings that say which item they are and what the request is about — distinct per
/// item, so a story planner gets one prompt per frame.
pub fn structured(schema: &Value, prompt: &str) -> Value {
    fn value(schema: &Value, subject: &str, index: Option<(usize, usize)>) -> Value {
        let kind = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("STRING")
            .to_ascii_uppercase();
        match kind.as_str() {
            "OBJECT" => {
                let mut out = serde_json::Map::new();
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    for (k, v) in props {
                        out.insert(k.clone(), value(v, subject, index));
                    }
                }
                Value::Object(out)
            }
            "ARRAY" => {
                let n = ["maxItems", "minItems"]
                    .iter()
                    .find_map(|k| {
                        let v = schema.get(*k)?;
                        v.as_u64().or_else(|| v.as_str()?.parse().ok())
                    })
                    .unwrap_or(3)
                    .min(64) as usize;
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                Value::Array(
                    (0..n)
                        .map(|i| value(&items, subject, Some((i, n))))
                        .collect(),
                )
            }
            "INTEGER" | "NUMBER" => json!(index.map_or(1, |(i, _)| i + 1)),
            "BOOLEAN" => json!(true),
            _ => match index {
                Some((i, n)) => {
                    let stage = STAGES[(i * STAGES.len()) / n.max(1)];
                    json!(format!("Frame {} of {n}: {subject}, {stage}", i + 1))
                }
                None => json!(subject),
            },
        }
    }
    value(schema, &subject(prompt), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(img: &RgbImage) -> Vec<u8> {
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        png.into_inner()
    }

    #[test]
    fn a_square_on_a_plain_ground_is_found_where_it_is() {
        // 200×100, grey ground, a red square at x 50..100, y 20..70.
        let img = RgbImage::from_fn(200, 100, |x, y| {
            if (50..100).contains(&x) && (20..70).contains(&y) {
                image::Rgb([220, 30, 30])
            } else {
                image::Rgb([128, 128, 128])
            }
        });
        let ask = TextAsk {
            segment_image: Some(png_of(&img)),
            json_mode: true,
            schema: None,
        };
        let text = answer(
            &ask,
            "Give the segmentation masks for the red box. Output a JSON list",
        );
        let list: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["label"], "the red box");
        assert_eq!(list[0]["box_2d"], json!([200, 250, 700, 500]));
        // Two labels split it into two columns; fenced without JSON mode.
        let fenced = answer(
            &TextAsk {
                json_mode: false,
                ..ask.clone()
            },
            "Give the segmentation masks for the left, the right. Output …",
        );
        assert!(fenced.starts_with("```json\n"));
        let list: Vec<Value> =
            serde_json::from_str(fenced.trim_start_matches("```json").trim_end_matches("```"))
                .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1]["box_2d"], json!([200, 375, 700, 500]));
    }

    #[test]
    fn a_schema_gets_distinct_items_of_its_size() {
        let schema = crate::providers::wire::plan_schema(4);
        let v = structured(
            &schema,
            "Plan a sequence of 4 images for: making pizza. It is a recipe.",
        );
        let prompts: Vec<&str> = v["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["prompt"].as_str().unwrap())
            .collect();
        assert_eq!(prompts.len(), 4);
        assert!(prompts[0].starts_with("Frame 1 of 4: making pizza"));
        let distinct: std::collections::HashSet<_> = prompts.iter().collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn a_plain_image_has_no_objects() {
        let img = RgbImage::from_pixel(32, 32, image::Rgb([10, 200, 10]));
        let ask = TextAsk {
            segment_image: Some(png_of(&img)),
            json_mode: true,
            schema: None,
        };
        assert_eq!(answer(&ask, "segmentation masks for cats."), "[]");
    }
}
