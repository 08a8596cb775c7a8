//! Outputs on S3, GCS and Azure Blob through object_store, each against a real server of
//! that API started by the test (installed by `scripts/test`): moto for S3,
//! gcp-storage-emulator for GCS (its JSON and XML APIs, in the test venv, run by
//! `tests/stores/gcs_server.py`, which adds the headers object_store needs) and Azurite for
//! Azure Blob (npm, under `.venv/azurite`). One batch per store: the images, `result.json`
//! files and the manifest land in the store; the signed URLs in its webhooks fetch them
//! with no credentials; an input image named by the store's own URL (`s3://`, `gs://`,
//! `az://`) is read through the same options; `results --download` reads everything back.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imagegen::storage::OutputStore;

use super::webhooks::{Receiver, hooked_fleet, of_type};
use super::*;

/// Without a `-`: object_store percent-encodes it in paths and gcp-storage-emulator
/// matches bucket names undecoded.
const BUCKET: &str = "imagegen";
/// Azurite's documented development account and key (public, the same everywhere).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A store server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store a batch writes to: its URL, the object_store options that reach it, the
/// query parameter its signed URLs carry, and whether its server checks signatures
/// (Azurite does; moto and gcp-storage-emulator accept any, so for them the test shows
/// that the URLs are signed and fetch with no credentials, not that Google or AWS would
/// accept the signature: object_store's own tests hold that).
struct Store {
    server: Server,
    root: String,
    options: Vec<(String, String)>,
    signature: &'static str,
    checks_signatures: bool,
}

