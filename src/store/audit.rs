//! The audit trail: collection `audit`, one record per operator action.
//!
//! Every action that changes something or hands data out — retrying or
//! discarding failed jobs (one, chosen, or in bulk, with the filter and the
//! count), pausing and resuming a queue, cancelling or downloading an
//! export, creating and revoking tokens, signing in and out — is recorded
//! with who did it (the operator's name, role and how they were
//! authenticated), what (the action, its target, how many), when, from
//! where (the client's address, or the host for the CLI), and how it
//! ended.
//!
//! The record is written *before* the action ([`AuditLog::begin`]) and
//! completed after it ([`AuditLog::finish`]): an action whose record cannot
//! be written is not carried out, so nothing happens that the trail does
//! not show. A record left `started` is an action whose end was not seen
//! (the process died, or the database went away in between).
//!
//! Records are kept `web.audit_keep_days` ([`AuditLog::sweep`]).

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    options::IndexOptions,
    Collection, Database, IndexModel,
};
use serde::Serialize;

use super::StoreError;

/// Name of the collection.
pub const AUDIT_COLLECTION: &str = "audit";

/// Most records one page of the trail holds.
pub const MAX_AUDIT_PAGE: i64 = 500;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Actor {
    /// The operator's name (`web.token` for the configured token, `cli:USER`
    /// for the command line).
    pub name: String,
    /// Their role: `viewer` or `operator`.
    pub role: String,
    /// How they were authenticated: `token`, `session` or `cli`.
    pub via: String,
    /// The client's address (or the CLI's host), and what forwarded it.
    pub from: String,
}

/// One action, as the trail shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The record's id (24-hex).
    pub id: String,
    /// When the action began (RFC 3339, UTC).
    pub at: String,
    /// Who acted.
    pub actor: Actor,
    /// What: `retry`, `discard`, `retry_bulk`, `discard_bulk`, `pause`,
    /// `resume`, `export_cancel`, `export_download`, `token_create`,
    /// `token_revoke`, `sign_in`, `sign_out`.
    pub action: String,
    /// What it acted on: queue, job ids, filter, account, export key, token.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    /// How many jobs, exports or tokens it concerned, once known.
    pub count: Option<u64>,
    /// `started`, `ok`, or `failed: <why>`.
    pub outcome: String,
}

/// Narrows the trail. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this operator's actions.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records older than this one (the previous page's last).
    pub before: Option<ObjectId>,
}

/// The trail.
#[derive(Debug, Clone)]
pub struct AuditLog {
    collection: Collection<Document>,
}

/// A record [`AuditLog::begin`] wrote, to complete with [`AuditLog::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditId(ObjectId);

