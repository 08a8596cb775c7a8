//! Running jobs: `process_job` (call → classify → store → record), with retries of
//! transient errors under `backon`.
//!
//! It must not know where jobs come from (file, queue) — callers feed it.

pub mod process;

pub use process::{JobContext, RetryPolicy, process_job};
