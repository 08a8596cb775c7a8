//! A story's state, read from the queue's records: what `imagegen status STORY_ID` and
//! `GET /v1/stories/{id}` show while it runs and after.
//!
//! A story is known as `<batch>.story-<line>`: the story on line `line` of batch
//! `batch` (the API's stories are line 1 of a batch of their own). Its frames are the
//! jobs between the first its assembly waits for and the assembly itself
//! (`Records::story_span`), so reading one story never scans its batch.

use serde::Serialize;

use crate::job::result::StoredImage;
use crate::job::{JobStatus, batch_job_id};
use crate::queue::{JobQueue, QueueError};

/// A story's id, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryId {
    /// Its batch.
    pub batch: String,
    /// Its line in the batch's job file.
    pub line: u64,
}

impl StoryId {
    /// `<batch>.story-<line>`, or `None` for anything else (a job or batch id).
    pub fn parse(id: &str) -> Option<StoryId> {
        let (batch, rest) = id.rsplit_once('.')?;
        let line = rest.strip_prefix("story-")?.parse().ok()?;
        (!batch.is_empty()).then(|| StoryId {
            batch: batch.to_string(),
            line,
        })
    }

    /// Its text form.
    pub fn text(&self) -> String {
        format!("{}.story-{}", self.batch, self.line)
    }
}

/// One frame's state.
#[derive(Debug, Clone, Serialize)]
pub struct FrameState {
    /// Its number, from 1.
    pub index: u64,
    /// Its job.
    pub job_id: String,
    /// `queued` (waiting for the plan or the frame it is made from, or for capacity),
    /// `running`, or how it ended.
    pub status: JobStatus,
    /// Jobs it still waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<u64>,
    /// The prompt it ran with (once it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Why it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<StoredImage>,
}

/// A story's state.
#[derive(Debug, Clone, Serialize)]
pub struct StoryState {
    /// `<batch>.story-<line>`.
    pub story_id: String,
    /// Its batch.
    pub batch_id: String,
    /// `queued`, `running`, then `completed`, `partial` (some frames failed), `failed`
    /// or `cancelled`.
    pub status: String,
    /// What the assembly said (`story story-1: partial, 2 of 6 frames (frame 3 …)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The frames in order.
    pub frames: Vec<FrameState>,
    /// The contact sheet, once assembled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_sheet: Option<StoredImage>,
    /// `story.json`, once assembled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub story_json: Option<String>,
}

/// The story `id` of `project`, or `None` when its batch has no such story (or its
/// records have expired).
pub async fn read(
    queue: &dyn JobQueue,
    project: &str,
    id: &StoryId,
) -> Result<Option<StoryState>, QueueError> {
    let Some((first, last)) = queue.story_span(project, &id.batch, id.line).await? else {
        return Ok(None);
    };
    let records = queue
        .batch_jobs(project, &id.batch, first, last + 1)
        .await?;
    let mut frames = Vec::new();
    for (n, seq) in (first..last).enumerate() {
        let record = records.get(n).cloned().flatten();
        let result = record.as_ref().and_then(|r| r.result.clone());
        frames.push(FrameState {
            index: n as u64 + 1,
            job_id: batch_job_id(&id.batch, seq),
            status: record.as_ref().map_or(JobStatus::Queued, |r| r.status),
            waiting_for: record.as_ref().and_then(|r| r.waiting_for),
            prompt: result.as_ref().and_then(|r| r.prompt.clone()),
            error: record.as_ref().and_then(|r| r.error.clone()),
            image: result.and_then(|r| r.images.into_iter().next()),
        });
    }
    let assembly = records.last().cloned().flatten();
    let assembled = assembly
        .as_ref()
        .filter(|r| r.status == JobStatus::Succeeded)
        .and_then(|r| r.result.clone());
    let summary = assembled.as_ref().and_then(|r| r.text.first().cloned());
    let contact_sheet = assembled.and_then(|r| r.images.into_iter().next());
    let status = match (&summary, &assembly) {
        (Some(s), _) => ["completed", "partial", "failed"]
            .into_iter()
            .find(|w| s.contains(&format!(": {w},")))
            .unwrap_or("failed")
            .to_string(),
        (None, Some(a)) if a.status.is_terminal() => a.status.as_str().to_string(),
        _ if frames.iter().any(|f| f.status != JobStatus::Queued) => "running".into(),
        _ => "queued".into(),
    };
    Ok(Some(StoryState {
        story_id: id.text(),
        batch_id: id.batch.clone(),
        status,
        summary,
        story_json: contact_sheet.as_ref().map(|s| story_json_beside(&s.url)),
        frames,
        contact_sheet,
    }))
}

/// `story.json`'s URL: beside the contact sheet (the assembly writes both).
pub fn story_json_beside(contact_sheet: &str) -> String {
    match contact_sheet.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/story.json"),
        None => "story.json".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn story_ids_parse_and_print_and_refuse_job_ids() {
        let id = StoryId::parse("01JABC.story-12").unwrap();
        assert_eq!((id.batch.as_str(), id.line), ("01JABC", 12));
        assert_eq!(id.text(), "01JABC.story-12");
        assert_eq!(StoryId::parse("01JABC.000012"), None);
        assert_eq!(StoryId::parse("01JABC"), None);
        assert_eq!(StoryId::parse(".story-1"), None);
    }
}
