//! imagegen: a job-queue batch worker for Google's image models.
//!
//! The library holds every component; `main.rs` only parses the command line and
//! dispatches to `cli`.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod job;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod netguard;
pub mod providers;
pub mod queue;
pub mod storage;
pub mod submit;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
