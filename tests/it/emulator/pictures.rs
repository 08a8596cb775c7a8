//! Pictures that show what happened: a caption (prompt's first words, model, seed) in a
//! bitmap font, edits that derive from their input visibly, a real resample for an
//! upscale, a wider canvas for an outpaint, masks from the input's pixels.

use base64::Engine as _;
use image::{GenericImageView as _, Rgb};
use imagegen::emulator::Scenario;
use serde_json::json;

use super::{Emu, decode_image, first_inline, gc_body, png_b64};

/// A PNG of `w`×`h`: its left half `left`, its right half `right`.
fn halves(w: u32, h: u32, left: [u8; 3], right: [u8; 3]) -> String {
    let img = image::RgbImage::from_fn(w, h, |x, _| Rgb(if x < w / 2 { left } else { right }));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

/// Pure white pixels in the top left (the caption's letters).
fn caption_pixels(img: &image::DynamicImage) -> Vec<(u32, u32)> {
    let (w, h) = (img.width() / 2, img.height() / 8);
    let rgb = img.to_rgb8();
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| rgb.get_pixel(x, y).0 == [255, 255, 255])
        .collect()
}

#[tokio::test]
async fn generated_images_carry_a_caption_that_tells_them_apart() {
    let emu = Emu::start(Scenario::default()).await;
    let image = |prompt: &str| {
        let emu = &emu;
        let prompt = prompt.to_string();
        async move {
            let v = emu
                .vertex(
                    "gemini-3.1-flash-image",
                    "generateContent",
                    &gc_body(&prompt),
                )
                .await
                .json();
            decode_image(first_inline(&v)["data"].as_str().unwrap())
        }
    };
    let boat = image("a paper boat in the rain").await;
    let kettle = image("a kettle on a stove").await;
    let (a, b) = (caption_pixels(&boat), caption_pixels(&kettle));
    assert!(a.len() > 200, "the caption is written: {} pixels", a.len());
    assert_ne!(a, b, "different prompts, different captions");
    // Only the letters are written; the rest of the picture is the pattern.
    let rgb = boat.to_rgb8();
    let far = rgb.get_pixel(boat.width() - 1, boat.height() - 1);
    assert_ne!(far.0, [255, 255, 255]);
}

#[tokio::test]
async fn a_gemini_edit_shows_its_input_scaled_into_the_frame() {
    let emu = Emu::start(Scenario::default()).await;
    let green = [10, 200, 30];
    let body = json!({"contents": [{"role": "user", "parts": [
        {"text": "make it warmer"},
        {"inlineData": {"mimeType": "image/png", "data": halves(64, 64, green, green)}}]}]});
    let v = emu
        .vertex("gemini-3.1-flash-image", "generateContent", &body)
        .await
        .json();
    let img = decode_image(first_inline(&v)["data"].as_str().unwrap()).to_rgb8();
    let (w, h) = img.dimensions();
    let centre = img.get_pixel(w / 2, h / 2).0;
    // The input tinted by a quarter: mostly green.
    assert!(
        centre[1] >= 150 && centre[0] <= 72 && centre[2] <= 87,
        "{centre:?}"
    );
    let corner = img.get_pixel(w - 2, h - 2).0;
    assert_ne!(
        corner, centre,
        "the frame around the input is the picture's own"
    );
}

#[tokio::test]
async fn imagen_upscale_resamples_outpaint_extends_and_masks_follow_the_input() {
    let emu = Emu::start(Scenario::default()).await;
    let (white, black, green) = ([255, 255, 255], [0, 0, 0], [10, 200, 30]);
    // Upscale: the input resampled, left half green and right half black at 3x.
    let up = json!({"instances": [{"image": {"bytesBase64Encoded": halves(100, 60, green, black)}}],
                    "parameters": {"mode": "upscale", "upscaleConfig": {"upscaleFactor": "x3"}}});
    let v = emu
        .vertex("imagen-4.0-upscale-preview", "predict", &up)
        .await
        .json();
    let img = decode_image(v["predictions"][0]["bytesBase64Encoded"].as_str().unwrap());
    assert_eq!((img.width(), img.height()), (300, 180));
    assert_eq!(img.get_pixel(60, 170).0[..3], green);
    assert_eq!(img.get_pixel(290, 170).0[..3], black);
    // Outpaint: the input at the centre as it was, new canvas around it.
    let raw = json!({"referenceId": 1, "referenceType": "REFERENCE_TYPE_RAW", "referenceImage": {"bytesBase64Encoded": png_b64(300, 200)}});
    let mask = json!({"referenceId": 2, "referenceType": "REFERENCE_TYPE_MASK", "maskImageConfig": {"maskMode": "MASK_MODE_BACKGROUND"}});
    let out = json!({"instances": [{"prompt": "more beach", "referenceImages": [raw, mask]}],
                     "parameters": {"editMode": "EDIT_MODE_OUTPAINT"}});
    let v = emu
        .vertex("imagen-3.0-capability-001", "predict", &out)
        .await
        .json();
    let img = decode_image(v["predictions"][0]["bytesBase64Encoded"].as_str().unwrap());
    let (w, h) = (img.width(), img.height());
    assert_eq!(
        img.get_pixel(w / 2, h / 2).0[..3],
        [10, 200, 30],
        "the input, untouched"
    );
    assert_ne!(
        img.get_pixel(w - 1, h - 1).0[..3],
        [10, 200, 30],
        "the extension"
    );
    // Segmentation: the mask is the input's bright half.
    let seg = json!({"instances": [{"prompt": "cat", "image": {"bytesBase64Encoded": halves(64, 48, white, black)}}],
                     "parameters": {"mode": "semantic", "maxPredictions": 1}});
    let v = emu
        .vertex("image-segmentation-001", "predict", &seg)
        .await
        .json();
    let m = decode_image(v["predictions"][0]["bytesBase64Encoded"].as_str().unwrap()).to_luma8();
    assert_eq!((m.get_pixel(5, 20).0, m.get_pixel(60, 20).0), ([255], [0]));
}
