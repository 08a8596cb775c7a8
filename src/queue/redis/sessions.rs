//! Chat sessions on Redis: the session's settings as one JSON string and its turns as a
//! list, both under the project's hash tag and kept for the queue's retention after
//! the last turn. A turn is appended by `session_append.lua` only if the session has
//! the number of turns its sender saw.

use async_trait::async_trait;
use redis::AsyncCommands as _;

use super::RedisQueue;
use crate::queue::{QueueError, SessionRecord, SessionTurn, Sessions};

fn corrupt(what: &str, e: serde_json::Error) -> QueueError {
    QueueError::Corrupt(format!("{what}: {e}"))
}

impl RedisQueue {
    fn session_keys(&self, project: &str, id: &str) -> [String; 2] {
        let k = self.key(project, &format!("sess:{id}"));
        [k.clone(), format!("{k}:t")]
    }
}

#[async_trait]
impl Sessions for RedisQueue {
    async fn create_session(
        &self,
        project: &str,
        session: &SessionRecord,
    ) -> Result<(), QueueError> {
        let [key, _] = self.session_keys(project, &session.id);
        let meta = SessionRecord {
            turns: Vec::new(),
            ..session.clone()
        };
        let json = serde_json::to_string(&meta).map_err(|e| corrupt("session", e))?;
        let mut conn = self.conn.clone();
        let () = conn
            .set_ex(key, json, self.options.retention.as_secs().max(1))
            .await?;
        Ok(())
    }

    async fn session(&self, project: &str, id: &str) -> Result<Option<SessionRecord>, QueueError> {
        let [key, turns_key] = self.session_keys(project, id);
        let mut conn = self.conn.clone();
        let (meta, turns): (Option<String>, Vec<String>) = redis::pipe()
            .get(key)
            .lrange(turns_key, 0, -1)
            .query_async(&mut conn)
            .await?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let mut session: SessionRecord =
            serde_json::from_str(&meta).map_err(|e| corrupt("session", e))?;
        session.turns = turns
            .iter()
            .map(|t| serde_json::from_str(t).map_err(|e| corrupt("session turn", e)))
            .collect::<Result<_, _>>()?;
        Ok(Some(session))
    }

    async fn append_turn(
        &self,
        project: &str,
        id: &str,
        expected: usize,
        turn: &SessionTurn,
    ) -> Result<bool, QueueError> {
        let [key, turns_key] = self.session_keys(project, id);
        let json = serde_json::to_string(turn).map_err(|e| corrupt("session turn", e))?;
        let mut conn = self.conn.clone();
        let appended: i64 = self
            .scripts
            .session_append
            .key(key)
            .key(turns_key)
            .arg(expected)
            .arg(json)
            .arg(self.options.retention.as_secs().max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(appended == 1)
    }
}
