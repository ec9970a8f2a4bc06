//! The floor: what one message costs the three services Herald talks to,
//! with nothing of Herald's in between. One triple, timed as a whole, is a
//! Redis round trip (RPUSH and LPOP of a scratch key, pipelined), a MongoDB
//! `insert_one` of a message document into a `message` collection with the
//! indexes Herald gives it (in a scratch database, so the cost of keeping
//! the indexes is part of the floor, as it is of every message Herald
//! stores) and a `new_message` POST through Herald's Tuisongbao client to
//! a fresh recorder; triples run one after another.
//!
//! Two floors are measured. Back to back, every service is hot: its
//! threads are awake when the next request comes. At a light rate they
//! are not: on this machine a MongoDB insert that follows 20 ms of
//! quiet takes about five times as long as one that follows another
//! (threads parked between requests must be woken, on both sides of
//! every socket). Herald's light-load messages find the services as quiet
//! as their rate leaves them, so the targets compare them with the floor
//! paced at the same rate; the back-to-back floor is stated beside it.

use std::time::{Duration, Instant};

use herald::{
    config::Settings,
    push::{Event, EventPusher, TuisongbaoClient},
    store,
};
use mongodb::bson::{DateTime, Document};

use super::Latencies;
use crate::{
    pipeline::{messages, new_message_events, recorder::Recorder, validated},
    queue::BenchError,
};

/// The scratch database the floor inserts into: the run's database name
/// with this suffix.
const SCRATCH_SUFFIX: &str = "_floor";

/// `count` sequential triples, after one untimed one that opens the
/// connections; with a `pace`, each triple starts that long after the one
/// before (or at once, if that one took longer).
pub(super) async fn measure(
    settings: &Settings,
    count: u64,
    pace: Option<Duration>,
) -> Result<Latencies, BenchError> {
    let mut settings = settings.clone();
    let recorder = Recorder::spawn(&settings).await?;
    settings.tuisongbao.url = recorder.url()?;
    let result = triples(&settings, count, pace).await;
    let received = recorder
        .receipts
        .count
        .load(std::sync::atomic::Ordering::Acquire);
    recorder.stop();
    let latencies = result?;
    if received != count + 1 {
        return Err(BenchError::Invalid(format!(
            "floor: the stand-in accepted {received} of {} events",
            count + 1
        )));
    }
    Ok(latencies)
}

async fn triples(
    settings: &Settings,
    count: u64,
    pace: Option<Duration>,
) -> Result<Latencies, BenchError> {
    let mut redis = herald::queue::connect(settings.redis.url.as_str()).await?;
    let scratch = format!("{}:latency-floor", settings.redis.namespace.as_str());
    let mut scratch_db = settings.mongodb.clone();
    scratch_db.database = format!("{}{SCRATCH_SUFFIX}", settings.mongodb.database);
    let database = store::connect(&scratch_db).await?;
    store::MessageStore::new(&database).ensure_indexes().await?;
    let collection = database.collection::<Document>(store::MESSAGE_COLLECTION);
    let result = timed_triples(&mut redis, &scratch, &collection, settings, count, pace).await;
    database.drop().await?;
    result
}

async fn timed_triples(
    redis: &mut herald_jobs::RedisConnection,
    scratch: &str,
    collection: &mongodb::Collection<Document>,
    settings: &Settings,
    count: u64,
    pace: Option<Duration>,
) -> Result<Latencies, BenchError> {
    let client = TuisongbaoClient::new(&settings.tuisongbao)
        .map_err(|e| BenchError::Enqueue(format!("push client: {e}")))?;
    let (documents, events) = payloads(settings, count + 1)?;

    let mut times = Vec::with_capacity(count as usize);
    let mut started = None;
    let mut next = tokio::time::Instant::now();
    for (i, (document, event)) in documents.iter().zip(&events).enumerate() {
        if let Some(pace) = pace {
            tokio::time::sleep_until(next).await;
            next += pace;
        }
        let at = Instant::now();
        redis::pipe()
            .rpush(scratch, i)
            .lpop(scratch, None)
            .query_async::<()>(redis)
            .await?;
        collection.insert_one(document).await?;
        client
            .send(event)
            .await
            .map_err(|e| BenchError::Enqueue(format!("floor push: {e}")))?;
        // The first triple opens the connections: untimed.
        if i > 0 {
            times.push(at.elapsed());
            started.get_or_insert(at);
        }
    }
    let elapsed = started.map_or(Duration::ZERO, |at| at.elapsed());
    let name = match pace {
        Some(pace) => format!(
            "floor at {:.0}/s: Redis + insert + push",
            1.0 / pace.as_secs_f64()
        ),
        None => "floor back to back: Redis + insert + push".to_owned(),
    };
    Ok(Latencies::of(name, elapsed, times))
}

/// `count` message documents and their `new_message` events.
fn payloads(settings: &Settings, count: u64) -> Result<(Vec<Document>, Vec<Event>), BenchError> {
    let created_at = DateTime::now();
    let valid = validated(settings, &messages(settings, count)?)?;
    let documents = valid
        .iter()
        .map(|m| store::message_document(m, created_at, None))
        .collect();
    Ok((documents, new_message_events(valid, created_at)))
}
