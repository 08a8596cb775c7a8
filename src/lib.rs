//! imagegen: a job-queue batch worker for Google's image models.
//!
//! The library holds every component; `main.rs` only parses the command line and
//! dispatches to `cli`. Modules in dependency order: each uses only those above it
//! (`python3 ../shared/tools/modgraph.py src` checks it).
//!
//! - [`catalog`]: the models, their operations and limits (no dependencies).
//! - [`config`]: the settings as plain data, loaded and validated (names the key).
//! - [`job`]: job specs, the job file, ids, statuses, the compact result.
//! - [`netguard`]: the SSRF guard every outbound fetch and delivery goes through.
//! - [`telemetry`]: logging set-up.
//! - [`storage`]: outputs through `object_store`, and their layout.
//! - [`limits`]: the vocabulary of cluster-wide limits (lanes, throttles).
//! - [`queue`]: the durable queue by role (jobs, lanes, outbox, records), its rules
//!   (`queue::rules`, pure; the Lua scripts are their twin), Redis and memory.
//! - [`providers`]: Vertex AI and the Gemini API, credentials, input images.
//! - [`metrics`]: the process's Prometheus series.
//! - [`manifest`]: a batch's manifest, written from the queue's records.
//! - [`stories`]: a story's state, read from the queue's records.
//! - [`health`]: `/metrics` (with the cluster-wide series), `/healthz`, `/readyz`.
//! - [`webhooks`]: signed deliveries from the queue's outbox.
//! - [`submit`]: checking and enqueueing a job file.
//! - [`worker`]: running jobs (an apalis worker over the queue).
//! - [`api`]: the HTTP API over the queue (the guide's endpoints and `/v1`).
//! - [`emulator`]: the stand-in for Google's APIs (a server of its own).
//! - [`cli`]: the commands, which put the pieces together.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod health;
pub mod job;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod netguard;
pub mod pricing;
pub mod providers;
pub mod queue;
pub mod storage;
pub mod stories;
pub mod submit;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
