//! Running jobs: an apalis worker over our queue ([`backend`]), settling in batches
//! ([`settler`]), with lease extension, recovery and graceful shutdown ([`runtime`]);
//! each delivery is `process_job` (decode → admit → call → classify → store → record).
//!
//! `process_job` does not know where jobs come from: Redis or the in-process queue.

mod ack;
pub mod backend;
mod inputs;
mod loops;
mod pace;
pub mod process;
pub mod runtime;
pub mod settler;
mod story;

pub use process::{JobContext, RetryPolicy, process_job};
pub use runtime::{
    Fingerprint, ProjectRuntime, ProjectWebhook, ShutdownReport, WorkerOptions, run_worker,
    worker_identity,
};
