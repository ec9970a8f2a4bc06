//! What the export tests share: wide rows to export, enqueueing an export
//! as the API does, reading and awaiting its status record.

use std::time::Duration;

use herald::export::status::ExportStatusStore;
use herald_jobs::{AccountId, Export, ExportKey, Producer};
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::json;

use crate::helpers::{wait_within, TestEnv};

/// Records export `job` as queued and enqueues it, as the API does.
pub async fn enqueue(env: &TestEnv, job: Export) {
    let status = ExportStatusStore::new(&env.database);
    status
        .queued(
            AccountId::parse(&job.account_id).unwrap(),
            &ExportKey::parse(&job.key).unwrap(),
            &job.collection,
        )
        .await
        .unwrap();
    let mut producer = Producer::connect(&env.settings.redis.url, &env.settings.redis.namespace)
        .await
        .unwrap();
    producer.enqueue_export(job).await.unwrap();
}

/// The status record of `account`'s export `key` (empty if none).
pub async fn status_of(env: &TestEnv, account: AccountId, key: &str) -> Document {
    ExportStatusStore::new(&env.database)
        .get(account, &ExportKey::parse(key).unwrap())
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Waits for the record of `account`'s export `key` to reach `wanted`. Patient: an export
/// writes its progress often, each write synced to disk before it counts
/// (the journaled write concern on a `--sync-on-commit` server), and the
/// fault tests running beside it sync thousands of writes of their own.
/// A deadline against hangs, not a speed requirement.
pub async fn wait_status(env: &TestEnv, account: AccountId, key: &str, wanted: &str) -> Document {
    wait_within(
        &format!("export {key} to be {wanted}"),
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            let record = status_of(env, account, key).await;
            (record.get_str("status") == Ok(wanted)).then_some(record)
        },
    )
    .await
}

/// A numeric field of a status record (-1 if absent).
pub fn number(record: &Document, field: &str) -> i64 {
    record
        .get(field)
        .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
        .unwrap_or(-1)
}

/// Inserts `rows` wide `customer` documents (about 1 KiB each, `seq`
/// from 0) of a new account, in batches of 2,000.
pub async fn seed_wide_rows(env: &TestEnv, rows: usize) -> AccountId {
    let account = AccountId::from(ObjectId::new());
    let documents: Vec<Document> = (0..rows)
        .map(|seq| {
            doc! {
                "accountId": account.object_id(),
                "seq": seq as i32,
                "blob": format!("{seq:08}-{}", "x".repeat(1000)),
            }
        })
        .collect();
    let collection = env.database.collection::<Document>("customer");
    for batch in documents.chunks(2_000) {
        collection.insert_many(batch.to_vec()).await.unwrap();
    }
    account
}

/// Export `key` of the wide rows ([`seed_wide_rows`]) with `seq` below
/// `below`, in `seq` order: columns `No.` and `Blob`.
pub fn wide_rows_job(account: AccountId, key: &str, below: usize) -> Export {
    serde_json::from_value(json!({
        "accountId": account.to_hex(),
        "key": key,
        "collection": "customer",
        "filter": { "seq": { "$lt": below } },
        "fields": [
            { "path": "seq", "title": "No." },
            { "path": "blob", "title": "Blob" },
        ],
        "sort": [ { "path": "seq", "order": "asc" } ],
    }))
    .unwrap()
}
