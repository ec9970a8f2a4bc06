//! The raw limits the end-to-end run is measured against: `c` tasks
//! inserting message documents with `insert_one`; one task inserting them
//! with `insert_many` in batches of the size Herald reaches; `c` tasks
//! posting `new_message` events to a fresh push sandbox, with nothing of
//! Herald's queue in between; and those last two at once, as Herald's two
//! stages run, sharing the machine's cores.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::Barrier;

use herald::{
    config::Settings,
    push::{EventPusher, TuisongbaoClient},
    store::{self, MessageStore, MESSAGE_COLLECTION},
};
use mongodb::{
    bson::{doc, DateTime, Document},
    Collection,
};

use super::{messages, new_message_events, private_settings, recorder::Recorder, validated};
use crate::{queue::BenchError, Row};

/// Runs `op(i)` for every `i` in `0..count`, `concurrency` at a time, each
/// task taking the next index when its previous operation is done.
async fn closed_loop<F, Fut, E>(count: u64, concurrency: usize, op: F) -> Result<Duration, E>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let op = op.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    op(i).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(result) => result?,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
    Ok(start.elapsed())
}

/// The row of a baseline that did `jobs` operations in `elapsed`, if the
/// service on the other side counted all of them (`counted`).
fn counted_row(
    name: String,
    jobs: u64,
    counted: u64,
    elapsed: Duration,
) -> Result<Row, BenchError> {
    if counted != jobs {
        return Err(BenchError::Invalid(format!(
            "{name}: the service counted {counted} of {jobs}"
        )));
    }
    Ok(Row {
        name,
        count: jobs,
        elapsed,
    })
}

/// Runs `insert` against a fresh `message` collection (Herald's indexes) of
/// a database of its own, with `jobs` message documents to insert, then
/// counts what it stored into the row `name`; the database is dropped.
async fn into_fresh_collection<F, Fut>(
    settings: &Settings,
    label: &str,
    jobs: u64,
    name: String,
    insert: F,
) -> Result<Row, BenchError>
where
    F: FnOnce(Collection<Document>, Arc<Vec<Document>>) -> Fut,
    Fut: std::future::Future<Output = Result<Duration, BenchError>>,
{
    let settings = private_settings(settings, label)?;
    let database = store::connect(&settings.mongodb).await?;
    let result = async {
        MessageStore::new(&database).ensure_indexes().await?;
        let created_at = DateTime::now();
        let documents: Arc<Vec<Document>> = Arc::new(
            validated(&settings, &messages(&settings, jobs)?)?
                .iter()
                .map(|m| store::message_document(m, created_at, None))
                .collect(),
        );
        let collection = database.collection::<Document>(MESSAGE_COLLECTION);
        let elapsed = insert(collection.clone(), documents).await?;
        let stored = collection.count_documents(doc! {}).await?;
        counted_row(name, jobs, stored, elapsed)
    }
    .await;
    let _ = database.drop().await;
    result
}

/// `c` tasks inserting the message documents one by one.
pub(super) async fn raw_insert(
    settings: &Settings,
    jobs: u64,
    concurrency: usize,
) -> Result<Row, BenchError> {
    let name = format!("raw MongoDB insert_one, {concurrency} at a time");
    into_fresh_collection(settings, "insert", jobs, name, |collection, documents| {
        closed_loop(jobs, concurrency, move |i| {
            let (collection, documents) = (collection.clone(), documents.clone());
            async move {
                collection
                    .insert_one(&documents[i as usize])
                    .await
                    .map(|_| ())
                    .map_err(BenchError::from)
            }
        })
    })
    .await
}

/// One task inserting the message documents with unordered `insert_many`
/// calls of `batch` documents, one call after another: what the database
/// does for Herald's group commit (see [`herald::store::MessageBatcher`]),
/// with nothing else in between.
pub(super) async fn raw_insert_many(
    settings: &Settings,
    jobs: u64,
    batch: usize,
) -> Result<Row, BenchError> {
    insert_many_from(settings, jobs, batch, None).await
}

/// [`raw_insert_many`], its clock started once `start` (if any) lets every
/// party through.
async fn insert_many_from(
    settings: &Settings,
    jobs: u64,
    batch: usize,
    start: Option<Arc<Barrier>>,
) -> Result<Row, BenchError> {
    let name = format!("raw MongoDB insert_many, {batch} per call, one at a time");
    into_fresh_collection(
        settings,
        "insert-many",
        jobs,
        name,
        |collection, documents| async move {
            if let Some(barrier) = start {
                barrier.wait().await;
            }
            let start = Instant::now();
            for chunk in documents.chunks(batch.max(1)) {
                collection.insert_many(chunk).ordered(false).await?;
            }
            Ok(start.elapsed())
        },
    )
    .await
}

/// `c` tasks posting `new_message` events to a fresh sandbox.
pub(super) async fn raw_post(
    settings: &Settings,
    jobs: u64,
    concurrency: usize,
) -> Result<Row, BenchError> {
    post_from(settings, jobs, concurrency, None).await
}

/// [`raw_post`], its clock started once `start` (if any) lets every party
/// through.
async fn post_from(
    settings: &Settings,
    jobs: u64,
    concurrency: usize,
    start: Option<Arc<Barrier>>,
) -> Result<Row, BenchError> {
    let mut settings = settings.clone();
    let sandbox = Recorder::spawn(&settings).await?;
    settings.tuisongbao.url = sandbox.url()?;
    let client = TuisongbaoClient::new(&settings.tuisongbao)
        .map_err(|e| BenchError::Enqueue(format!("push client: {e}")))?;
    let created_at = DateTime::now();
    let events = Arc::new(new_message_events(
        validated(&settings, &messages(&settings, jobs)?)?,
        created_at,
    ));
    if let Some(barrier) = start {
        barrier.wait().await;
    }
    let elapsed = closed_loop(jobs, concurrency, move |i| {
        let (client, events) = (client.clone(), events.clone());
        async move {
            client
                .send(&events[i as usize])
                .await
                .map_err(|e| BenchError::Enqueue(format!("raw push: {e}")))
        }
    })
    .await;
    let received = sandbox.receipts.count.load(Ordering::Relaxed);
    sandbox.stop();
    let elapsed = elapsed?;
    counted_row(
        format!("raw stand-in POST, {concurrency} at a time"),
        jobs,
        received,
        elapsed,
    )
}

/// [`raw_insert_many`] in batches of `batch` and [`raw_post`] at
/// `concurrency`, both clocks started at the same moment: the two stages of
/// Herald's work with nothing of Herald in between, competing for the same
/// cores as Herald's stages do. The row's time is the later finish; it is
/// the physical limit of storing and pushing `jobs` messages on this
/// machine, where the lower of the two rates measured apart assumes each
/// stage had the machine to itself.
pub(super) async fn raw_insert_many_and_post(
    settings: &Settings,
    jobs: u64,
    batch: usize,
    concurrency: usize,
) -> Result<Row, BenchError> {
    let barrier = Arc::new(Barrier::new(2));
    let (insert, post) = tokio::join!(
        insert_many_from(settings, jobs, batch, Some(barrier.clone())),
        post_from(settings, jobs, concurrency, Some(barrier)),
    );
    let (insert, post) = (insert?, post?);
    Ok(Row {
        name: format!(
            "raw insert_many ({batch} per call) and POST ({concurrency} at a time), at once"
        ),
        count: jobs,
        elapsed: insert.elapsed.max(post.elapsed),
    })
}
