//! Outputs on S3: a real S3-API server (moto, installed into the test venv by
//! `scripts/test`) started by this test; the worker writes images, `result.json` and
//! the manifest through object_store, and `results --download` reads them back.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imagegen::storage::OutputStore;

use super::*;

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_binary() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"))
}

fn start_moto() -> Moto {
    let bin = moto_binary();
    assert!(
        bin.exists(),
        "{} not found: run scripts/test (it installs moto[server] into .venv), or set MOTO_SERVER",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto(child, port)
}

fn create_bucket(port: u16, bucket: &str) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn outputs_go_to_s3_through_object_store() {
    let moto = start_moto();
    create_bucket(moto.1, "imagegen-test");
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
    let mut fleet = Fleet::start(
        "latency_ms = 5\n",
        "output_url = \"s3://imagegen-test/runs\"",
        0,
    );
    let options = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
    ];
    fleet.envs = options
        .iter()
        .map(|(k, v)| {
            (
                format!("IMAGEGEN__OUTPUT__OPTIONS__{}", k.to_uppercase()),
                v.to_string(),
            )
        })
        .collect();
    let file = fleet.file("p.txt", &prompts(25));
    let batch = fleet.submit(&file, &[]);
    fleet.spawn_worker(8);
    let status = fleet.wait_completed(&batch, Duration::from_secs(120));
    assert_eq!(count(&status, "succeeded"), 25, "{status}");
    let manifest_url = status["manifest"].as_str().unwrap();
    assert_eq!(
        manifest_url,
        format!("s3://imagegen-test/runs/acme/{batch}/manifest.jsonl")
    );

    // Read it back from the S3 server with object_store, as a user's tool would.
    let store = OutputStore::from_url(
        "s3://imagegen-test/runs",
        options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let manifest = rt
        .block_on(store.get(&format!("acme/{batch}/manifest.jsonl")))
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(manifest.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 25);
    for (i, line) in lines.iter().enumerate() {
        // The layout: {project}/{batch}/{seq:06}/{index}.png.
        let job = format!("{i:06}");
        assert_eq!(line["line"], (i + 1) as u64);
        let url = line["images"][0]["url"].as_str().unwrap();
        assert_eq!(
            url,
            format!("s3://imagegen-test/runs/acme/{batch}/{job}/0.png")
        );
        let png = rt
            .block_on(store.get(&format!("acme/{batch}/{job}/0.png")))
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1024);
        let result = rt
            .block_on(store.get(&format!("acme/{batch}/{job}/result.json")))
            .unwrap();
        let result: Value = serde_json::from_slice(&result).unwrap();
        assert_eq!(result["status"], "succeeded");
        assert_eq!(result["images"][0]["sha256"], line["images"][0]["sha256"]);
    }
    // Signed URLs (what webhook payloads carry) fetch the object without credentials.
    let first_url = lines[0]["images"][0]["url"].as_str().unwrap();
    let signed = rt
        .block_on(store.signed_url(first_url, Duration::from_secs(600)))
        .expect("S3 signs URLs");
    let signed = url::Url::parse(&signed).unwrap();
    assert!(
        signed.query().unwrap().contains("X-Amz-Signature="),
        "{signed}"
    );
    let mut conn = TcpStream::connect(("127.0.0.1", moto.1)).unwrap();
    write!(
        conn,
        "GET {}?{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        signed.path(),
        signed.query().unwrap(),
        moto.1
    )
    .unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply[..split])
    );
    assert_eq!(&reply[split + 5..split + 8], b"PNG");
    // And `results --download` fetches them through the same store.
    let dl = fleet.dir.path().join("dl");
    let out = fleet.run(&["results", &batch, "--download", dl.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Downloads are named by line and prompt.
    let name = format!(
        "0001-{}-0.png",
        imagegen::storage::layout::slug(lines[0]["prompt"].as_str().unwrap())
    );
    assert_eq!(png_size(&dl.join(name)), (1024, 1024));
}
