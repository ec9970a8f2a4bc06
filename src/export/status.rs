//! The export status record: collection `export`, one document per export.
//!
//! An export is its account and its key together: the record's `_id` is
//! `<accountId hex>:<key>` ([`record_id`]), and it also holds `accountId`
//! and `key`, so two accounts may use one key and nothing one account does
//! with a key touches another's. Every method takes both.
//!
//! `status` moves queued → running → finished | failed | cancelled. The
//! record also holds processed, total, percent, rows, fileName, fileSize,
//! fileLocation (where the storage keeps the file, relative to it:
//! `<accountId>/<key>.csv` in the export directory or `s3://bucket/key`;
//! never a server path or credentials), error and the timestamps
//! queuedAt, startedAt, finishedAt, cancelledAt, updatedAt (BSON dates).
//! Progress updates only apply to a running export, so a cancellation is
//! never overwritten by a late progress write.
//!
//! Records written before exports were scoped to their account have the
//! bare key as `_id`; [`ExportStatusStore::adopt_unscoped`] moves them to
//! the scoped `_id` when a worker starts.

use herald_jobs::{AccountId, ExportKey};
use mongodb::{
    bson::{doc, Bson, DateTime, Document},
    options::UpdateOptions,
    Collection, Database,
};

use crate::store::StoreError;

/// The `_id` of the record of `account`'s export `key`.
pub fn record_id(account: AccountId, key: &ExportKey) -> String {
    format!("{account}:{key}")
}

/// The export a record is about: its account and key, when the record
/// names both (every record Herald writes does).
pub fn export_of(record: &Document) -> Option<(AccountId, ExportKey)> {
    let account = record.get_object_id("accountId").ok()?;
    let key = record
        .get_str("key")
        .ok()
        .or_else(|| record.get_str("_id").ok())?;
    Some((AccountId::from(account), ExportKey::parse(key).ok()?))
}

/// Name of the collection.
pub const EXPORT_COLLECTION: &str = "export";

/// Where an export is in its life: the record's `status` field, and the
/// API's. Stored and served as its lowercase name (`"queued"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    /// Enqueued; no worker has started it.
    Queued,
    /// A worker is writing its file.
    Running,
    /// Its file is complete and committed.
    Finished,
    /// It stopped with an error (the record's `error`).
    Failed,
    /// Cancelled while queued or running; no file is kept.
    Cancelled,
}

impl ExportStatus {
    /// Every status, in life order.
    pub const ALL: [ExportStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Finished,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name stored in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The status of a record; `None` when the record has no known one
    /// (Herald writes a status into every record it creates).
    pub fn of(record: &Document) -> Option<Self> {
        record.get_str("status").ok().and_then(Self::parse)
    }
}

impl std::fmt::Display for ExportStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ExportStatus> for Bson {
    fn from(status: ExportStatus) -> Self {
        Bson::String(status.as_str().to_owned())
    }
}

/// The statuses of an export that has not ended, for a `$in` / `$nin`.
const ACTIVE: [ExportStatus; 2] = [ExportStatus::Queued, ExportStatus::Running];

/// The fields of a record freshly queued at `now`: every counter reset,
/// every later time cleared.
fn queued_record(account: AccountId, key: &ExportKey, collection: &str, now: DateTime) -> Document {
    doc! {
        "accountId": account.object_id(), "key": key.as_str(), "collection": collection,
        "status": ExportStatus::Queued,
        "processed": 0_i64, "total": Bson::Null, "percent": 0.0, "rows": 0_i64,
        "fileName": Bson::Null, "fileSize": Bson::Null, "fileLocation": Bson::Null, "error": Bson::Null,
        "queuedAt": now, "startedAt": Bson::Null, "finishedAt": Bson::Null,
        "cancelledAt": Bson::Null, "updatedAt": now,
    }
}

/// What [`ExportStatusStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key was free, or its export had ended: now queued.
    Queued,
    /// The account's export of the key is still queued or running.
    InProgress,
}

