//! Admission and claim in memory (as `claim.lua`): due retries back, the project's and
//! the lanes' allowances from the rules, holds and their probes, and the `max_wait`
//! sweep of held or parked lanes.

use std::time::Instant;

use super::state::{Hold, Project};
use crate::job::{JobStatus, split_job_id};
use crate::limits::HoldReason;
use crate::queue::rules::{self, Allowance};
use crate::queue::{Claim, Claimed, Lease, QueueOptions, now_ms};

impl Project {
    /// Due retries back into their lanes' queues.
    pub(super) fn release_due(&mut self, now: u64) {
        while let Some((at, _)) = self.delayed.first()
            && *at <= now
        {
            let (_, job) = self.delayed.pop_first().expect("first");
            let (lane, urgent) = self
                .jobs
                .get(&job)
                .map(|j| (j.lane.clone(), j.urgent))
                .unwrap_or_default();
            self.lane(&lane).ready.push(job, urgent);
        }
    }

    /// Takes up to `allow` of the lane's queued jobs (interactive ones first, or only
    /// of the kind `only` names): each either starts (a lease for `worker`) or fails on
    /// the way as the rules say. Returns those that started.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        lane: &str,
        allow: u64,
        only: Option<bool>,
        worker: &str,
        next: &mut u64,
        o: &QueueOptions,
        now: u64,
    ) -> (Vec<Claimed>, Vec<String>) {
        let mut out = Vec::new();
        let mut completed = Vec::new();
        let mut admitted = 0;
        while admitted < allow {
            let Some(id) = self.lane(lane).ready.pop(only) else {
                break;
            };
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            if j.status != JobStatus::Queued || j.spec.is_none() {
                // Cancelled while queued (or expired): drop the entry.
                continue;
            }
            *next += 1;
            let token = format!("m-{next}");
            j.status = JobStatus::Running;
            j.token = Some(token.clone());
            j.first_started_ms.get_or_insert(now);
            let lease = Lease {
                project: String::new(),
                job: id.clone(),
                token: token.clone(),
                lane: lane.to_string(),
            };
            let claimed = j.deliver(lease, worker, now);
            let enqueued = j.enqueued_ms;
            self.move_status(&id, JobStatus::Queued, JobStatus::Running);
            if let Some((b, _)) = split_job_id(&id)
                && let Some(bt) = self.batches.get_mut(b)
            {
                bt.first_ms.get_or_insert(now);
            }
            let max_wait = o.max_wait.as_millis() as u64;
            let fail = rules::at_claim(
                claimed.deliveries,
                o.max_deliveries,
                enqueued,
                now,
                max_wait,
            );
            if let Some(f) = fail {
                completed.extend(self.fail_running(&id, &f, now));
                continue;
            }
            admitted += 1;
            self.pending
                .insert(token, (id, worker.to_string(), Instant::now()));
            out.push(claimed);
        }
        (out, completed)
    }

    /// Held or parked work still ends at `max_wait` (as `claim.lua`'s sweep): the lane's
    /// oldest queued jobs that waited past it are taken and fail at claim (at most
    /// 1,000 per call).
    fn sweep(
        &mut self,
        lane: &str,
        worker: &str,
        next: &mut u64,
        o: &QueueOptions,
        now: u64,
        claim: &mut Claim,
    ) {
        let max_wait = o.max_wait.as_millis() as u64;
        if max_wait == 0 {
            return;
        }
        for urgent in [true, false] {
            let ready = &self.lanes[lane].ready;
            let queue = if urgent {
                &ready.urgent
            } else {
                &ready.backlog
            };
            let n = queue
                .iter()
                .take(1000)
                .take_while(|id| {
                    self.jobs
                        .get(*id)
                        .is_none_or(|j| now.saturating_sub(j.enqueued_ms) > max_wait)
                })
                .count();
            if n > 0 {
                let (started, completed) =
                    self.take(lane, n as u64, Some(urgent), worker, next, o, now);
                claim.jobs.extend(started);
                claim.completed.extend(completed);
            }
        }
    }

    /// What a daily budget leaves of `free` (as `claim.lua`'s `budget_gate`): the
    /// project's (`model` None) or a lane's. Running jobs hold their estimate; a spent
    /// budget holds the scope (`budget_exhausted`, with `lane.held`) until the next UTC
    /// day, and admission ends the hold (`lane.resumed`) once the day or the budget
    /// leaves room again. Returns the allowance and whether the scope is held.
    fn budget_gate(
        &mut self,
        project: &str,
        model: Option<&str>,
        free: u64,
        now: u64,
        claim: &mut Claim,
    ) -> (u64, bool) {
        let (budget, running) = match model {
            None => (self.limits.budget, self.running()),
            Some(m) => (
                self.limits
                    .model_budgets
                    .get(m)
                    .copied()
                    .unwrap_or_default(),
                self.lanes.get(m).map_or(0, |l| l.state.run),
            ),
        };
        let held = match model {
            None => self.budget_hold.is_some(),
            Some(m) => self.lanes.get(m).is_some_and(|l| l.budget_hold.is_some()),
        };
        if budget.per_day == 0 && !held {
            return (free, false);
        }
        let spent = self
            .spend
            .get(&crate::queue::spend_field(now, model))
            .copied()
            .unwrap_or(0);
        if budget.per_day > 0
            && rules::budget_allowance(1, budget.per_day, spent, 0, budget.job_estimate) == 0
        {
            claim.wake_ms = rules::earliest(claim.wake_ms, Some(rules::next_day_ms(now)));
            if !held {
                let hold = Hold {
                    reason: HoldReason::BudgetExhausted,
                    message: format!(
                        "spent ${:.2} of its ${:.2} daily budget; resumes at 00:00 UTC or when budget_usd_per_day is raised",
                        spent as f64 / crate::pricing::NANO,
                        budget.per_day as f64 / crate::pricing::NANO
                    ),
                    since_ms: now,
                    probes: 0,
                };
                self.held(project, model, &hold, now);
                *budget_slot(self, model) = Some(hold);
            }
            return (0, true);
        }
        if let Some(h) = budget_slot(self, model).take() {
            self.resumed(project, model, &h, now);
        }
        let allow =
            rules::budget_allowance(free, budget.per_day, spent, running, budget.job_estimate);
        (free.min(allow), false)
    }

    /// Admission over the project's lanes, round robin, and the claim (as `claim.lua`).
    pub(super) fn claim(
        &mut self,
        project: &str,
        worker: &str,
        max: usize,
        next: &mut u64,
        o: &QueueOptions,
    ) -> Claim {
        let now = now_ms();
        self.release_due(now);
        let plimit = self.limits.project;
        let want = max.max(1) as u64;
        let p =
            rules::held_allowance(want, self.running(), self.hold_ms, now).unwrap_or_else(|| {
                rules::project_allowance(want, plimit, self.running(), self.tat, now)
            });
        let mut claim = Claim {
            jobs: Vec::new(),
            wake_ms: p.wake_ms,
            completed: Vec::new(),
        };
        let mut free = self.budget_gate(project, None, p.allow, now, &mut claim).0;
        let names: Vec<String> = self.lanes.keys().cloned().collect();
        if self.hold.is_some() || self.budget_hold.is_some() {
            for name in &names {
                self.sweep(name, worker, next, o, now, &mut claim);
            }
        }
        self.rr = self.rr.wrapping_add(1);
        for k in 0..names.len() {
            if free == 0 {
                break;
            }
            let name = &names[(self.rr + k) % names.len()];
            if self.lanes[name].ready.is_empty() {
                continue;
            }
            let limit = self.limits.lane(name);
            let Allowance { allow, wake_ms } =
                rules::lane_allowance(free, limit, &self.lanes[name].state, now);
            claim.wake_ms = rules::earliest(claim.wake_ms, wake_ms);
            let (allow, budget_held) =
                self.budget_gate(project, Some(name), allow, now, &mut claim);
            if budget_held {
                self.sweep(name, worker, next, o, now, &mut claim);
            }
            let s = &self.lanes[name].state;
            if allow == 0 && self.hold.is_none() && (s.hold_ms > 0 || s.park_ms > now) {
                self.sweep(name, worker, next, o, now, &mut claim);
            }
            let (started, completed) = self.take(name, allow, None, worker, next, o, now);
            claim.completed.extend(completed);
            let got = started.len() as u64;
            claim.jobs.extend(started);
            if got > 0 {
                free -= got;
                let base = o.hold_probe.as_millis() as u64;
                let l = self.lane(name);
                if let Some(h) = &mut l.hold {
                    l.state.hold_ms =
                        now + rules::probe_delay(h.probes, base, rules::HOLD_PROBE_MAX_MS);
                    h.probes += 1;
                }
                if let Some(h) = &mut self.hold {
                    self.hold_ms =
                        now + rules::probe_delay(h.probes, base, rules::HOLD_PROBE_MAX_MS);
                    h.probes += 1;
                }
                if limit.rpm > 0 {
                    let l = &mut self.lane(name).state;
                    l.tat = rules::gcra_spend(l.tat, now, got, 60_000.0 / limit.rpm as f64);
                }
                if plimit.rpm > 0 {
                    self.tat = rules::gcra_spend(self.tat, now, got, 60_000.0 / plimit.rpm as f64);
                }
            }
        }
        claim
    }
}

/// Where a budget's hold is kept: the project's (`model` None) or its lane's.
fn budget_slot<'a>(p: &'a mut Project, model: Option<&str>) -> &'a mut Option<Hold> {
    match model {
        None => &mut p.budget_hold,
        Some(m) => &mut p.lane(m).budget_hold,
    }
}
