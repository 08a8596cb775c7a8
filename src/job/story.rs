//! Stories: a line `{"op": "story", "description", "frames", "chain", …}` becomes jobs
//! of its batch that wait for each other in the queue (`NewJob::deps`):
//!
//! 1. a `plan` job on a Gemini text model (`planner_model`) that answers the frames'
//!    prompts as JSON under a response schema — unless the line gives `frame_prompts`;
//! 2. one job per frame: `generate` for the first (and for every frame with `chain:
//!    "none"`), `edit` with an input image for the others: the previous frame's image
//!    (`previous`, strictly in order) or the first frame's (`anchor`, in parallel once the
//!    first is done), named `{"output_of": "#<seq>"}` and read by the worker from that
//!    job's record;
//! 3. an `assemble` job that waits for every frame whatever became of it and writes
//!    `story.json` and the contact sheet.
//!
//! A frame whose dependency failed or was blocked is cancelled by the queue naming it
//! ("frame 3 was blocked: …"); the assembly then says `partial` or `failed`. References
//! between the jobs are positions in the batch (`#<seq>`), so a story line expands the
//! same way whatever batch it lands in (idempotent submits compare the expansion).

use serde::{Deserialize, Serialize};

use super::spec::{JobSpec, Operation};
use super::{ImageInput, ImageSource};

/// Most frames a story may have.
pub const MAX_FRAMES: u32 = 24;

/// The lane of story assemblies (they call no model).
pub const ASSEMBLY_LANE: &str = "story-assembly";

/// The default planner: a current Flash text model (spec §11: `gemini-3.5-flash`, GA).
pub const DEFAULT_PLANNER: &str = "gemini-3.5-flash";

/// How a story's frames stay consistent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// Frame k gets frame k-1's image (strictly in order).
    #[default]
    Previous,
    /// Every frame after the first gets the first frame's image (in parallel).
    Anchor,
    /// Independent frames.
    None,
}

/// Which story a job belongs to, and which frame it is (0: the plan or the assembly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoryRef {
    /// The story's id (`story-<line>`, or the line's `story_id`).
    pub id: String,
    /// The frame, from 1; 0 for the plan and the assembly.
    pub frame: u32,
    /// Frames in the story.
    pub frames: u32,
    /// The frame whose image this frame is made from (`chain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
}

/// One job of an expanded story: its spec and the jobs it waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryJob {
    /// The job.
    pub spec: JobSpec,
    /// (offset of the job it waits for within the story, its name, whether it runs
    /// whatever became of that job: the assembly does).
    pub deps: Vec<(u64, String, bool)>,
}

/// `#<seq>`: the job at `seq` of the same batch.
pub fn local_ref(seq: u64) -> String {
    format!("#{seq}")
}

/// The job id `reference` names for a job of `batch` (`#<seq>` or an id as is).
pub fn resolve_ref(reference: &str, batch: Option<&str>) -> String {
    match (
        reference.strip_prefix('#').and_then(|s| s.parse().ok()),
        batch,
    ) {
        (Some(seq), Some(b)) => super::batch_job_id(b, seq),
        _ => reference.to_string(),
    }
}

/// The name of frame `k` in reasons.
pub fn frame_name(k: u32) -> String {
    format!("frame {k}")
}

/// What a frame is asked, given its own prompt: the story's style and, for a frame made
/// from another, the consistency it must keep.
pub fn frame_prompt(prompt: &str, style: Option<&str>, from: Option<u32>) -> String {
    let mut text = prompt.trim().to_string();
    if let Some(style) = style.map(str::trim).filter(|s| !s.is_empty()) {
        text.push_str(&format!("\nStyle: {style}."));
    }
    if let Some(k) = from {
        text.push_str(&format!(
            "\nThis is the next image of a sequence: keep the characters, objects, setting and style of the input image (frame {k}) consistent."
        ));
    }
    text
}

