//! Model lifecycle through the binary: embedded defaults run every operation on the
//! current default model; a retired id migrates (warning, `model_requested`) or is
//! refused (exit 2, nothing run or enqueued); the configuration moves the dates.

use std::path::Path;

use serde_json::Value;

use super::cli_run::{imagegen, pngs_under};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// `imagegen [--config CONFIG] run FILE` in `dir`: (exit code, stdout, stderr).
fn run(dir: &Path, jobs: &str, config: Option<&str>) -> (i32, String, String) {
    let file = dir.join("jobs.jsonl");
    std::fs::write(&file, jobs.replace("EXAMPLES", EXAMPLES)).unwrap();
    let mut cmd = imagegen();
    cmd.current_dir(dir);
    if let Some(text) = config {
        let path = dir.join("imagegen.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    let out = cmd.arg("run").arg(&file).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `result.json` under the run's output folder, by job line.
fn results(dir: &Path) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut stack = vec![dir.join("imagegen-out")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "result.json") {
                out.push(serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
            }
        }
    }
    out.sort_by_key(|r| r["line"].as_u64());
    out
}

#[test]
fn embedded_defaults_run_every_operation_on_the_current_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = r#"{"op": "generate", "prompt": "a lighthouse at dusk"}
{"op": "edit", "prompt": "give the cat a crown", "images": ["EXAMPLES/cat.png"]}
{"op": "upscale", "images": ["EXAMPLES/cat.png"], "image_size": "2K"}
{"op": "segment", "prompt": "the cat", "images": ["EXAMPLES/cat.png"]}
{"op": "compose", "prompt": "the cat on the sofa", "images": ["EXAMPLES/cat.png", "EXAMPLES/sofa.png"]}
{"op": "segment", "model": "image-segmentation-001", "images": ["EXAMPLES/cat.png"], "segment_mode": "foreground"}
{"op": "upscale", "model": "imagen-4.0-upscale-preview", "images": ["EXAMPLES/cat.png"], "upscale_factor": "x2"}
{"op": "recontext", "model": "imagen-product-recontext-preview-06-30", "prompt": "on a beach", "product_images": ["EXAMPLES/sofa.png"]}
"#;
    let (code, stdout, stderr) = run(dir.path(), jobs, None);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("(model gemini-3.1-flash-image)"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    let results = results(dir.path());
    assert_eq!(results.len(), 8, "{results:#?}");
    for r in &results[..5] {
        assert_eq!(r["status"], "succeeded", "{r}");
        // Gemini image models do not segment: a Gemini text model answers the masks.
        let model = match r["line"].as_u64() {
            Some(4) => "gemini-3.5-flash",
            _ => "gemini-3.1-flash-image",
        };
        assert_eq!(r["model"], model, "{r}");
        assert!(!r["images"].as_array().unwrap().is_empty(), "{r}");
    }
    // The segment line's masks are full-size, black and white, and labelled.
    let cat = image::open(format!("{EXAMPLES}/cat.png")).unwrap();
    let seg = &results[3];
    assert_eq!(seg["images"][0]["labels"][0]["label"], "the cat", "{seg}");
    let mask = image::open(seg["images"][0]["path"].as_str().unwrap())
        .unwrap()
        .to_luma8();
    assert_eq!(mask.dimensions(), (cat.width(), cat.height()));
    assert!(mask.pixels().all(|p| p.0 == [0] || p.0 == [255]));
    let white = mask.pixels().filter(|p| p.0 == [255]).count();
    assert!(
        white > 0 && white < mask.pixels().count(),
        "the mask marks part of the image: {white} white pixels"
    );
    for r in &results[5..] {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert!(!r["images"].as_array().unwrap().is_empty(), "{r}");
    }
    assert!(pngs_under(&dir.path().join("imagegen-out")).len() >= 8);
}

#[test]
fn retired_ids_migrate_with_a_warning_and_model_requested() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = r#"{"prompt": "a fox", "model": "gemini-3.1-flash-image-preview"}
{"prompt": "a hare", "model": "imagen-4.0-generate-001"}
{"prompt": "an owl", "model": "imagen-4.0-generate-001"}
"#;
    let (code, stdout, stderr) = run(dir.path(), jobs, None);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("warning: line 1: gemini-3.1-flash-image-preview is shut down on Vertex AI since 2026-07-17; its replacement is gemini-3.1-flash-image: running on gemini-3.1-flash-image instead"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: line 2 and 1 more: imagen-4.0-generate-001 is shut down on Vertex AI since 2026-08-17"),
        "{stderr}"
    );
    let results = results(dir.path());
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0]["model_requested"],
        "gemini-3.1-flash-image-preview"
    );
    assert_eq!(results[1]["model_requested"], "imagen-4.0-generate-001");
    for r in &results {
        assert_eq!(r["model"], "gemini-3.1-flash-image", "{r}");
        assert_eq!(r["status"], "succeeded", "{r}");
    }
}

