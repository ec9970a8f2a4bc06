//! Operator tokens: collection `operator_token`.
//!
//! The people who run Herald sign in to the dashboard (and call `/api/v1`)
//! with a token of their own, named for them and carrying a [`Role`]:
//! a *viewer* sees everything and changes nothing; an *operator* may also
//! retry, discard, pause, resume, cancel and download. Tokens are made with
//! `herald token create --operator NAME --role viewer|operator`, shown once
//! and kept only as SHA-256 digests, like API tokens; revoking one
//! (`herald token revoke ID`) ends it and its sessions at once. The
//! configured `web.token` keeps working beside them, as an operator named
//! `web.token`.

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, DateTime, Document},
    Collection, Database,
};
use serde::{Deserialize, Serialize};

use super::{tokens::digest_index, StoreError};
use crate::secret::{digest, random_hex};

/// Name of the collection.
pub const OPERATOR_COLLECTION: &str = "operator_token";
/// Every operator token starts with this (API tokens with `hrd_`).
pub const OPERATOR_PREFIX: &str = "hro_";

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every page and answer; changes nothing.
    Viewer,
    /// Also retries, discards, pauses, resumes, cancels and downloads.
    Operator,
}

impl Role {
    /// The role's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// Whether this role may change anything.
    pub fn may_act(self) -> bool {
        self == Role::Operator
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            other => Err(format!("'{other}' is not a role: viewer or operator")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator token's record (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorToken {
    /// The token's id, used to revoke it.
    pub id: ObjectId,
    /// Who holds it, e.g. `ann`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made.
    pub created_at: DateTime,
}

impl OperatorToken {
    /// The record `document` holds; `None` when it is not whole (a record
    /// without a known role is no token).
    fn from_document(document: &Document) -> Option<Self> {
        Some(Self {
            id: document.get_object_id("_id").ok()?,
            name: document.get_str("name").ok()?.to_owned(),
            role: document.get_str("role").ok()?.parse().ok()?,
            created_at: document
                .get_datetime("createdAt")
                .copied()
                .unwrap_or(DateTime::MIN),
        })
    }
}

/// Creates, finds, lists and revokes operator tokens.
#[derive(Debug, Clone)]
pub struct OperatorTokenStore {
    collection: Collection<Document>,
}

impl OperatorTokenStore {
    /// The store in `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(OPERATOR_COLLECTION),
        }
    }

    /// Creates the unique index on the digest tokens are looked up by.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        super::ensure_indexes(
            &self.collection,
            [digest_index()],
            "createIndexes on operator_token",
        )
        .await
    }

    /// Creates a token for `name` with `role`; returns its record and the
    /// secret, which is not stored and cannot be shown again.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(OperatorToken, String), StoreError> {
        let secret = random_hex(OPERATOR_PREFIX).map_err(|e| StoreError::Random(e.to_string()))?;
        let token = OperatorToken {
            id: ObjectId::new(),
            name: name.to_owned(),
            role,
            created_at: DateTime::now(),
        };
        self.collection
            .insert_one(doc! {
                "_id": token.id, "name": name, "role": role.as_str(),
                "digest": digest(&secret), "createdAt": token.created_at,
            })
            .await
            .map_err(StoreError::command("insert into operator_token"))?;
        Ok((token, secret))
    }

    /// The token whose secret is `secret`, if it exists and is whole.
    pub async fn find(&self, secret: &str) -> Result<Option<OperatorToken>, StoreError> {
        let document = self
            .collection
            .find_one(doc! { "digest": digest(secret) })
            .await
            .map_err(StoreError::command("find in operator_token"))?;
        Ok(document.as_ref().and_then(OperatorToken::from_document))
    }

    /// The token with id `id`, if it exists.
    pub async fn get(&self, id: ObjectId) -> Result<Option<OperatorToken>, StoreError> {
        let document = self
            .collection
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::command("find in operator_token"))?;
        Ok(document.as_ref().and_then(OperatorToken::from_document))
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<OperatorToken>, StoreError> {
        let documents: Vec<Document> = self
            .collection
            .find(doc! {})
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await
            .map_err(StoreError::command("list operator_token"))?
            .try_collect()
            .await
            .map_err(StoreError::command("list operator_token"))?;
        Ok(documents
            .iter()
            .filter_map(OperatorToken::from_document)
            .collect())
    }

    /// Whether any token exists (so `herald web` has credentials without
    /// `web.token`).
    pub async fn any(&self) -> Result<bool, StoreError> {
        let one = self
            .collection
            .find_one(doc! {})
            .await
            .map_err(StoreError::command("find in operator_token"))?;
        Ok(one.is_some())
    }

    /// Deletes token `id`; the token it deleted, if there was one.
    pub async fn revoke(&self, id: ObjectId) -> Result<Option<OperatorToken>, StoreError> {
        let document = self
            .collection
            .find_one_and_delete(doc! { "_id": id })
            .await
            .map_err(StoreError::command("delete from operator_token"))?;
        Ok(document.as_ref().and_then(OperatorToken::from_document))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_and_print_as_their_names() {
        for role in [Role::Viewer, Role::Operator] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        assert!("admin".parse::<Role>().is_err());
        assert!(!Role::Viewer.may_act());
        assert!(Role::Operator.may_act());
    }

    #[test]
    fn a_record_without_a_known_role_is_no_token() {
        let base = doc! { "_id": ObjectId::new(), "name": "ann", "digest": "d" };
        let mut viewer = base.clone();
        viewer.insert("role", "viewer");
        assert_eq!(
            OperatorToken::from_document(&viewer).map(|t| t.role),
            Some(Role::Viewer)
        );
        for role in ["admin", ""] {
            let mut record = base.clone();
            record.insert("role", role);
            assert_eq!(OperatorToken::from_document(&record), None, "{role}");
        }
        assert_eq!(OperatorToken::from_document(&base), None);
    }
}