impl AuditLog {
    /// The trail in `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(AUDIT_COLLECTION),
        }
    }

    /// Creates the indexes pages are read by: newest first, and newest
    /// first of one operator or one action.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        super::ensure_indexes(
            &self.collection,
            [
                index(doc! { "at": 1 }, "at_1"),
                index(doc! { "actor.name": 1, "_id": -1 }, "actor.name_1__id_-1"),
                index(doc! { "action": 1, "_id": -1 }, "action_1__id_-1"),
            ],
            "createIndexes on audit",
        )
        .await
    }

    /// Records that `actor` is about to do `action` on `target`; the action
    /// must not go ahead if this fails.
    pub async fn begin(
        &self,
        actor: &Actor,
        action: &str,
        target: serde_json::Value,
    ) -> Result<AuditId, StoreError> {
        let id = ObjectId::new();
        let target = Bson::try_from(target).unwrap_or(Bson::Null);
        self.collection
            .insert_one(doc! {
                "_id": id, "at": DateTime::now(),
                "actor": {
                    "name": &actor.name, "role": &actor.role,
                    "via": &actor.via, "from": &actor.from,
                },
                "action": action, "target": target,
                "count": Bson::Null, "outcome": "started",
            })
            .await
            .map_err(StoreError::command("insert into audit"))?;
        Ok(AuditId(id))
    }

    /// Completes record `id`: how the action ended (`Ok` with how many it
    /// concerned, or the reason it failed).
    pub async fn finish(&self, id: AuditId, result: Result<u64, String>) -> Result<(), StoreError> {
        let (outcome, count) = match result {
            Ok(count) => ("ok".to_owned(), Bson::Int64(count as i64)),
            Err(why) => (format!("failed: {why}"), Bson::Null),
        };
        self.collection
            .update_one(
                doc! { "_id": id.0 },
                doc! { "$set": { "outcome": outcome, "count": count, "endedAt": DateTime::now() } },
            )
            .await
            .map_err(StoreError::command("update audit"))?;
        Ok(())
    }

    /// A page of the trail matching `filter`, newest first, at most `limit`
    /// records (1 to [`MAX_AUDIT_PAGE`]), and whether there are older ones.
    pub async fn page(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<(Vec<AuditRecord>, bool), StoreError> {
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let mut query = Document::new();
        if let Some(actor) = &filter.actor {
            query.insert("actor.name", actor);
        }
        if let Some(action) = &filter.action {
            query.insert("action", action);
        }
        if let Some(before) = filter.before {
            query.insert("_id", doc! { "$lt": before });
        }
        let mut documents: Vec<Document> = self
            .collection
            .find(query)
            .sort(doc! { "_id": -1 })
            .limit(limit + 1)
            .await
            .map_err(StoreError::command("list audit"))?
            .try_collect()
            .await
            .map_err(StoreError::command("list audit"))?;
        let more = documents.len() as i64 > limit;
        documents.truncate(limit as usize);
        Ok((documents.iter().map(record_of).collect(), more))
    }

    /// Removes records older than `keep`; how many.
    pub async fn sweep(&self, keep: std::time::Duration) -> Result<u64, StoreError> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let cutoff =
            DateTime::from_millis(DateTime::now().timestamp_millis().saturating_sub(keep_ms));
        let result = self
            .collection
            .delete_many(doc! { "at": { "$lt": cutoff } })
            .await
            .map_err(StoreError::command("delete from audit"))?;
        Ok(result.deleted_count)
    }
}

/// A stored record as the API shows it.
fn record_of(document: &Document) -> AuditRecord {
    let actor = document.get_document("actor").ok();
    let text = |d: Option<&Document>, name: &str| {
        d.and_then(|d| d.get_str(name).ok())
            .unwrap_or_default()
            .to_owned()
    };
    AuditRecord {
        id: document
            .get_object_id("_id")
            .map(|id| id.to_hex())
            .unwrap_or_default(),
        at: document
            .get_datetime("at")
            .ok()
            .and_then(|t| super::inbox::rfc3339(*t))
            .unwrap_or_default(),
        actor: Actor {
            name: text(actor, "name"),
            role: text(actor, "role"),
            via: text(actor, "via"),
            from: text(actor, "from"),
        },
        action: text(Some(document), "action"),
        target: document
            .get("target")
            .cloned()
            .map(|b| b.into_relaxed_extjson())
            .unwrap_or(serde_json::Value::Null),
        count: match document.get("count") {
            Some(Bson::Int64(n)) => Some((*n).max(0) as u64),
            Some(Bson::Int32(n)) => Some((*n).max(0) as u64),
            _ => None,
        },
        outcome: text(Some(document), "outcome"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_record_becomes_the_api_shape() {
        let id = ObjectId::new();
        let record = record_of(&doc! {
            "_id": id, "at": DateTime::from_millis(0),
            "actor": { "name": "ann", "role": "operator", "via": "session", "from": "10.0.0.1" },
            "action": "retry_bulk",
            "target": { "queue": "push", "filter": { "event": "new_message" } },
            "count": 1200_i64, "outcome": "ok",
        });
        assert_eq!(record.id, id.to_hex());
        assert_eq!(record.at, "1970-01-01T00:00:00.000Z");
        assert_eq!(record.actor.name, "ann");
        assert_eq!(record.target["filter"]["event"], "new_message");
        assert_eq!(record.count, Some(1200));
        assert_eq!(record.outcome, "ok");
    }
}