#[test]
fn refusing_retired_ids_exits_2_naming_the_replacement_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = "{\"prompt\": \"a fox\"}\n{\"prompt\": \"a hare\", \"model\": \"gemini-3-pro-image-preview\"}\n";
    let (code, _, stderr) = run(
        dir.path(),
        jobs,
        Some("[models]\non_retired = \"refuse\"\n"),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("line 2: model: gemini-3-pro-image-preview is shut down")
            && stderr.contains("use gemini-3-pro-image"),
        "{stderr}"
    );
    assert!(results(dir.path()).is_empty());
}

#[test]
fn submit_refusing_a_retired_id_enqueues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("lifecycle-{}", uuid::Uuid::new_v4().simple());
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nkey_prefix = \"{prefix}\"\n[models]\non_retired = \"refuse\"\n\
             [projects.acme]\nbackend = \"gemini-api\"\ncredentials = \"env:KEY\"\n"
        ),
    )
    .unwrap();
    let file = dir.path().join("jobs.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"model\": \"gemini-2.5-flash-image\"}\n",
    )
    .unwrap();
    let out = imagegen()
        .env("KEY", "k")
        .env("REDIS_URL", super::fleet::redis_url(0))
        .arg("--config")
        .arg(&config)
        .args(["submit", "--project", "acme"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "line 2: model: gemini-2.5-flash-image is shut down on the Gemini API since 2026-10-02"
        ) && stderr.contains("use gemini-3.1-flash-image"),
        "{stderr}"
    );
    let mut conn = redis::Client::open(super::fleet::redis_url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn configured_dates_and_stages_change_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[models."gemini-3.1-flash-image"]
shutdown = "2026-01-01"
replacement = "gemini-3-pro-image"
[models."imagen-4.0-generate-001"]
stage = "ga"
shutdown = "2099-01-01"
"#;
    let jobs = "{\"prompt\": \"a fox\"}\n{\"prompt\": \"a hare\", \"model\": \"imagen-4.0-generate-001\"}\n";
    let (code, stdout, stderr) = run(dir.path(), jobs, Some(config));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("gemini-3.1-flash-image is shut down on Vertex AI since 2026-01-01; its replacement is gemini-3-pro-image"),
        "{stderr}"
    );
    let results = results(dir.path());
    assert_eq!(results[0]["model"], "gemini-3-pro-image");
    assert_eq!(results[0]["model_requested"], "gemini-3.1-flash-image");
    assert_eq!(results[1]["model"], "imagen-4.0-generate-001");
    assert!(results[1]["model_requested"].is_null());
    // A date within 30 days warns and runs as named.
    let dir = tempfile::tempdir().unwrap();
    let soon = (chrono::Utc::now().date_naive() + chrono::Days::new(10)).to_string();
    let config = format!("[models.\"gemini-3-pro-image\"]\nshutdown_vertex = \"{soon}\"\n");
    let jobs = "{\"prompt\": \"a fox\", \"model\": \"gemini-3-pro-image\"}\n";
    let (code, _, stderr) = run(dir.path(), jobs, Some(&config));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: line 1: gemini-3-pro-image shuts down on Vertex AI on {soon} (in 10 days)"
        )),
        "{stderr}"
    );
    assert_eq!(
        super::lifecycle::results(dir.path())[0]["model"],
        "gemini-3-pro-image"
    );
}
