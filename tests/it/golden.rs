//! Golden tests: for every capture in `spec/captures` that holds requests, the JobSpec a
//! user would write for the same SDK call (`tests/golden/<capture>.json`) builds the same
//! method, path, headers and JSON body — modulo the SDK 3.4.0 snake_case leak (spec §3)
//! and number spelling.
//!
//! Captures live in the shared spec folder: `IMAGEGEN_SHARED_DIR`, else `../shared`
//! next to the crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use imagegen::catalog::Backend;
use imagegen::job::{JobSpec, ValidationContext, validate};
use imagegen::providers::endpoint::{Method, Target, default_base_url};
use imagegen::providers::wire::{WireRequest, build};
use serde::Deserialize;
use serde_json::Value;

mod json_diff;

/// Captures with requests that are not job operations: Google's batch offerings (spec
/// §8) are an alternative to this queue, not something a job asks for.
const BATCH_CAPTURES: &[&str] = &[
    "mldev_batch_create_file",
    "mldev_batch_create_inline",
    "mldev_batch_get_succeeded",
    "vertex_batch_create_bigquery",
    "vertex_batch_create_gcs",
    "vertex_batch_get",
];

/// Captured requests that our validation refuses on purpose, with the field it names.
/// Their bodies are still compared: the builder is not where the refusal lives.
const REFUSED: &[(&str, &str)] = &[
    // SDK 2.19 still sent Imagen to the Developer API; Google has shut that down and
    // SDK >= 2.20 refuses it client-side (spec §0, §5.7).
    ("sdk2.19.0__mldev_generate_images_imagen4", "model"),
    ("sdk2.19.0__mldev_generate_images_imagen4_minimal", "model"),
    // A seed while `addWatermark` keeps its default (true): Imagen does not honour seeds
    // with watermarking (spec §5.1), so the job would silently not be reproducible.
    ("vertex_edit_style_reference", "seed"),
    // A MASK_MODE_DEFAULT mask with no mask image: only background, foreground and
    // semantic masks are computed by Google (spec §5.2); the SDK sends it unchecked.
    (
        "vertex_edit_default_mode_mask_default",
        "reference_images[1].image",
    ),
];

