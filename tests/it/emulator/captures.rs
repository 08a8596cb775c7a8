//! Replays every request of every capture in `shared/spec/captures` against the
//! emulator with real credentials and checks the answers have the shape the SDK parses.

use std::collections::HashMap;

use imagegen::catalog;
use imagegen::emulator::Scenario;
use serde_json::Value;

use super::{API_KEY, Emu, Reply, decode_image, reply, shared_dir};

/// Sends one captured request with our own credentials; batch GETs are pointed at the
/// batch the same replay created (the captured ids belong to the synthetic mock).
async fn send(emu: &Emu, req: &Value, created: &HashMap<&str, String>) -> Reply {
    let method = req["method"].as_str().expect("method");
    let mut path = req["path"].as_str().expect("path").to_string();
    if method == "GET" && path.contains("/batches/") {
        path = format!("/v1/batches/{}", created["dev"]);
    } else if method == "GET" && path.contains("/batchPredictionJobs/") {
        let (head, _) = path.rsplit_once('/').expect("id");
        path = format!("{head}/{}", created["vertex"]);
    }
    let mut url = emu.url(&path);
    if let Some(q) = req["query"].as_object().filter(|q| !q.is_empty()) {
        let pairs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        url = format!("{url}?{}", pairs.join("&"));
    }
    let headers = req["headers"].as_object().expect("headers");
    // A batch from a file names one of the mock's files: it names one uploaded here.
    let mut body = req["body"].clone();
    if let Some(file) = body.pointer_mut("/batch/inputConfig/fileName") {
        *file = Value::from(upload(emu, b"{\"key\":\"k\",\"request\":{\"contents\":[{\"parts\":[{\"text\":\"a fox\"}]}]}}\n").await);
    }
    let mut builder = if method == "GET" {
        emu.http.get(&url)
    } else {
        emu.http.post(&url).json(&body)
    };
    for (name, _) in headers {
        match name.to_ascii_lowercase().as_str() {
            "authorization" => builder = builder.bearer_auth(&emu.token),
            "x-goog-api-key" => builder = builder.header("x-goog-api-key", API_KEY),
            "x-server-timeout" => builder = builder.header("x-server-timeout", "120"),
            _ => {}
        }
    }
    reply(builder.send().await.expect("send")).await
}

/// Uploads `bytes` through the Files API's resumable protocol; its name.
async fn upload(emu: &Emu, bytes: &[u8]) -> String {
    let start = emu
        .http
        .post(emu.url("/upload/v1beta/files"))
        .header("x-goog-api-key", API_KEY)
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-type", "application/jsonl")
        .json(&serde_json::json!({"file": {"displayName": "requests"}}))
        .send()
        .await
        .expect("start");
    assert_eq!(start.headers()["x-goog-upload-status"], "active");
    let url = start.headers()["x-goog-upload-url"]
        .to_str()
        .expect("upload url")
        .to_string();
    let done: Value = emu
        .http
        .post(url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", "0")
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("file json");
    done["file"]["name"]
        .as_str()
        .expect("file name")
        .to_string()
}

#[tokio::test]
async fn every_captured_sdk_request_is_answered_200_with_the_shape_the_sdk_parses() {
    let emu = Emu::start(Scenario::default()).await;
    let dir = shared_dir().join("spec/captures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("captures at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut created: HashMap<&str, String> = HashMap::new();
    let mut replayed = 0;
    for file in &files {
        let capture: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("read"))
            .expect("capture json");
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        for req in capture["requests"].as_array().into_iter().flatten() {
            let r = send(&emu, req, &created).await;
            assert_eq!(r.status, 200, "{name}: {}", r.text);
            check_shape(&name, req, &r, &mut created);
            replayed += 1;
        }
    }
    assert!(replayed >= 80, "only {replayed} requests replayed");
}

fn check_shape(name: &str, req: &Value, r: &Reply, created: &mut HashMap<&str, String>) {
    let path = req["path"].as_str().unwrap_or("");
    let body = &req["body"];
    if path.ends_with(":streamGenerateContent") {
        assert!(r.content_type.starts_with("text/event-stream"), "{name}");
        let data = r
            .text
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("{name}: SSE event"));
        let event: Value = serde_json::from_str(data.trim()).expect("event json");
        check_gemini(name, path, body, &event);
    } else if path.ends_with(":generateContent") {
        check_gemini(name, path, body, &r.json());
    } else if path.ends_with(":predict") {
        check_predict(name, path, body, &r.json());
    } else if path.ends_with(":batchGenerateContent") {
        let v = r.json();
        assert_eq!(v["metadata"]["state"], "BATCH_STATE_PENDING", "{name}");
        let id = v["name"]
            .as_str()
            .and_then(|n| n.strip_prefix("batches/"))
            .expect("batch name");
        created.insert("dev", id.to_string());
    } else if path.ends_with("/batchPredictionJobs") {
        let v = r.json();
        assert_eq!(v["state"], "JOB_STATE_PENDING", "{name}");
        let id = v["name"]
            .as_str()
            .and_then(|n| n.rsplit('/').next())
            .expect("job name");
        created.insert("vertex", id.to_string());
    } else if path.contains("/batches/") {
        let v = r.json();
        assert_eq!(v["metadata"]["state"], "BATCH_STATE_SUCCEEDED", "{name}");
        let items = v["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
            .as_array()
            .expect("inlined");
        assert_eq!(items.len(), 2, "{name}");
        decode_image(
            super::first_inline(&items[0]["response"])["data"]
                .as_str()
                .expect("data"),
        );
    } else {
        assert_eq!(r.json()["state"], "JOB_STATE_SUCCEEDED", "{name}");
    }
}

fn model_of(path: &str) -> &'static catalog::ModelInfo {
    let seg = path.rsplit('/').next().unwrap_or("");
    let model = seg.split(':').next().unwrap_or("");
    catalog::lookup(model).unwrap_or_else(|| panic!("catalog has {model}"))
}