/// The jobs of a story line `line` (validated), the first at batch position `first`.
pub fn expand(line: &JobSpec, line_no: usize, first: u64) -> Vec<StoryJob> {
    let frames = line.frames.unwrap_or(1).max(1);
    let chain = line.chain.unwrap_or_default();
    let id = format!("story-{line_no}");
    let story = |frame| StoryRef {
        id: id.clone(),
        frame,
        frames,
        from: None,
    };
    let mut jobs = Vec::new();
    let planned = line.frame_prompts.is_empty();
    if planned {
        jobs.push(StoryJob {
            spec: JobSpec {
                op: Operation::Plan,
                model: line
                    .planner_model
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PLANNER.to_string()),
                description: line.description.clone(),
                frames: Some(frames),
                content_type: line.content_type.clone(),
                style: line.style.clone(),
                story: Some(story(0)),
                labels: line.labels.clone(),
                metadata: line.metadata.clone(),
                ..JobSpec::default()
            },
            deps: Vec::new(),
        });
    }
    let frame0 = jobs.len() as u64; // offset of frame 1
    for k in 1..=frames {
        let from = match chain {
            Chain::Previous if k > 1 => Some(k - 1),
            Chain::Anchor if k > 1 => Some(1),
            _ => None,
        };
        let mut deps = Vec::new();
        if planned {
            deps.push((0, "the plan".to_string(), false));
        }
        let mut spec = JobSpec {
            op: if from.is_some() {
                Operation::Edit
            } else {
                Operation::Generate
            },
            story: Some(StoryRef { from, ..story(k) }),
            plan_of: planned.then(|| local_ref(first)),
            chain: None,
            ..frame_fields(line)
        };
        let own = line
            .frame_prompts
            .get(k as usize - 1)
            .cloned()
            // Replaced by the planned prompt when the frame runs.
            .unwrap_or_else(|| line.description.clone().unwrap_or_default());
        spec.prompt = Some(if planned {
            own
        } else {
            frame_prompt(&own, line.style.as_deref(), from)
        });
        if let Some(f) = from {
            let offset = frame0 + u64::from(f) - 1;
            deps.push((offset, frame_name(f), false));
            spec.images = vec![ImageInput {
                source: ImageSource::Output {
                    job: local_ref(first + offset),
                    index: 0,
                },
                mime_type: None,
            }];
        }
        jobs.push(StoryJob { spec, deps });
    }
    let frame_jobs = (0..u64::from(frames))
        .map(|i| local_ref(first + frame0 + i))
        .collect::<Vec<_>>();
    jobs.push(StoryJob {
        spec: JobSpec {
            op: Operation::Assemble,
            model: String::new(),
            description: line.description.clone(),
            frames: Some(frames),
            story: Some(story(0)),
            plan_of: planned.then(|| local_ref(first)),
            frame_jobs,
            webhook_url: line.webhook_url.clone(),
            metadata: line.metadata.clone(),
            ..JobSpec::default()
        },
        // Every frame, whatever became of it.
        deps: (0..u64::from(frames))
            .map(|i| (frame0 + i, frame_name(i as u32 + 1), true))
            .collect(),
    });
    jobs
}

/// The fields a story line passes to its frames: everything but the story's own.
fn frame_fields(line: &JobSpec) -> JobSpec {
    JobSpec {
        op: Operation::Generate,
        description: None,
        frames: None,
        content_type: None,
        style: line.style.clone(),
        chain: None,
        planner_model: None,
        frame_prompts: Vec::new(),
        webhook_url: None,
        ..line.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> JobSpec {
        JobSpec::from_json(json).unwrap()
    }

    #[test]
    fn a_planned_chain_waits_for_the_plan_and_the_frame_before() {
        let jobs = expand(
            &line(
                r#"{"op":"story","model":"gemini-3.1-flash-image","description":"pizza","frames":3}"#,
            ),
            4,
            10,
        );
        let ops: Vec<_> = jobs.iter().map(|j| j.spec.op).collect();
        assert_eq!(
            ops,
            [
                Operation::Plan,
                Operation::Generate,
                Operation::Edit,
                Operation::Edit,
                Operation::Assemble
            ]
        );
        assert_eq!(jobs[0].spec.model, DEFAULT_PLANNER);
        assert_eq!(jobs[1].deps, vec![(0, "the plan".to_string(), false)]);
        assert_eq!(
            jobs[3].deps,
            vec![
                (0, "the plan".to_string(), false),
                (2, "frame 2".to_string(), false)
            ]
        );
        assert_eq!(jobs[4].deps.len(), 3);
        assert!(jobs[4].deps.iter().all(|d| d.2));
        assert_eq!(
            jobs[3].spec.images[0].source,
            ImageSource::Output {
                job: "#12".into(),
                index: 0
            }
        );
        assert_eq!(jobs[4].spec.frame_jobs, ["#11", "#12", "#13"]);
        assert_eq!(jobs[2].spec.story.as_ref().unwrap().id, "story-4");
    }

    #[test]
    fn given_prompts_and_an_anchor_skip_planning_and_fan_out() {
        let jobs = expand(
            &line(
                r#"{"op":"story","model":"gemini-3.1-flash-image","frames":3,"chain":"anchor","style":"ink","frame_prompts":["a","b","c"]}"#,
            ),
            1,
            0,
        );
        assert_eq!(jobs.len(), 4);
        assert!(jobs[0].deps.is_empty());
        assert_eq!(jobs[1].deps, vec![(0, "frame 1".to_string(), false)]);
        assert_eq!(jobs[2].deps, vec![(0, "frame 1".to_string(), false)]);
        assert!(
            jobs[2]
                .spec
                .prompt
                .as_deref()
                .unwrap()
                .starts_with("c\nStyle: ink.")
        );
        assert!(jobs[1].spec.plan_of.is_none());
    }
}
