//! Stories on a fleet: 20 stories × 6 frames (`anchor` and `previous` mixed) in one
//! file across two workers, one of them killed with SIGKILL mid-run; a story whose
//! frame 3 is blocked ends `partial`, frames 4–6 cancelled naming frame 3; `status
//! STORY_ID` shows each frame's state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn sha256_file(path: &Path) -> String {
    imagegen::storage::sha256_hex(&std::fs::read(path).unwrap())
}

#[test]
fn twenty_stories_on_two_workers_survive_a_kill_and_a_blocked_frame_cancels_the_rest() {
    let mut fleet = Fleet::start("latency_ms = 150\n", "concurrency = 24\n", 0);
    fleet.spawn_worker(12);
    fleet.spawn_worker(12);
    const BLOCKED: usize = 7;
    let mut lines = String::new();
    for i in 1..=20 {
        let chain = if i % 2 == 0 { "anchor" } else { "previous" };
        let line = if i == BLOCKED {
            serde_json::json!({"op": "story", "frames": 6, "chain": "previous",
                "frame_prompts": ["a kettle on a stove", "the kettle starts to steam",
                    "[[blocked]] the kettle boils over", "steam fills the kitchen",
                    "a cup of tea is poured", "the empty kettle cools"]})
        } else {
            serde_json::json!({"op": "story", "frames": 6, "chain": chain,
                "description": format!("story {i}: a paper boat's trip down a rain gutter"),
                "style": "watercolour"})
        };
        lines.push_str(&format!("{line}\n"));
    }
    let file = fleet.file("stories.jsonl", &lines);
    let out = fleet
        .cmd()
        .args(["submit", "--project", "acme"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let batch = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let blocked_id = format!("{batch}.story-{BLOCKED}");
    assert!(stderr.contains(&format!("story {blocked_id}")), "{stderr}");
    // 20 plans + 120 frames + 20 assemblies; kill -9 one worker a third of the way in.
    fleet.wait_until(&batch, Duration::from_secs(120), "50 jobs done", |s| {
        s["done"].as_u64().unwrap_or(0) >= 50
    });
    fleet.workers[0].kill().unwrap();
    fleet.workers[0].wait().unwrap();
    fleet.spawn_worker(12);
    let status = fleet.wait_completed(&batch, Duration::from_secs(300));
    assert_eq!(status["done"], 159, "{status}");

    let mut files = Vec::new();
    walk(&fleet.dir.path().join("out"), &mut files);
    let story_json = |i: usize| -> serde_json::Value {
        let p = files
            .iter()
            .find(|p| p.ends_with(format!("stories/story-{i}/story.json")))
            .unwrap_or_else(|| panic!("no story.json of story-{i}"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut frames_made = 0;
    for i in 1..=20 {
        let story = story_json(i);
        let frames = story["frames"].as_array().unwrap();
        assert_eq!(
            frames
                .iter()
                .map(|f| f["index"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6],
            "{story:#}"
        );
        if i == BLOCKED {
            assert_eq!(story["status"], "partial", "{story:#}");
            assert_eq!(frames[2]["status"], "blocked", "{story:#}");
            for f in &frames[3..] {
                assert_eq!(f["status"], "cancelled", "{f:#}");
                assert!(
                    f["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("frame 3 was blocked"),
                    "{f:#}"
                );
            }
            frames_made += 2;
            continue;
        }
        assert_eq!(story["status"], "completed", "{story:#}");
        let prompts: std::collections::HashSet<&str> = frames
            .iter()
            .map(|f| f["prompt"].as_str().unwrap())
            .collect();
        assert_eq!(prompts.len(), 6, "{story:#}");
        for (k, f) in frames.iter().enumerate() {
            let path: PathBuf = f["image"]["url"]
                .as_str()
                .unwrap()
                .strip_prefix("file://")
                .unwrap()
                .into();
            assert_eq!(sha256_file(&path), f["image"]["sha256"].as_str().unwrap());
            let from = match (k, i % 2) {
                (0, _) => continue,
                (_, 0) => 0, // anchor: made from frame 1
                _ => k - 1,  // previous: made from the frame before
            };
            assert_eq!(
                f["inputs"][0]["sha256"],
                frames[from]["image"]["sha256"],
                "story {i} frame {}",
                k + 1
            );
        }
        frames_made += 6;
    }
    // Each frame written once: one image per frame job (a re-run after the kill writes
    // the same file again), one copy per frame in its story's folder.
    let job_images = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .filter(|p| !p.to_string_lossy().contains("/stories/"))
        .count();
    assert_eq!(job_images, frames_made);
    let mut copies: HashMap<String, usize> = HashMap::new();
    for p in files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/stories/"))
    {
        let dir = p.parent().unwrap().to_string_lossy().into_owned();
        *copies.entry(dir).or_default() += usize::from(
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("frame-"),
        );
    }
    assert_eq!(copies.len(), 20);
    assert_eq!(copies.values().sum::<usize>(), frames_made);

    // `status STORY_ID`: each frame's state, the reason of the cancelled ones.
    let shown = fleet.run(&["status", &blocked_id]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(
        text.contains(&format!("story     {blocked_id} (partial)")),
        "{text}"
    );
    assert!(text.contains("frame  3  blocked"), "{text}");
    assert!(text.contains("frame  4  cancelled"), "{text}");
    let json = fleet.status(&blocked_id);
    let states: Vec<&str> = json["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "succeeded",
            "succeeded",
            "blocked",
            "cancelled",
            "cancelled",
            "cancelled"
        ],
        "{json:#}"
    );
    assert!(
        json["contact_sheet"]["url"]
            .as_str()
            .unwrap()
            .ends_with("contact-sheet.png")
    );
}
