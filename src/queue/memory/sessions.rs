//! Chat sessions in memory: the twin of the Redis sessions (turns appended atomically,
//! answers kept beside them, a session gone once untouched for the session TTL).

use async_trait::async_trait;

use super::MemoryQueue;
use super::state::Project;
use crate::job::Content;
use crate::queue::{QueueError, SessionRecord, SessionTurn, Sessions, now_ms};

impl MemoryQueue {
    /// The live session `id` (one past its TTL is dropped), touched now when `touch`
    /// (a turn or an answer: reading it is not activity, as on Redis).
    fn live_session<'a>(
        &self,
        p: &'a mut Project,
        id: &str,
        touch: bool,
    ) -> Option<&'a mut SessionRecord> {
        let now = now_ms();
        let ttl = self.options.session_ttl.as_millis() as u64;
        if p.sessions
            .get(id)
            .is_some_and(|(_, at)| now.saturating_sub(*at) > ttl)
        {
            p.sessions.remove(id);
        }
        p.sessions.get_mut(id).map(|(s, at)| {
            if touch {
                *at = now;
            }
            s
        })
    }
}

#[async_trait]
impl Sessions for MemoryQueue {
    async fn create_session(
        &self,
        project: &str,
        session: &SessionRecord,
    ) -> Result<(), QueueError> {
        let fresh = SessionRecord {
            turns: Vec::new(),
            ..session.clone()
        };
        self.with(project, |p, _| {
            p.sessions.insert(fresh.id.clone(), (fresh, now_ms()))
        });
        Ok(())
    }

    async fn session(&self, project: &str, id: &str) -> Result<Option<SessionRecord>, QueueError> {
        Ok(self.with(project, |p, _| {
            self.live_session(p, id, false).map(|s| s.clone())
        }))
    }

    async fn append_turn(
        &self,
        project: &str,
        id: &str,
        turn: &SessionTurn,
    ) -> Result<Option<(usize, Option<SessionTurn>)>, QueueError> {
        Ok(self.with(project, |p, _| {
            let s = self.live_session(p, id, true)?;
            let before = s.turns.last().cloned();
            s.turns.push(turn.clone());
            Some((s.turns.len() - 1, before))
        }))
    }

    async fn answer_turn(
        &self,
        project: &str,
        id: &str,
        index: usize,
        answer: &Content,
    ) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| {
            match self
                .live_session(p, id, true)
                .and_then(|s| s.turns.get_mut(index))
            {
                Some(t) => {
                    t.answer = Some(answer.clone());
                    true
                }
                None => false,
            }
        }))
    }

    async fn delete_session(&self, project: &str, id: &str) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| {
            self.live_session(p, id, false).is_some() && p.sessions.remove(id).is_some()
        }))
    }
}