/// A tool from `$ENV`, else from the test venv.
fn tool(env: &str, rel: &str, installs: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv")
            .join(rel)
    });
    assert!(
        path.exists(),
        "{} not found: run scripts/test (it installs {installs}), or set {env}",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd` (told to listen on `port`) and waits until the port answers.
fn serve(mut cmd: Command, port: u16, data: tempfile::TempDir) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        port,
        _data: data,
    };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{cmd:?} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn moto() -> Store {
    let port = free_port();
    let mut cmd = Command::new(tool("MOTO_SERVER", "bin/moto_server", "moto[server]"));
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let server = serve(cmd, port, tempfile::tempdir().unwrap());
    let (status, reply) = get(&format!("http://127.0.0.1:{port}/{BUCKET}"), "PUT");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let endpoint = format!("http://127.0.0.1:{port}");
    Store {
        server,
        root: format!("s3://{BUCKET}/runs"),
        options: options(&[
            ("aws_endpoint", &endpoint),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ]),
        signature: "X-Amz-Signature",
        checks_signatures: false,
    }
}

/// GCS: a service-account key (minted by the emulator: a real RSA key, so object_store
/// authenticates with a self-signed JWT and signs V4 URLs locally, reaching no Google
/// host) and `google_base_url` pointing at the server.
fn gcs(fleet: &Fleet) -> Store {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(super::webhooks::python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stores/gcs_server.py"))
        .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--default-bucket", BUCKET, "--in-memory", "--quiet"])
        .current_dir(data.path());
    let server = serve(cmd, port, data);
    let (status, key) = http(
        "POST",
        &fleet.emulator_url,
        "/emulator/service-accounts",
        r#"{"project_id": "acme-storage"}"#,
    );
    assert_eq!(status, 200, "{key}");
    let key_file = server._data.path().join("key.json");
    std::fs::write(&key_file, key).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    Store {
        server,
        root: format!("gs://{BUCKET}/runs"),
        options: options(&[
            ("google_base_url", &base),
            ("google_allow_http", "true"),
            ("google_service_account", key_file.to_str().unwrap()),
        ]),
        signature: "X-Goog-Signature",
        checks_signatures: false,
    }
}

/// Azure Blob: Azurite with its development account, reached by `azure_storage_endpoint`
/// (path-style, the account in the path); the container is made with the official Python
/// SDK from the test venv.
fn azurite() -> Store {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tool(
        "AZURITE_BLOB",
        "azurite/node_modules/.bin/azurite-blob",
        "azurite with npm",
    ));
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(["--inMemoryPersistence", "--silent", "--skipApiVersionCheck"])
        .current_dir(data.path());
    let server = serve(cmd, port, data);
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    );
    let made = Command::new(super::webhooks::python())
        .args(["-c", "import sys; from azure.storage.blob import BlobServiceClient as C; C.from_connection_string(sys.argv[1]).create_container(sys.argv[2])"])
        .args([&connection, BUCKET])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "creating the container: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Store {
        server,
        root: format!("az://{BUCKET}/runs"),
        options: options(&[
            ("azure_storage_account_name", AZURITE_ACCOUNT),
            ("azure_storage_account_key", AZURITE_KEY),
            ("azure_storage_endpoint", &endpoint),
            ("azure_allow_http", "true"),
        ]),
        signature: "sig",
        checks_signatures: true,
    }
}

/// One plain HTTP request with no credentials: status and body (chunked bodies are left
/// as sent; callers look for bytes in them).
fn get(url: &str, method: &str) -> (u16, Vec<u8>) {
    let u = url::Url::parse(url).unwrap();
    let port = u.port().unwrap();
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).unwrap();
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply");
    let status = std::str::from_utf8(&reply[9..12]).unwrap().parse().unwrap();
    (status, reply[split + 4..].to_vec())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Fetches a signed URL with no credentials and returns its body, after checking that it
/// is signed and points at this store's server.
fn fetch_signed(store: &Store, url: &str) -> Vec<u8> {
    let parsed = url::Url::parse(url).unwrap();
    assert_eq!(parsed.port(), Some(store.server.port), "{url}");
    assert!(
        parsed.query_pairs().any(|(k, _)| k == store.signature),
        "{url} carries no {}",
        store.signature
    );
    let (status, body) = get(url, "GET");
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    // Where the server checks signatures, a forged one is refused.
    let mut forged = parsed.clone();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| match k == store.signature {
            true => (k.into_owned(), format!("0{}", &v[1..])),
            false => (k.into_owned(), v.into_owned()),
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, _) = get(forged.as_str(), "GET");
    if store.checks_signatures {
        assert_eq!(status, 403, "a forged signature was accepted: {forged}");
    }
    body
}

/// The batch every store gets: six generate lines (the first with its own webhook URL, so
/// a `job.succeeded` event carries signed image URLs), an edit of an input image stored in
/// the store itself, and an edit of one that does not exist there.
fn job_lines(rx: &Receiver, input: &str, missing: &str) -> String {
    let mut lines = format!(
        "{{\"prompt\": \"with its own hook\", \"webhook_url\": \"{}/job\"}}\n",
        rx.url
    );
    for i in 2..=6 {
        lines.push_str(&format!("{{\"prompt\": \"prompt {i}\"}}\n"));
    }
    lines.push_str(&format!(
        "{{\"op\": \"edit\", \"prompt\": \"make it blue\", \"images\": [\"{input}\"]}}\n"
    ));
    lines.push_str(&format!(
        "{{\"op\": \"edit\", \"prompt\": \"make it red\", \"images\": [\"{missing}\"]}}\n"
    ));
    lines
}

/// Runs the batch against a store and checks everything a user reads back.
fn outputs_round_trip(make: impl FnOnce(&Fleet) -> Store) {
    let (_dir, rx, mut fleet, _secret) = hooked_fleet(0, "latency_ms = 5\n", |url| {
        format!(
            "concurrency = 8\nwebhook_url = \"{url}\"\nwebhook_secret = \"env:HOOK_SECRET\"\n\
             output_url = \"OUTPUT_URL\"\n[webhooks]\nallow_private_networks = true\n"
        )
    });
    let store = make(&fleet);
    let config = std::fs::read_to_string(&fleet.config).unwrap();
    std::fs::write(&fleet.config, config.replace("OUTPUT_URL", &store.root)).unwrap();
    fleet.envs.extend(store.options.iter().map(|(k, v)| {
        (
            format!("IMAGEGEN__OUTPUT__OPTIONS__{}", k.to_uppercase()),
            v.clone(),
        )
    }));
    let reader = OutputStore::from_url(&store.root, store.options.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let input_png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cat.png"))
        .expect("examples/cat.png");
    let rel = rt
        .block_on(reader.put_input(input_png.into(), "png"))
        .unwrap();
    let input = format!("{}/{rel}", store.root);
    let missing = format!("{}/inputs/not-there.png", store.root);

    let batch = fleet.submit(
        &fleet.file("b.jsonl", &job_lines(&rx, &input, &missing)),
        &[],
    );
    fleet.spawn_worker(8);
    let status = fleet.wait_completed(&batch, Duration::from_secs(120));
    assert_eq!(count(&status, "succeeded"), 7, "{status}");
    assert_eq!(count(&status, "failed"), 1, "{status}");
    let manifest_url = status["manifest"].as_str().unwrap();
    assert_eq!(
        manifest_url,
        format!("{}/acme/{batch}/manifest.jsonl", store.root)
    );

    // The manifest, images and result.json files are in the store.
    let manifest = rt
        .block_on(reader.get(&format!("acme/{batch}/manifest.jsonl")))
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(manifest.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    for (i, line) in lines.iter().enumerate().take(7) {
        // The layout: {project}/{batch}/{seq:06}/{index}.png.
        let job = format!("{i:06}");
        assert_eq!(line["line"], (i + 1) as u64);
        assert_eq!(
            line["images"][0]["url"],
            format!("{}/acme/{batch}/{job}/0.png", store.root)
        );
        let png = rt
            .block_on(reader.get(&format!("acme/{batch}/{job}/0.png")))
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let result = rt
            .block_on(reader.get(&format!("acme/{batch}/{job}/result.json")))
            .unwrap();
        let result: Value = serde_json::from_slice(&result).unwrap();
        assert_eq!(result["status"], "succeeded");
        assert_eq!(result["images"][0]["sha256"], line["images"][0]["sha256"]);
    }
    // The missing input failed that line alone, naming the field and the object.
    let failed = &lines[7];
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("image") && error.contains("not-there.png"),
        "{failed}"
    );

    // The webhooks' signed URLs fetch the image, its result.json and the manifest with no
    // credentials at all.
    let records = rx.wait_for("job and batch events", Duration::from_secs(30), |r| {
        !of_type(r, "job.succeeded").is_empty() && !of_type(r, "batch.completed").is_empty()
    });
    let job = &of_type(&records, "job.succeeded")[0]["body"]["data"];
    let image = &job["images"][0];
    let png = fetch_signed(&store, image["signed_url"].as_str().expect("signed"));
    assert!(contains(&png, b"PNG"), "{job}");
    let result = fetch_signed(&store, job["result_signed_url"].as_str().unwrap());
    assert!(contains(
        &result,
        image["sha256"].as_str().unwrap().as_bytes()
    ));
    let batch_event = &of_type(&records, "batch.completed")[0]["body"]["data"];
    let manifest = fetch_signed(
        &store,
        batch_event["manifest_signed_url"].as_str().expect("signed"),
    );
    assert!(contains(&manifest, b"\"line\":8"), "{batch_event}");

    // `results --download` fetches them through the same store.
    let dl = fleet.dir.path().join("dl");
    let out = fleet.run(&["results", &batch, "--download", dl.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!(
        "0001-{}-0.png",
        imagegen::storage::layout::slug(lines[0]["prompt"].as_str().unwrap())
    );
    assert_eq!(png_size(&dl.join(name)), (1024, 1024));
}

#[test]
fn outputs_go_to_s3_through_object_store() {
    outputs_round_trip(|_| moto());
}

#[test]
fn outputs_go_to_gcs_through_object_store() {
    outputs_round_trip(gcs);
}

#[test]
fn outputs_go_to_azure_blob_through_object_store() {
    outputs_round_trip(|_| azurite());
}
