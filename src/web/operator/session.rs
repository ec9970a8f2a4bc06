//! Dashboard sessions, kept in Redis.
//!
//! Signing in makes a new session: a random 32-byte id (from the operating
//! system), given to the browser in the `herald_session` cookie and never
//! stored — Redis keeps the session under the id's SHA-256 digest, with
//! who signed in (name, role, the token used) and an expiry of
//! `web.session_ttl_secs`. So:
//!
//! - a copied Redis holds no usable cookie;
//! - every sign-in gets a new id (a session id set before sign-in is never
//!   adopted);
//! - signing out deletes the session, and the cookie stops working at once;
//! - revoking an operator token (`herald token revoke`) deletes every
//!   session made with it, through a set per token;
//! - a session made with the configured `web.token` holds the token's
//!   digest, and ends when the configured token changes.
//!
//! Keys share the hash tag `{NAMESPACE:web}`, so on a Redis Cluster the
//! session and its token's set are on one node.

use std::time::Duration;

use herald_jobs::{Namespace, RedisConnection};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{
    secret::{digest, is_well_formed, random_hex},
    store::operators::Role,
};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "herald_session";

/// Which credential a session was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// The configured `web.token`, by its digest.
    Configured {
        /// SHA-256 of the token, hex.
        digest: String,
    },
    /// An operator token, by its id.
    Operator {
        /// The token's id, 24-hex.
        id: String,
    },
}

impl Credential {
    /// The key of the set of this credential's sessions.
    fn set_suffix(&self) -> String {
        match self {
            Credential::Configured { digest } => format!("configured:{digest}"),
            Credential::Operator { id } => format!("operator:{id}"),
        }
    }
}

/// The hash tag every session key of `namespace` starts with, `{NAMESPACE:web}`.
pub fn key_tag(namespace: &Namespace) -> String {
    format!("{{{}:web}}", namespace.as_str())
}

/// The key of the session whose id has the SHA-256 `id_digest` (hex), under `tag`.
pub fn session_key(tag: &str, id_digest: &str) -> String {
    format!("{tag}:session:{id_digest}")
}

/// The key of the set of the sessions made with `credential`, under `tag`.
pub fn sessions_key(tag: &str, credential: &Credential) -> String {
    format!("{tag}:sessions:{}", credential.set_suffix())
}

/// What a session holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Who signed in.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// What they signed in with.
    pub credential: Credential,
    /// When, in Unix milliseconds.
    pub created_ms: u64,
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Redis failed.
    #[error("Redis failed for sessions: {0}")]
    Redis(#[from] redis::RedisError),
    /// The operating system's random source failed.
    #[error("cannot read random bytes: {0}")]
    Random(String),
}

/// The sessions of one namespace.
#[derive(Clone)]
pub struct Sessions {
    redis: RedisConnection,
    tag: String,
    ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Whether `id` has the form of a session id (64 lowercase hex digits).
fn well_formed(id: &str) -> bool {
    is_well_formed(id, "")
}

impl Sessions {
    /// Sessions under `namespace`, lasting `ttl`.
    pub fn new(redis: RedisConnection, namespace: &Namespace, ttl: Duration) -> Self {
        Self {
            redis,
            tag: key_tag(namespace),
            ttl,
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The key of the session with id `id`.
    fn key_of(&self, id: &str) -> String {
        session_key(&self.tag, &digest(id))
    }

    /// The key of the set of the sessions made with `credential`.
    fn set_of(&self, credential: &Credential) -> String {
        sessions_key(&self.tag, credential)
    }

    /// Starts a session for `session`; returns its id, for the cookie.
    pub async fn create(&self, session: &Session) -> Result<String, SessionError> {
        let id = random_hex("").map_err(|e| SessionError::Random(e.to_string()))?;
        let key = self.key_of(&id);
        let set = self.set_of(&session.credential);
        let value = serde_json::to_string(session).unwrap_or_default();
        let ttl_ms = self.ttl.as_millis() as u64;
        let mut redis = self.redis.clone();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(&set)
            .arg(&key)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&set)
            .arg(ttl_ms)
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        Ok(id)
    }

    /// The live session with id `id`, if there is one.
    pub async fn find(&self, id: &str) -> Result<Option<Session>, SessionError> {
        if !well_formed(id) {
            return Ok(None);
        }
        let mut redis = self.redis.clone();
        let value: Option<String> = redis.get(self.key_of(id)).await?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Ends the session `id`; whether there was one.
    pub async fn end(&self, id: &str) -> Result<bool, SessionError> {
        if !well_formed(id) {
            return Ok(false);
        }
        let mut redis = self.redis.clone();
        let removed: u64 = redis.del(self.key_of(id)).await?;
        Ok(removed > 0)
    }

    /// Ends every session made with `credential`; how many there were.
    pub async fn end_all(&self, credential: &Credential) -> Result<u64, SessionError> {
        let set = self.set_of(credential);
        let mut redis = self.redis.clone();
        let keys: Vec<String> = redis.smembers(&set).await?;
        let mut ended = 0;
        for key in &keys {
            let removed: u64 = redis.del(key).await?;
            ended += removed;
        }
        let _: u64 = redis.del(&set).await?;
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_session_shaped_ids_are_looked_up() {
        assert!(well_formed(&"a1".repeat(32)));
        for bad in [
            "",
            "abc",
            &"A1".repeat(32),
            &"a1".repeat(33),
            &"zz".repeat(32),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn a_session_reads_back_as_written() {
        let session = Session {
            name: "ann".into(),
            role: Role::Viewer,
            credential: Credential::Operator {
                id: "65a1f0c2e4b0a1b2c3d4e5f6".into(),
            },
            created_ms: 1,
        };
        let json = serde_json::to_string(&session).unwrap();
        assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), session);
        assert!(json.contains(r#""role":"viewer""#), "{json}");
    }
}
