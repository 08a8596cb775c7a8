//! `imagegen run` through the real binary: embedded defaults (no Redis, in-process
//! emulator, local disk) produce the images of `examples/prompts.txt`; a bad line stops
//! everything with its line number.

use std::process::Command;

pub fn imagegen() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagegen"));
    // No config file or project overrides from the developer's environment.
    cmd.env_remove("IMAGEGEN_CONFIG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("IMAGEGEN__")) {
        cmd.env_remove(k);
    }
    cmd
}

pub fn pngs_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "png") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn run_on_the_example_prompts_writes_one_image_per_prompt_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prompts.txt");
    let out = imagegen()
        .current_dir(dir.path())
        .args(["run", examples])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prompts = std::fs::read_to_string(examples).unwrap();
    let expected = prompts
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let pngs = pngs_under(&dir.path().join("imagegen-out"));
    assert_eq!(pngs.len(), expected, "{stdout}");
    for png in &pngs {
        let img = image::open(png).unwrap();
        assert_eq!((img.width(), img.height()), (1024, 1024));
        assert!(
            stdout.contains(&png.display().to_string()),
            "{stdout} should list {}",
            png.display()
        );
        assert!(png.with_file_name("result.json").exists());
    }
    assert!(stdout.contains("manifest.jsonl"));
    let manifest = pngs[0]
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("manifest.jsonl");
    let lines: Vec<u64> = std::fs::read_to_string(&manifest)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let file_lines: Vec<u64> = prompts
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(lines, file_lines, "manifest lists jobs in file order");
}

#[test]
fn an_invalid_line_is_reported_with_its_number_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\":\"a cat\"}\n{\"prompt\":\"a dog\",\"aspect_ratio\":\"7:3\"}\n",
    )
    .unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: aspect_ratio"), "{stderr}");
    assert!(pngs_under(dir.path()).is_empty());
}

#[test]
fn blocked_prompts_make_run_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.txt");
    std::fs::write(&file, "a cat\na dog [[blocked]]\n").unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("blocked"), "{stdout}");
    assert_eq!(pngs_under(dir.path()).len(), 1);
}

#[test]
fn files_are_named_by_the_template_and_the_manifest_carries_prompt_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.txt");
    std::fs::write(&file, "# foxes\nA red fox, in the snow!\nA blue heron\n").unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .env("IMAGEGEN__OUTPUT__NAME_TEMPLATE", "{line}-{slug}-{index}")
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = pngs_under(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0002-a-red-fox-in-the-snow-0.png",
            "0003-a-blue-heron-0.png"
        ]
    );
    // run's table: line → file.
    let row = stdout
        .lines()
        .find(|l| l.contains("0002-a-red-fox-in-the-snow-0.png"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.trim_start().starts_with("2 "), "{row}");
    let manifest = pngs_under(dir.path())[0]
        .parent()
        .unwrap()
        .join("manifest.jsonl");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(manifest)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["prompt"], "A red fox, in the snow!");
    let path = rows[0]["images"][0]["path"].as_str().unwrap();
    assert!(std::path::Path::new(path).exists(), "{path}");
    // The default layout: {project}/{batch}/{seq:06}/{index}.png.
    let out = imagegen()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap(), "--out", "file://./plain"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let plain = pngs_under(&dir.path().join("plain"));
    let rel: Vec<String> = plain
        .iter()
        .map(|p| {
            let p = p.strip_prefix(dir.path().join("plain")).unwrap();
            let parts: Vec<String> = p.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            format!("{}/<batch>/{}/{}", parts[0], parts[2], parts[3])
        })
        .collect();
    assert!(
        rel.contains(&"local/<batch>/000000/0.png".to_string()),
        "{rel:?}"
    );
}

#[test]
fn transient_errors_do_not_flood_the_terminal_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(&scenario, "latency_ms = 1\n[faults]\nrate_500 = 0.5\n").unwrap();
    let file = dir.path().join("p.txt");
    std::fs::write(
        &file,
        (0..12).map(|i| format!("prompt {i}\n")).collect::<String>(),
    )
    .unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .env("IMAGEGEN__EMULATOR__SCENARIO", &scenario)
        .env("IMAGEGEN__WORKER__MAX_ATTEMPTS", "30")
        .env("IMAGEGEN__WORKER__RETRY_MIN", "10ms")
        .env("IMAGEGEN__WORKER__RETRY_MAX", "50ms")
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no colour when stderr is not a terminal: {stderr:?}"
    );
    assert!(stdout.contains("retry(ies) or deferral(s)"), "{stdout}");
}

