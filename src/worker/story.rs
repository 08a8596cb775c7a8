//! A story's assembly (`op: "assemble"`, the last job of an expanded story line, run
//! once every frame has ended whatever became of it): each frame's image copied to
//! `{project}/{batch}/stories/{story}/frame-01.png …`, `story.json` (the plan, every
//! frame's prompt, job, state, image and inputs) and a contact sheet — the frames in a
//! numbered grid, what a person looks at instead of opening six files. No model call.

use std::time::Instant;

use image::{Rgb, RgbImage, imageops};
use serde_json::{Value, json};

use super::process::{JobContext, record};
use crate::job::result::JobResult;
use crate::job::story::resolve_ref;
use crate::job::{JobSpec, JobStatus, split_job_id};
use crate::queue::{Claimed, JobQueue, Settle};
use crate::storage::JobLocation;

/// Width of a frame in the contact sheet, pixels.
const CELL: u32 = 320;
/// Frames per row of the contact sheet, at most.
const COLUMNS: u32 = 3;
/// The margin around and between cells.
const GAP: u32 = 16;

/// Runs the assembly of `spec`'s story and records it.
pub async fn assemble(
    ctx: &JobContext<'_>,
    queue: &dyn JobQueue,
    claimed: &Claimed,
    spec: &JobSpec,
    mut result: JobResult,
    loc: &JobLocation<'_>,
    started: Instant,
) -> Settle {
    match build(ctx, queue, claimed, spec).await {
        Ok((images, summary)) => {
            result.images = images;
            result.text = vec![summary];
            record(ctx, loc, result, JobStatus::Succeeded, None, started).await
        }
        Err(Transient(error)) => Settle::Retry {
            delay: ctx.retry.delay(claimed.attempts + 1, None),
            count: true,
            error,
        },
    }
}

/// A failure to read or write that is worth another try.
struct Transient(String);

/// One frame as `story.json` shows it.
struct Frame {
    index: usize,
    prompt: String,
    job_id: String,
    status: JobStatus,
    error: Option<String>,
    image: Option<crate::storage::StoredImage>,
    bytes: Option<bytes::Bytes>,
    inputs: Vec<crate::job::result::InputRef>,
}

