//! The job model: `JobSpec` (what a user asks for), its validation per model, and the
//! identifiers and states of jobs.
//!
//! Nothing here talks to a network, a queue or a provider.

pub mod batch_file;
pub mod content;
pub mod enums;
pub mod image;
pub mod result;
pub mod spec;
pub mod story;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use content::{Blob, Content, FileData, Part};
pub use image::{ImageInput, ImageSource};
pub use spec::{JobSpec, Operation, SPEC_VERSION};
pub use validate::{ValidationContext, ValidationError, ValidationErrors, validate};

/// A job's identifier: a time-ordered UUIDv7 in its hyphenated form, readable in paths
/// and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7().to_string())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a job is in its lifecycle (DESIGN.md "Job lifecycle").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting in its project's queue (or for a retry).
    #[default]
    Queued,
    /// A worker holds it.
    Running,
    /// Images stored.
    Succeeded,
    /// The provider refused on safety/policy grounds; never retried.
    Blocked,
    /// Permanent error or retry budget spent.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Blocked,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// True once the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Blocked | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Blocked => "blocked",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown job status `{s}`"))
    }
}

/// The id of job number `seq` (0-based, in submit order) of batch `batch`:
/// `{batch}.{seq:06}`. Ids are deterministic so a resumed submit never duplicates a
/// job and a batch's jobs can be enumerated without an index; the zero padding keeps
/// them in order when listed.
pub fn batch_job_id(batch: &str, seq: u64) -> String {
    format!("{batch}.{seq:06}")
}

/// The batch and sequence number of a job id made by [`batch_job_id`].
pub fn split_job_id(job: &str) -> Option<(&str, u64)> {
    let (batch, seq) = job.rsplit_once('.')?;
    Some((batch, seq.parse().ok()?))
}