#[test]
fn a_typo_in_the_config_is_refused_once_with_the_nearest_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[project.acme]\nbackend = \"vertex\"\ngcp_project = \"acme-prod\"\n",
    )
    .unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .args(["--config", config.to_str().unwrap(), "run"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prompts.txt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("did you mean `projects`"), "{stderr}");
    assert_eq!(
        stderr.matches("unknown section").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        pngs_under(dir.path()).is_empty(),
        "nothing ran against the emulator"
    );
}

#[test]
fn run_says_what_an_outage_holds_and_max_wait_still_bounds_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(
        &scenario,
        "latency_ms = 1\nretired_models = [\"gemini-3.1-flash-image\"]\n",
    )
    .unwrap();
    let jobs = dir.path().join("p.txt");
    let prompts: String = (0..30).map(|i| format!("a fox, take {i}\n")).collect();
    std::fs::write(&jobs, prompts).unwrap();
    let started = std::time::Instant::now();
    let out = imagegen()
        .current_dir(dir.path())
        .env("IMAGEGEN__EMULATOR__SCENARIO", &scenario)
        .env("IMAGEGEN__WORKER__HOLD_PROBE", "30s")
        .env("IMAGEGEN__WORKER__MAX_WAIT", "4s")
        .arg("run")
        .arg(&jobs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("held: model gemini-3.1-flash-image is model_unavailable"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("held: model").count(),
        1,
        "said once: {stderr}"
    );
    // Held, not failed at once: the jobs waited for max_wait, then ended with why, all
    // together (not one per 30 s probe).
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_secs(4), "{took:?}");
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    assert!(stdout.contains("max_wait 4 s"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("failed") && l.trim_end().ends_with(" 30")),
        "all 30 failed: {stdout}"
    );
}

/// `story.json` of story `id` under `dir`.
fn story_json(dir: &std::path::Path, id: &str) -> serde_json::Value {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with(format!("stories/{id}/story.json")) {
                return serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    panic!("no story.json of {id} under {}", dir.display());
}

fn file_of(url: &serde_json::Value) -> std::path::PathBuf {
    url.as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .into()
}

#[test]
fn a_story_line_runs_its_frames_in_order_with_a_plan_and_a_contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stories.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"op": "story", "description": "A step-by-step visual guide for making homemade pizza, from the dough to the baked pizza", "frames": 5, "content_type": "recipe", "style": "clean food photography", "chain": "previous"}"#,
            "\n",
            r#"{"op": "story", "frames": 4, "chain": "previous", "frame_prompts": ["a kite on the grass", "the kite lifting off", "the kite caught in a tree [[blocked]]", "the kite free again"]}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a frame was blocked: {stdout}{stderr}"
    );

    // The planned chain: 5 frames in order, distinct planned prompts, each made from
    // the one before (its input is that frame's image, by hash), files as hashed.
    let story = story_json(dir.path(), "story-1");
    assert_eq!(story["status"], "completed", "{story:#}");
    let frames = story["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 5);
    assert_eq!(story["plan"]["frames"].as_array().unwrap().len(), 5);
    let mut prompts = std::collections::HashSet::new();
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(f["index"], k + 1);
        assert_eq!(f["status"], "succeeded");
        let prompt = f["prompt"].as_str().unwrap();
        assert!(
            !prompt.trim().is_empty() && prompts.insert(prompt.to_string()),
            "{prompt}"
        );
        let image = &f["image"];
        let bytes = std::fs::read(file_of(&image["url"])).unwrap();
        assert_eq!(
            imagegen::storage::sha256_hex(&bytes),
            image["sha256"].as_str().unwrap()
        );
        let inputs: Vec<&str> = f["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["sha256"].as_str())
            .collect();
        if k == 0 {
            assert!(inputs.is_empty(), "frame 1 has no input: {inputs:?}");
        } else {
            assert_eq!(inputs, [frames[k - 1]["image"]["sha256"].as_str().unwrap()]);
        }
    }
    let sheet = std::fs::read(file_of(&story["contact_sheet"])).unwrap();
    assert_eq!(
        imagegen::storage::dimensions(&sheet),
        (1024, 688),
        "3 columns, 2 rows"
    );

    // Given prompts, frame 3 blocked: frame 4 (made from it) is cancelled naming it.
    let story = story_json(dir.path(), "story-2");
    assert_eq!(story["status"], "partial", "{story:#}");
    let states: Vec<&str> = story["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded", "succeeded", "blocked", "cancelled"]);
    let why = story["frames"][3]["error"].as_str().unwrap();
    assert!(why.starts_with("frame 3 was blocked"), "{why}");
    assert!(
        story["reason"]
            .as_str()
            .unwrap()
            .starts_with("frame 3 blocked")
    );
    assert!(story["plan"].is_null(), "given prompts are not planned");
}

