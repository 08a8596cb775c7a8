//! The README's tours run as written: the fleet tour's `$ ` commands in bash (Redis from
//! `REDIS_URL`, the emulator on 127.0.0.1:8090, `imagegen` on PATH), and its JSONL
//! examples, which are `examples/jobs.jsonl` line for line.

use std::path::Path;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The fenced block of `kind` that follows the first line containing `after`.
fn block_after(text: &str, after: &str, kind: &str) -> Vec<String> {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("README lost `{after}`"));
    let rest = &text[start..];
    let open = rest.find(&format!("```{kind}\n")).expect("a block") + kind.len() + 4;
    let close = rest[open..].find("```").expect("a closed block") + open;
    rest[open..close].lines().map(str::to_string).collect()
}

/// A copy of the repository's examples in a fresh folder.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("examples").join(e.file_name())).unwrap();
    }
    dir
}

fn path_with_imagegen() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_imagegen")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_readme_jsonl_examples_are_the_example_file_and_run() {
    let text = readme();
    let shown = block_after(&text, "JSONL job specs, like `examples/jobs.jsonl`", "json");
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/jobs.jsonl"))
        .unwrap();
    assert_eq!(
        shown,
        file.lines().collect::<Vec<_>>(),
        "README and examples/jobs.jsonl differ"
    );
    let dir = workspace();
    let out = Command::new(env!("CARGO_BIN_EXE_imagegen"))
        .current_dir(dir.path())
        .env_remove("IMAGEGEN_CONFIG")
        .args(["run", "examples/jobs.jsonl"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_fleet_tour_runs_as_written() {
    let text = readme();
    let commands: Vec<String> = block_after(&text, "this runs as written", "console")
        .into_iter()
        .filter_map(|l| l.strip_prefix("$ ").map(str::to_string))
        .collect();
    assert!(commands.len() >= 5, "{commands:?}");
    let dir = workspace();
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}\n",
        commands.join("\n")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path_with_imagegen())
        .env_remove("IMAGEGEN_CONFIG")
        .output()
        .unwrap();
    let logs = ["worker.log", "emulator.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "the tour failed:\n{script}\nstdout:\n{}\nstderr:\n{}\nlogs:\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pics: Vec<String> = std::fs::read_dir(dir.path().join("pics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        pics.contains(&"0002-a-lighthouse-on-a-cliff-at-dusk-oil-0.png".to_string()),
        "{pics:?}"
    );
    assert_eq!(
        pics.iter().filter(|p| p.ends_with(".png")).count(),
        5,
        "{pics:?}"
    );
    assert!(pics.contains(&"manifest.jsonl".to_string()));
    // What the README says `ls pics` shows.
    for name in pics.iter().filter(|p| p.ends_with(".png")) {
        assert!(text.contains(name.as_str()), "README lists {name}");
    }
}
