//! API tokens: each project's `api_tokens` (`env:VAR` or `file:PATH`, comma-separated)
//! map to that project. Tokens are kept only as SHA-256 digests and found by digest, so
//! a lookup's timing depends on the digest of what the client sent, never on how much
//! of a real token it guessed; they are never logged.

use std::collections::HashMap;

use axum::http::HeaderMap;
use sha2::{Digest as _, Sha256};

use super::error::ApiError;

/// Token digests → project.
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<[u8; 32], String>);

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Adds `token` for `project` (empty tokens are ignored).
    pub fn add(&mut self, project: &str, token: &str) {
        let token = token.trim();
        if !token.is_empty() {
            self.0.insert(digest(token), project.to_string());
        }
    }

    /// Adds every comma- or whitespace-separated token of `list`.
    pub fn add_list(&mut self, project: &str, list: &str) {
        for t in list.split([',', ' ', '\n']) {
            self.add(project, t);
        }
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The project of the request's bearer token.
    pub fn project_of(&self, headers: &HeaderMap) -> Result<&str, ApiError> {
        self.lookup(headers).map(|(_, p)| p)
    }

    /// The request's token (as its digest) and its project.
    pub fn lookup(&self, headers: &HeaderMap) -> Result<([u8; 32], &str), ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        let d = digest(token);
        self.0
            .get(&d)
            .map(|p| (d, p.as_str()))
            .ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_their_project_only() {
        let mut t = Tokens::default();
        t.add_list("a", "tok-a1, tok-a2");
        t.add("b", "tok-b");
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", v.parse().unwrap());
            h
        };
        assert_eq!(t.project_of(&h("Bearer tok-a2")).unwrap(), "a");
        assert_eq!(t.project_of(&h("Bearer tok-b")).unwrap(), "b");
        assert_eq!(
            t.project_of(&h("Bearer tok-a")).unwrap_err().error,
            "unauthorized"
        );
        assert_eq!(t.project_of(&h("tok-b")).unwrap_err().error, "unauthorized");
        assert!(t.project_of(&HeaderMap::new()).is_err());
    }
}
