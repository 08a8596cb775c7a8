//! Chat sessions on Redis, under the project's hash tag: the session's settings as one
//! JSON string, its turns as a list (appended by `session_append.lua`, which answers
//! the turn before so the new turn's job waits for it), and the answers in a hash by
//! turn index (`session_answer.lua`). Every change refreshes the three keys' TTL.

use async_trait::async_trait;
use redis::AsyncCommands as _;

use super::RedisQueue;
use crate::job::Content;
use crate::queue::{QueueError, SessionRecord, SessionTurn, Sessions};

fn corrupt(what: &str, e: serde_json::Error) -> QueueError {
    QueueError::Corrupt(format!("{what}: {e}"))
}

fn turn_of(json: &str) -> Result<SessionTurn, QueueError> {
    serde_json::from_str(json).map_err(|e| corrupt("session turn", e))
}

impl RedisQueue {
    fn session_keys(&self, project: &str, id: &str) -> [String; 3] {
        let k = self.key(project, &format!("sess:{id}"));
        [k.clone(), format!("{k}:t"), format!("{k}:a")]
    }

    fn session_ttl_s(&self) -> u64 {
        self.options.session_ttl.as_secs().max(1)
    }
}

#[async_trait]
impl Sessions for RedisQueue {
    async fn create_session(
        &self,
        project: &str,
        session: &SessionRecord,
    ) -> Result<(), QueueError> {
        let [key, ..] = self.session_keys(project, &session.id);
        let meta = SessionRecord {
            turns: Vec::new(),
            ..session.clone()
        };
        let json = serde_json::to_string(&meta).map_err(|e| corrupt("session", e))?;
        let mut conn = self.conn.clone();
        let () = conn.set_ex(key, json, self.session_ttl_s()).await?;
        Ok(())
    }

    async fn session(&self, project: &str, id: &str) -> Result<Option<SessionRecord>, QueueError> {
        let [key, turns_key, answers_key] = self.session_keys(project, id);
        let mut conn = self.conn.clone();
        let (meta, turns, answers): (Option<String>, Vec<String>, Vec<(usize, String)>) =
            redis::pipe()
                .get(key)
                .lrange(turns_key, 0, -1)
                .hgetall(answers_key)
                .query_async(&mut conn)
                .await?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let mut session: SessionRecord =
            serde_json::from_str(&meta).map_err(|e| corrupt("session", e))?;
        session.turns = turns.iter().map(|t| turn_of(t)).collect::<Result<_, _>>()?;
        for (index, answer) in answers {
            if let Some(turn) = session.turns.get_mut(index) {
                turn.answer =
                    Some(serde_json::from_str(&answer).map_err(|e| corrupt("session answer", e))?);
            }
        }
        Ok(Some(session))
    }

    async fn append_turn(
        &self,
        project: &str,
        id: &str,
        turn: &SessionTurn,
    ) -> Result<Option<(usize, Option<SessionTurn>)>, QueueError> {
        let [key, turns_key, answers_key] = self.session_keys(project, id);
        let json = serde_json::to_string(turn).map_err(|e| corrupt("session turn", e))?;
        let mut conn = self.conn.clone();
        let appended: Option<(usize, Option<String>)> = self
            .scripts
            .session_append
            .key(key)
            .key(turns_key)
            .key(answers_key)
            .arg(json)
            .arg(self.session_ttl_s())
            .invoke_async(&mut conn)
            .await?;
        appended
            .map(|(index, before)| Ok((index, before.as_deref().map(turn_of).transpose()?)))
            .transpose()
    }

    async fn answer_turn(
        &self,
        project: &str,
        id: &str,
        index: usize,
        answer: &Content,
    ) -> Result<bool, QueueError> {
        let [key, turns_key, answers_key] = self.session_keys(project, id);
        let json = serde_json::to_string(answer).map_err(|e| corrupt("session answer", e))?;
        let mut conn = self.conn.clone();
        let kept: i64 = self
            .scripts
            .session_answer
            .key(key)
            .key(turns_key)
            .key(answers_key)
            .arg(index)
            .arg(json)
            .arg(self.session_ttl_s())
            .invoke_async(&mut conn)
            .await?;
        Ok(kept == 1)
    }

    async fn delete_session(&self, project: &str, id: &str) -> Result<bool, QueueError> {
        let [key, turns_key, answers_key] = self.session_keys(project, id);
        let mut conn = self.conn.clone();
        let gone: i64 = conn.del(&[key.as_str(), &turns_key, &answers_key]).await?;
        Ok(gone > 0)
    }
}
