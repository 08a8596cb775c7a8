//! Chat sessions in memory: the twin of the Redis sessions (a turn is appended only if
//! the session has the number of turns its sender saw).

use async_trait::async_trait;

use super::MemoryQueue;
use crate::queue::{QueueError, SessionRecord, SessionTurn, Sessions};

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
        self.with(project, |p, _| p.sessions.insert(fresh.id.clone(), fresh));
        Ok(())
    }

    async fn session(&self, project: &str, id: &str) -> Result<Option<SessionRecord>, QueueError> {
        Ok(self.with(project, |p, _| p.sessions.get(id).cloned()))
    }

    async fn append_turn(
        &self,
        project: &str,
        id: &str,
        expected: usize,
        turn: &SessionTurn,
    ) -> Result<bool, QueueError> {
        Ok(self.with(project, |p, _| match p.sessions.get_mut(id) {
            Some(s) if s.turns.len() == expected => {
                s.turns.push(turn.clone());
                true
            }
            _ => false,
        }))
    }
}