async fn build(
    ctx: &JobContext<'_>,
    queue: &dyn JobQueue,
    claimed: &Claimed,
    spec: &JobSpec,
) -> Result<(Vec<crate::storage::StoredImage>, String), Transient> {
    let q = |e: crate::queue::QueueError| Transient(format!("reading the story's jobs: {e}"));
    let batch = split_job_id(&claimed.lease.job).map(|(b, _)| b);
    let story = spec.story.clone().unwrap_or(crate::job::story::StoryRef {
        id: claimed.lease.job.clone(),
        frame: 0,
        frames: spec.frame_jobs.len() as u32,
        from: None,
    });
    let dir = format!(
        "{}/{}/stories/{}",
        ctx.project,
        batch.unwrap_or("_single"),
        story.id
    );
    let mut plan_value = Value::Null;
    let mut planned: Vec<String> = Vec::new();
    let mut plan_error = None;
    if let Some(plan) = &spec.plan_of {
        let planner = resolve_ref(plan, batch);
        let record = queue.job(ctx.project, &planner).await.map_err(q)?;
        if let Some(r) = &record {
            if r.status != JobStatus::Succeeded {
                plan_error = Some(format!(
                    "the plan was {}: {}",
                    r.status.as_str(),
                    r.error.clone().unwrap_or_default()
                ));
            }
            if let Some(text) = r.result.as_ref().and_then(|res| res.text.first()) {
                plan_value = serde_json::from_str(text).unwrap_or(Value::Null);
                planned = crate::providers::plan_prompts(text).unwrap_or_default();
            }
        }
    }
    let mut frames = Vec::with_capacity(spec.frame_jobs.len());
    for (i, reference) in spec.frame_jobs.iter().enumerate() {
        let job_id = resolve_ref(reference, batch);
        let record = queue.job(ctx.project, &job_id).await.map_err(q)?;
        let status = record.as_ref().map_or(JobStatus::Cancelled, |r| r.status);
        let res = record.as_ref().and_then(|r| r.result.clone());
        let image = res.as_ref().and_then(|r| r.images.first().cloned());
        let bytes = match image.as_ref().and_then(|img| ctx.store.own_key(&img.url)) {
            Some(key) => Some(
                ctx.store
                    .get(&key)
                    .await
                    .map_err(|e| Transient(format!("reading frame {}'s image: {e}", i + 1)))?,
            ),
            None => None,
        };
        let prompt = planned
            .get(i)
            .cloned()
            .or_else(|| res.as_ref().and_then(|r| r.prompt.clone()))
            .unwrap_or_default();
        frames.push(Frame {
            index: i + 1,
            prompt,
            job_id,
            status,
            error: record.and_then(|r| r.error),
            image,
            bytes,
            inputs: res.map(|r| r.inputs).unwrap_or_default(),
        });
    }
    // Each frame's image under the story's own names.
    let put = |e: crate::storage::StorageError| Transient(format!("writing the story: {e}"));
    // One per frame, in frame order (`None`: the frame has no image).
    let mut copies = Vec::with_capacity(frames.len());
    for f in &frames {
        let copy = match (&f.image, &f.bytes) {
            (Some(img), Some(bytes)) => {
                let ext = if img.mime_type == "image/jpeg" {
                    "jpg"
                } else {
                    "png"
                };
                let rel = format!("{dir}/frame-{:02}.{ext}", f.index);
                let stored = ctx.store.put_file(&rel, &img.mime_type, bytes.clone());
                Some(stored.await.map_err(put)?)
            }
            _ => None,
        };
        copies.push(copy);
    }
    let sheet_png = contact_sheet(&frames);
    let sheet = ctx
        .store
        .put_file(
            &format!("{dir}/contact-sheet.png"),
            "image/png",
            sheet_png.into(),
        )
        .await
        .map_err(put)?;
    let done = frames
        .iter()
        .filter(|f| f.status == JobStatus::Succeeded)
        .count();
    let status = match done {
        n if n == frames.len() && n > 0 => "completed",
        0 => "failed",
        _ => "partial",
    };
    // Why it is not complete: the first frame that did not succeed, or the plan.
    let reason = plan_error.or_else(|| {
        frames
            .iter()
            .find(|f| f.status != JobStatus::Succeeded)
            .map(|f| {
                format!(
                    "frame {} {}: {}",
                    f.index,
                    f.status.as_str(),
                    f.error.clone().unwrap_or_default()
                )
            })
    });
    let story_json = json!({
        "story_id": story.id,
        "batch_id": batch,
        "description": spec.description,
        "status": status,
        "reason": reason,
        "plan": plan_value,
        "frames": frames.iter().zip(&copies).map(|(f, copy)| json!({
            "index": f.index,
            "prompt": f.prompt,
            "job_id": f.job_id,
            "status": f.status.as_str(),
            "error": f.error,
            "image": f.image.as_ref().map(|img| json!({
                "url": copy.as_ref().map_or(&img.url, |c| &c.url),
                "job_url": img.url,
                "sha256": img.sha256,
                "width": img.width,
                "height": img.height,
            })),
            "inputs": f.inputs.iter().map(|i| json!({"url": i.url, "sha256": i.sha256})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "contact_sheet": sheet.url,
    });
    let body = serde_json::to_vec_pretty(&story_json).unwrap_or_default();
    ctx.store
        .put_file(
            &format!("{dir}/story.json"),
            "application/json",
            body.into(),
        )
        .await
        .map_err(put)?;
    let summary = match &reason {
        None => format!(
            "story {}: {status}, {done} of {} frames",
            story.id,
            frames.len()
        ),
        Some(why) => format!(
            "story {}: {status}, {done} of {} frames ({why})",
            story.id,
            frames.len()
        ),
    };
    Ok((vec![sheet], summary))
}

/// The frames in a numbered grid: up to [`COLUMNS`] per row, each scaled to [`CELL`]
/// pixels wide, its number in a box at its top left; a frame without an image is a grey
/// cell with its number and a cross.
fn contact_sheet(frames: &[Frame]) -> Vec<u8> {
    let n = frames.len().max(1) as u32;
    let cols = n.min(COLUMNS);
    let rows = n.div_ceil(cols);
    let decoded: Vec<Option<RgbImage>> = frames
        .iter()
        .map(|f| {
            let bytes = f.bytes.as_ref()?;
            let img = image::load_from_memory(bytes).ok()?.to_rgb8();
            let h = (u64::from(img.height()) * u64::from(CELL) / u64::from(img.width().max(1)))
                .max(1) as u32;
            // An area-averaging downscale: as good as a triangle filter for
            // shrinking, and a fraction of its cost (it was half the worker's CPU in
            // the stories bench).
            Some(imageops::thumbnail(&img, CELL, h))
        })
        .collect();
    let cell_h = decoded
        .iter()
        .flatten()
        .map(RgbImage::height)
        .max()
        .unwrap_or(CELL);
    let width = GAP + cols * (CELL + GAP);
    let height = GAP + rows * (cell_h + GAP);
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([245, 245, 245]));
    for (i, img) in decoded.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        let (x, y) = (GAP + c * (CELL + GAP), GAP + r * (cell_h + GAP));
        match img {
            Some(img) => imageops::overlay(&mut sheet, img, i64::from(x), i64::from(y)),
            None => {
                let grey = RgbImage::from_pixel(CELL, cell_h, Rgb([200, 200, 200]));
                imageops::overlay(&mut sheet, &grey, i64::from(x), i64::from(y));
                for t in 0..CELL.min(cell_h) {
                    let (px, py) = (
                        x + t * CELL / CELL.min(cell_h),
                        y + t * cell_h / CELL.min(cell_h),
                    );
                    if px < width && py < height {
                        sheet.put_pixel(px, py, Rgb([120, 120, 120]));
                    }
                }
            }
        }
        label(&mut sheet, x + 6, y + 6, frames[i].index);
    }
    let mut out = Vec::new();
    let _ = RgbImage::write_to(
        &sheet,
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Png,
    );
    out
}

/// Digits 0–9 in a 3×5 pixel font, one row per 3 bits (top row first).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// Draws `n` in white on a dark box at (`x`, `y`), each font pixel 4×4.
fn label(img: &mut RgbImage, x: u32, y: u32, n: usize) {
    const SCALE: u32 = 4;
    let digits: Vec<usize> = n
        .to_string()
        .bytes()
        .map(|b| usize::from(b - b'0'))
        .collect();
    let w = digits.len() as u32 * 4 * SCALE + SCALE;
    let h = 7 * SCALE;
    for dy in 0..h {
        for dx in 0..w {
            if x + dx < img.width() && y + dy < img.height() {
                img.put_pixel(x + dx, y + dy, Rgb([30, 30, 30]));
            }
        }
    }
    for (k, d) in digits.iter().enumerate() {
        for (row, bits) in DIGITS[*d].iter().enumerate() {
            for col in 0..3u32 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for sy in 0..SCALE {
                    for sx in 0..SCALE {
                        let px = x + SCALE + k as u32 * 4 * SCALE + col * SCALE + sx;
                        let py = y + SCALE + row as u32 * SCALE + sy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}