/// A record that ended, as retention finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedRecord {
    /// The record's `_id`.
    pub id: String,
    /// Its account and key; `None` for a record that names no valid
    /// export (it has no file to remove).
    pub export: Option<(AccountId, ExportKey)>,
}

/// Access to the export status records.
#[derive(Debug, Clone)]
pub struct ExportStatusStore {
    collection: Collection<Document>,
}

impl ExportStatusStore {
    /// The store in `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(EXPORT_COLLECTION),
        }
    }

    /// Creates the index listing an account's exports newest first.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = mongodb::IndexModel::builder()
            .keys(doc! { "accountId": 1, "queuedAt": -1 })
            .build();
        crate::store::ensure_indexes(&self.collection, vec![index], "createIndexes on export").await
    }

    /// Moves records whose `_id` is a bare key (written before exports were
    /// scoped to their account) to their scoped `_id`, in batches; how many
    /// moved. A record naming no account is left as it is (no route
    /// reaches it; retention removes it). Safe to run again and from
    /// several processes at once: a record moved already is only deleted.
    pub async fn adopt_unscoped(&self) -> Result<u64, StoreError> {
        use futures::TryStreamExt;
        let mut moved = 0;
        loop {
            let records: Vec<Document> = self
                .collection
                .find(doc! { "key": { "$exists": false }, "accountId": { "$type": "objectId" } })
                .limit(500)
                .await
                .map_err(StoreError::command("find unscoped exports"))?
                .try_collect()
                .await
                .map_err(StoreError::command("find unscoped exports"))?;
            if records.is_empty() {
                return Ok(moved);
            }
            for mut record in records {
                let Some(old_id) = record.get("_id").cloned() else {
                    continue;
                };
                let Some((account, key)) = export_of(&record) else {
                    // A key that is not valid today: give it a key field so
                    // it is not looked at again; nothing can address it.
                    self.collection
                        .update_one(
                            doc! { "_id": old_id },
                            doc! { "$set": { "key": Bson::Null } },
                        )
                        .await
                        .map_err(StoreError::command("mark an unscoped export"))?;
                    continue;
                };
                record.insert("_id", record_id(account, &key));
                record.insert("key", key.as_str());
                match self.collection.insert_one(record).await {
                    Ok(_) => moved += 1,
                    Err(e) if crate::store::is_duplicate_key(&e) => {}
                    Err(source) => {
                        return Err(StoreError::command("move an export record")(source))
                    }
                }
                self.collection
                    .delete_one(doc! { "_id": old_id })
                    .await
                    .map_err(StoreError::command("move an export record"))?;
            }
        }
    }

    /// Records a newly enqueued export (or a re-export of a key).
    pub async fn queued(
        &self,
        account: AccountId,
        key: &ExportKey,
        collection: &str,
    ) -> Result<(), StoreError> {
        self.collection
            .update_one(
                doc! { "_id": record_id(account, key) },
                doc! { "$set": queued_record(account, key, collection, DateTime::now()) },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map_err(StoreError::command("record queued export"))?;
        Ok(())
    }

    /// Records `account`'s export `key` as queued, unless that export is
    /// still queued or running. Atomic: of two claims racing for one key,
    /// one wins.
    pub async fn claim(
        &self,
        account: AccountId,
        key: &ExportKey,
        collection: &str,
    ) -> Result<Claim, StoreError> {
        // Matches only an ended export; when the record exists but is
        // active, the upsert's insert collides on `_id`.
        let result = self
            .collection
            .update_one(
                doc! {
                    "_id": record_id(account, key),
                    "status": { "$nin": ACTIVE.as_slice() },
                },
                doc! { "$set": queued_record(account, key, collection, DateTime::now()) },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await;
        match result {
            Ok(_) => Ok(Claim::Queued),
            Err(err) if crate::store::is_duplicate_key(&err) => Ok(Claim::InProgress),
            Err(source) => Err(StoreError::command("record queued export")(source)),
        }
    }

    /// The record of `account`'s export `key`.
    pub async fn get(
        &self,
        account: AccountId,
        key: &ExportKey,
    ) -> Result<Option<Document>, StoreError> {
        self.collection
            .find_one(doc! { "_id": record_id(account, key) })
            .await
            .map_err(StoreError::command("read export status"))
    }

    /// Whether `account`'s export `key` was cancelled.
    pub async fn is_cancelled(
        &self,
        account: AccountId,
        key: &ExportKey,
    ) -> Result<bool, StoreError> {
        Ok(self
            .get(account, key)
            .await?
            .is_some_and(|d| ExportStatus::of(&d) == Some(ExportStatus::Cancelled)))
    }

    /// Marks the export running; false if it was cancelled before it
    /// started. `total` stays null until the rows are counted
    /// ([`Self::progress`]).
    pub async fn start(
        &self,
        account: AccountId,
        key: &ExportKey,
        collection: &str,
    ) -> Result<bool, StoreError> {
        if self.is_cancelled(account, key).await? {
            return Ok(false);
        }
        let now = DateTime::now();
        self.collection
            .update_one(
                doc! { "_id": record_id(account, key) },
                doc! {
                    "$set": {
                        "accountId": account.object_id(), "key": key.as_str(),
                        "collection": collection,
                        "status": ExportStatus::Running, "processed": 0_i64, "total": Bson::Null,
                        "percent": 0.0, "rows": 0_i64, "error": Bson::Null, "startedAt": now,
                        "finishedAt": Bson::Null, "updatedAt": now,
                    },
                    "$setOnInsert": { "queuedAt": now },
                },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map_err(StoreError::command("record running export"))?;
        Ok(true)
    }

    /// Records progress of a running export (and its total, once counted).
    pub async fn progress(
        &self,
        account: AccountId,
        key: &ExportKey,
        processed: u64,
        total: u64,
    ) -> Result<(), StoreError> {
        self.collection
            .update_one(
                doc! { "_id": record_id(account, key), "status": ExportStatus::Running },
                doc! { "$set": {
                    "processed": processed as i64, "total": total as i64,
                    "percent": percent(processed, total),
                    "updatedAt": DateTime::now(),
                } },
            )
            .await
            .map_err(StoreError::command("record export progress"))?;
        Ok(())
    }

    /// Records success; false if the export was cancelled meanwhile.
    pub async fn finish(
        &self,
        account: AccountId,
        key: &ExportKey,
        rows: u64,
        file: &super::storage::StoredFile,
    ) -> Result<bool, StoreError> {
        let now = DateTime::now();
        let result = self
            .collection
            .update_one(
                doc! { "_id": record_id(account, key), "status": ExportStatus::Running },
                doc! { "$set": {
                    "status": ExportStatus::Finished, "processed": rows as i64, "total": rows as i64,
                    "percent": 100.0, "rows": rows as i64, "fileName": &file.name,
                    "fileSize": file.size as i64, "fileLocation": &file.location,
                    "finishedAt": now, "updatedAt": now,
                } },
            )
            .await
            .map_err(StoreError::command("record finished export"))?;
        Ok(result.matched_count == 1)
    }

    /// Records a failure with its error.
    pub async fn fail(
        &self,
        account: AccountId,
        key: &ExportKey,
        error: &str,
    ) -> Result<(), StoreError> {
        let now = DateTime::now();
        self.collection
            .update_one(
                doc! { "_id": record_id(account, key) },
                doc! {
                    "$set": {
                        "accountId": account.object_id(), "key": key.as_str(),
                        "status": ExportStatus::Failed, "error": error,
                        "finishedAt": now, "updatedAt": now,
                    },
                    "$setOnInsert": { "queuedAt": now },
                },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map_err(StoreError::command("record failed export"))?;
        Ok(())
    }

    /// The `limit` most recently queued exports of every account, newest
    /// first; only queued and running ones when `active_only` (the
    /// dashboard's list).
    pub async fn recent(&self, active_only: bool, limit: i64) -> Result<Vec<Document>, StoreError> {
        use futures::TryStreamExt;
        let filter = if active_only {
            doc! { "status": { "$in": ACTIVE.as_slice() } }
        } else {
            doc! {}
        };
        self.collection
            .find(filter)
            .sort(doc! { "queuedAt": -1 })
            .limit(limit)
            .await
            .map_err(StoreError::command("list exports"))?
            .try_collect()
            .await
            .map_err(StoreError::command("list exports"))
    }

    /// Up to `limit` records of exports that ended (finished, failed,
    /// cancelled) before `cutoff`, oldest first.
    pub async fn ended_before(
        &self,
        cutoff: DateTime,
        limit: i64,
    ) -> Result<Vec<EndedRecord>, StoreError> {
        use futures::TryStreamExt;
        let records: Vec<Document> = self
            .collection
            .find(doc! {
                "status": { "$nin": ACTIVE.as_slice() },
                "updatedAt": { "$lt": cutoff },
            })
            .sort(doc! { "updatedAt": 1 })
            .limit(limit)
            .projection(doc! { "_id": 1, "accountId": 1, "key": 1 })
            .await
            .map_err(StoreError::command("find ended exports"))?
            .try_collect()
            .await
            .map_err(StoreError::command("find ended exports"))?;
        Ok(records
            .iter()
            .filter_map(|d| {
                Some(EndedRecord {
                    id: d.get_str("_id").ok()?.to_owned(),
                    export: export_of(d),
                })
            })
            .collect())
    }

    /// Deletes the record `id` if it still ended before `cutoff` (an export
    /// queued again meanwhile keeps its record); whether it was deleted.
    pub async fn remove_ended(&self, id: &str, cutoff: DateTime) -> Result<bool, StoreError> {
        let result = self
            .collection
            .delete_one(doc! {
                "_id": id,
                "status": { "$nin": ACTIVE.as_slice() },
                "updatedAt": { "$lt": cutoff },
            })
            .await
            .map_err(StoreError::command("delete an ended export"))?;
        Ok(result.deleted_count == 1)
    }

    /// Cancels `account`'s export `key` if it is queued or running; false
    /// otherwise.
    pub async fn cancel(&self, account: AccountId, key: &ExportKey) -> Result<bool, StoreError> {
        let now = DateTime::now();
        let result = self
            .collection
            .update_one(
                doc! { "_id": record_id(account, key), "status": { "$in": ACTIVE.as_slice() } },
                doc! { "$set": { "status": ExportStatus::Cancelled, "cancelledAt": now, "updatedAt": now } },
            )
            .await
            .map_err(StoreError::command("cancel export"))?;
        Ok(result.matched_count == 1)
    }
}

/// `processed` as a percentage of `total`, one decimal.
pub fn percent(processed: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        ((processed as f64 / total as f64) * 1000.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_stored_and_served_as_its_lowercase_name() {
        for status in ExportStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, serde_json::json!(status.as_str()));
            assert_eq!(Bson::from(status), Bson::String(status.to_string()));
            assert_eq!(ExportStatus::parse(status.as_str()), Some(status));
            let record = doc! { "status": status };
            assert_eq!(ExportStatus::of(&record), Some(status));
        }
        assert_eq!(ExportStatus::parse("Finished"), None);
        assert_eq!(ExportStatus::of(&Document::new()), None);
    }

    #[test]
    fn percent_rounds_to_one_decimal_and_handles_empty_exports() {
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(3, 3), 100.0);
        assert_eq!(percent(0, 0), 100.0);
    }
}