#[test]
fn imagegen_story_is_the_one_line_form() {
    let dir = tempfile::tempdir().unwrap();
    let out = imagegen()
        .current_dir(dir.path())
        .args([
            "story",
            "a paper boat's trip down a rain gutter",
            "--frames",
            "3",
            "--chain",
            "anchor",
            "--style",
            "watercolour",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stories/story-1/contact-sheet.png"),
        "{stdout}"
    );
    let story = story_json(dir.path(), "story-1");
    assert_eq!(story["status"], "completed", "{story:#}");
    let frames = story["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    // Anchor: frames 2 and 3 are both made from frame 1.
    let first = frames[0]["image"]["sha256"].as_str().unwrap();
    for f in &frames[1..] {
        assert_eq!(f["inputs"][0]["sha256"].as_str(), Some(first));
    }
}

/// The `result.json` of job `id` under `dir`.
fn result_json(dir: &std::path::Path, id: &str) -> serde_json::Value {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with("result.json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                if v["job_id"] == id {
                    return v;
                }
            }
        }
    }
    panic!("no result.json of {id} under {}", dir.display());
}

#[test]
fn imagegen_chat_runs_turns_that_see_each_other_and_takes_an_image() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    // An image of the user's own to attach: one `run` made.
    let prompts = dir.path().join("p.txt");
    std::fs::write(&prompts, "a red kite over a beach\n").unwrap();
    let made = imagegen()
        .current_dir(dir.path())
        .args(["run", prompts.to_str().unwrap(), "--out", "file://./mine"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mine = pngs_under(&dir.path().join("mine"));
    assert_eq!(mine.len(), 1);
    let mut child = imagegen()
        .current_dir(dir.path())
        .arg("chat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "Create a professional headshot of a business executive"
    )
    .unwrap();
    writeln!(stdin, "/image {}", mine[0].display()).unwrap();
    writeln!(stdin, "Put this kite in the background").unwrap();
    writeln!(stdin, "/image {}", dir.path().join("missing.png").display()).unwrap();
    writeln!(stdin, "Make the lighting softer").unwrap();
    writeln!(stdin, "/quit").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each turn printed where its image is, and the file is there.
    let images: Vec<(u32, std::path::PathBuf)> = stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("turn ")?;
            let (n, path) = rest.split_once(" image: ")?;
            Some((n.parse().ok()?, path.into()))
        })
        .collect();
    assert_eq!(
        images.iter().map(|i| i.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "{stdout}"
    );
    for (_, path) in &images {
        assert!(path.is_file(), "{} in {stdout}", path.display());
    }
    assert!(stdout.contains("missing.png"), "{stdout}");
    // The third turn sent the conversation: both earlier turns, the attached image by
    // its stored copy, and the first answer's image by reference.
    let third_job = stdout
        .lines()
        .find_map(|l| l.strip_prefix("turn 3 (job ")?.strip_suffix("):"))
        .unwrap_or_else(|| panic!("no job of turn 3 in {stdout}"));
    let third = result_json(dir.path(), third_job);
    let history = third["request"]["history"].as_array().unwrap();
    let roles: Vec<&str> = history
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user", "model"], "{third:#}");
    assert_eq!(
        history[2]["parts"][0]["text"],
        "Put this kite in the background"
    );
    assert!(
        history[2]["parts"][1]["fileData"]["fileUri"]
            .as_str()
            .unwrap()
            .contains("/inputs/")
    );
    let first_image = format!("file://{}", images[0].1.display());
    assert!(
        history[1]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["fileData"]["fileUri"] == first_image.as_str()),
        "{history:#?}"
    );
}