fn check_gemini(name: &str, path: &str, req: &Value, v: &Value) {
    let info = model_of(path);
    let cfg = &req["generationConfig"]["imageConfig"];
    let ratio = cfg["aspectRatio"].as_str().or(Some("1:1"));
    let (w, h) = catalog::dimensions(info, ratio, cfg["imageSize"].as_str()).expect("dims");
    let jpeg = cfg["imageOutputOptions"]["mimeType"] == "image/jpeg";
    assert_eq!(v["candidates"][0]["finishReason"], "STOP", "{name}");
    assert!(
        v["usageMetadata"]["totalTokenCount"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{name}"
    );
    assert!(
        v["responseId"].is_string() && v["modelVersion"].is_string(),
        "{name}"
    );
    let parts = v["candidates"][0]["content"]["parts"]
        .as_array()
        .expect("parts");
    let images: Vec<&Value> = parts
        .iter()
        .filter(|p| p.get("inlineData").is_some() || p.get("fileData").is_some())
        .collect();
    assert_eq!(images.len(), 1, "{name}: {parts:?}");
    assert!(images[0]["thoughtSignature"].is_string(), "{name}");
    if let Some(prefix) = req["outputConfig"]["output_uri_prefix"].as_str() {
        assert!(
            images[0]["fileData"]["fileUri"]
                .as_str()
                .is_some_and(|u| u.starts_with(prefix)),
            "{name}"
        );
        return;
    }
    let inline = &images[0]["inlineData"];
    assert_eq!(
        inline["mimeType"],
        if jpeg { "image/jpeg" } else { "image/png" },
        "{name}"
    );
    let img = decode_image(inline["data"].as_str().expect("data"));
    assert_eq!((img.width(), img.height()), (w, h), "{name}");
}

fn check_predict(name: &str, path: &str, req: &Value, v: &Value) {
    let info = model_of(path);
    let params = &req["parameters"];
    let predictions = v["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: predictions in {v}"));
    assert!(!predictions.is_empty(), "{name}");
    let images: Vec<&Value> = predictions
        .iter()
        .filter(|p| p.get("contentType").is_none())
        .collect();
    if params["mode"] != "upscale" && info.family != catalog::Family::Segmentation {
        let expected = params["sampleCount"].as_u64().unwrap_or(
            if info.family == catalog::Family::ImagenGenerate {
                4
            } else {
                1
            },
        );
        assert_eq!(images.len() as u64, expected, "{name}");
    }
    for p in images {
        if let Some(uri) = p["gcsUri"].as_str() {
            assert!(
                uri.starts_with(params["storageUri"].as_str().unwrap_or("gs://")),
                "{name}"
            );
            continue;
        }
        let img = decode_image(
            p["bytesBase64Encoded"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: bytes in {p}")),
        );
        let mime = params["outputOptions"]["mimeType"]
            .as_str()
            .unwrap_or("image/png");
        assert_eq!(
            p["mimeType"],
            if info.family == catalog::Family::Segmentation {
                "image/png"
            } else {
                mime
            },
            "{name}"
        );
        if info.family == catalog::Family::ImagenGenerate && params["mode"] != "upscale" {
            let dims = catalog::dimensions(
                info,
                params["aspectRatio"].as_str(),
                params["sampleImageSize"].as_str(),
            )
            .expect("dims");
            assert_eq!((img.width(), img.height()), dims, "{name}");
        }
        if info.family == catalog::Family::Segmentation {
            assert!(
                p["labels"][0]["label"].is_string() && p["labels"][0]["score"].is_f64(),
                "{name}"
            );
        }
    }
}
