//! `MemoryQueue`: the in-process twin of `RedisQueue` for `imagegen run`, with the same
//! semantics (leases, fencing, delayed retries, dead letters, counters, exactly-once
//! batch completion) from the same rules ([`crate::queue::rules`]). Nothing survives the
//! process, which is the point of embedded mode: the job file is the durable input.
//!
//! One file per role, as the traits: [`jobs`](self::jobs), [`lanes`](self::lanes),
//! [`outbox`](self::outbox), [`records`](self::records), [`sessions`](self::sessions); the typed state in `state`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::QueueOptions;

mod admit;
mod jobs;
mod lanes;
mod outbox;
mod records;
mod sessions;
mod state;

use state::Project;

#[derive(Default)]
struct State {
    projects: HashMap<String, Project>,
    next_token: u64,
}

/// The in-process queue. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    options: QueueOptions,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(options: QueueOptions) -> Self {
        MemoryQueue {
            state: Arc::default(),
            options,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the project (created on first use) and the token counter.
    fn with<T>(&self, project: &str, f: impl FnOnce(&mut Project, &mut u64) -> T) -> T {
        let mut st = self.lock();
        let State {
            projects,
            next_token,
        } = &mut *st;
        f(projects.entry(project.to_string()).or_default(), next_token)
    }
}