fn shared_dir() -> PathBuf {
    match std::env::var_os("IMAGEGEN_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

fn captures_dir() -> PathBuf {
    shared_dir().join("spec/captures")
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(name, capture)` for every `*.json` capture, sorted by name.
fn captures() -> Vec<(String, Value)> {
    let dir = captures_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read captures in {} (set IMAGEGEN_SHARED_DIR): {e}",
            dir.display()
        )
    });
    let mut out: Vec<(String, Value)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, read_json(&p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn requests(capture: &Value) -> &[Value] {
    capture["requests"].as_array().map_or(&[], Vec::as_slice)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureTarget {
    backend: Backend,
    version: String,
    project: Option<String>,
    location: String,
    express: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    target: FixtureTarget,
    jobs: Vec<Value>,
}

impl FixtureTarget {
    fn target(&self) -> Target {
        Target {
            backend: self.backend,
            base_url: default_base_url(self.backend, &self.location, self.express),
            version: self.version.clone(),
            project: self.project.clone(),
            location: self.location.clone(),
            express: self.express,
        }
    }
}

/// `(name, fixture)` for every file in `tests/golden`.
fn fixtures() -> Vec<(String, Fixture)> {
    let mut out: Vec<(String, Fixture)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let fixture = serde_json::from_value(read_json(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, fixture)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn job(name: &str, i: usize, raw: &Value) -> JobSpec {
    JobSpec::from_json(&raw.to_string())
        .unwrap_or_else(|e| panic!("{name} jobs[{i}] is not a valid JobSpec: {e}"))
}

/// The path the job must be sent to. The worker does not stream (a worker gains nothing
/// from it for images, spec §4.2): the `_stream` captures' job goes to `:generateContent`
/// with the identical body, and without `?alt=sse`.
fn expected_path(request: &Value) -> (String, bool) {
    let path = request["path"].as_str().expect("request path");
    let streaming = path.ends_with(":streamGenerateContent");
    let query = request["query"].as_object().cloned().unwrap_or_default();
    if streaming {
        assert_eq!(query.get("alt"), Some(&Value::from("sse")), "{path}");
        assert_eq!(query.len(), 1, "{path}: unexpected query {query:?}");
        let path = path.replace(":streamGenerateContent", ":generateContent");
        return (path, true);
    }
    assert!(query.is_empty(), "{path}: unexpected query {query:?}");
    (path.to_string(), false)
}

/// `X-Server-Timeout` is the only captured header a job decides (the rest are the SDK's
/// identity, auth and transport).
fn server_timeout(headers: impl IntoIterator<Item = (String, String)>) -> Option<String> {
    headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-server-timeout"))
        .map(|(_, v)| v)
}

/// Every way `wire` differs from the captured `request`, as readable text.
fn compare(label: &str, request: &Value, wire: &WireRequest) -> Vec<String> {
    let mut problems = Vec::new();
    if request["method"] != "POST" {
        problems.push(format!(
            "{label}: capture method {} (builds are POST)",
            request["method"]
        ));
    }
    let (path, _) = expected_path(request);
    if wire.path != path {
        problems.push(format!(
            "{label}: path\n  capture {path}\n  built   {}",
            wire.path
        ));
    }
    let kind = if path.ends_with(":predict") {
        Method::Predict
    } else {
        Method::GenerateContent
    };
    if wire.method != kind || !wire.url.ends_with(&wire.path) {
        problems.push(format!(
            "{label}: method {:?} / url {} for {path}",
            wire.method, wire.url
        ));
    }
    let captured = request["headers"].as_object().into_iter().flatten();
    let captured =
        server_timeout(captured.map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").into())));
    let built = server_timeout(wire.headers.iter().cloned());
    if captured != built {
        problems.push(format!(
            "{label}: X-Server-Timeout capture {captured:?}, built {built:?}"
        ));
    }
    let want = json_diff::normalise(&request["body"]);
    let got = json_diff::normalise(&wire.body);
    let diffs = json_diff::differences(&want, &got);
    if !diffs.is_empty() {
        problems.push(format!(
            "{label}: body differs at\n  {}\n--- capture (normalised)\n{}\n--- built (normalised)\n{}",
            diffs.join("\n  "),
            serde_json::to_string_pretty(&want).unwrap(),
            serde_json::to_string_pretty(&got).unwrap()
        ));
    }
    problems
}

/// What validation must say about one fixture job.
fn check_validation(name: &str, i: usize, spec: &JobSpec, backend: Backend) -> Option<String> {
    let ctx = ValidationContext {
        backend,
        check_local_files: false,
    };
    let refused = REFUSED.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
    match (validate(spec, &ctx), refused) {
        (Ok(()), None) => None,
        (Err(e), Some(field)) if e.fields() == [field] => None,
        (Err(e), None) => Some(format!("{name} jobs[{i}]: validation refuses it: {e}")),
        (Err(e), Some(field)) => Some(format!(
            "{name} jobs[{i}]: expected a refusal of `{field}` only, got: {e}"
        )),
        (Ok(()), Some(field)) => Some(format!(
            "{name} jobs[{i}]: expected a refusal of `{field}`, validation passed"
        )),
    }
}

#[test]
fn every_fixture_job_builds_the_captured_request() {
    let captures: std::collections::BTreeMap<String, Value> = captures().into_iter().collect();
    let mut problems = Vec::new();
    let fixtures = fixtures();
    assert!(
        !fixtures.is_empty(),
        "no fixtures in {}",
        fixtures_dir().display()
    );
    for (name, fixture) in &fixtures {
        let Some(capture) = captures.get(name) else {
            problems.push(format!("{name}: fixture without a capture"));
            continue;
        };
        let reqs = requests(capture);
        if reqs.len() != fixture.jobs.len() {
            problems.push(format!(
                "{name}: {} jobs for {} requests (one job per request)",
                fixture.jobs.len(),
                reqs.len()
            ));
            continue;
        }
        let target = fixture.target.target();
        for (i, (raw, request)) in fixture.jobs.iter().zip(reqs).enumerate() {
            let spec = job(name, i, raw);
            let label = format!("{name} jobs[{i}]");
            match build(&spec, &target) {
                Ok(wire) => problems.extend(compare(&label, request, &wire)),
                Err(e) => problems.push(format!("{label}: build failed: {e}")),
            }
            problems.extend(check_validation(name, i, &spec, fixture.target.backend));
        }
    }
    for (name, _) in REFUSED {
        if !fixtures.iter().any(|(n, _)| n == name) {
            problems.push(format!("REFUSED names `{name}`, which has no fixture"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn every_capture_with_a_request_has_a_fixture_except_batch_offerings() {
    let with_requests: BTreeSet<String> = captures()
        .into_iter()
        .filter(|(_, c)| !requests(c).is_empty())
        .map(|(name, _)| name)
        .collect();
    let batch: BTreeSet<String> = with_requests
        .iter()
        .filter(|n| n.contains("batch"))
        .cloned()
        .collect();
    let expected_batch: BTreeSet<String> = BATCH_CAPTURES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        batch, expected_batch,
        "the batch captures changed: review BATCH_CAPTURES"
    );
    let have: BTreeSet<String> = fixtures().into_iter().map(|(n, _)| n).collect();
    let missing: Vec<&String> = with_requests
        .difference(&have)
        .filter(|n| !batch.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "captures without a fixture in tests/golden: {missing:?}"
    );
    let stray: Vec<&String> = have.difference(&with_requests).collect();
    assert!(
        stray.is_empty(),
        "fixtures without a capture holding requests: {stray:?}"
    );
}

#[test]
fn streaming_captures_are_served_by_generate_content_with_the_same_body() {
    let streaming: Vec<String> = captures()
        .into_iter()
        .filter(|(_, c)| requests(c).iter().any(|r| expected_path(r).1))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        streaming,
        [
            "mldev_generate_content_stream",
            "vertex_generate_content_stream"
        ]
    );
    for (name, fixture) in fixtures()
        .into_iter()
        .filter(|(n, _)| streaming.contains(n))
    {
        let wire = build(&job(&name, 0, &fixture.jobs[0]), &fixture.target.target()).unwrap();
        assert!(
            wire.path.ends_with(":generateContent"),
            "{name}: {}",
            wire.path
        );
        assert!(!wire.url.contains('?'), "{name}: {}", wire.url);
    }
}

#[test]
fn timeout_s_sends_the_captured_x_server_timeout_header() {
    let (_, fixture) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "vertex_timeout_header")
        .unwrap();
    let spec = job("vertex_timeout_header", 0, &fixture.jobs[0]);
    assert_eq!(spec.timeout_s, Some(120));
    let wire = build(&spec, &fixture.target.target()).unwrap();
    assert_eq!(server_timeout(wire.headers), Some("120".to_string()));
}
