//! The floor: what one message costs the three services Herald talks to,
//! with nothing of Herald's in between. One triple, timed as a whole, is a
//! Redis round trip (RPUSH and LPOP of a scratch key, pipelined), a MongoDB
//! `insert_one` of a message document and a `new_message` POST through
//! Herald's Tuisongbao client to a fresh recorder; triples run one after
//! another.

use std::time::{Duration, Instant};

use herald::{
    config::Settings,
    push::{job::PushJob, Event, EventPusher, TuisongbaoClient},
    store::{self, StoredMessage},
};
use mongodb::bson::{DateTime, Document};

use super::Latencies;
use crate::{
    pipeline::{messages, recorder::Recorder, validated},
    queue::BenchError,
};

/// The scratch collection the floor inserts into (in the run's database).
const SCRATCH_COLLECTION: &str = "latency_floor";

/// `count` sequential triples, after one untimed one that opens the
/// connections.
pub(super) async fn measure(settings: &Settings, count: u64) -> Result<Latencies, BenchError> {
    let mut settings = settings.clone();
    let recorder = Recorder::spawn(&settings).await?;
    settings.tuisongbao.url = recorder.url()?;
    let result = triples(&settings, count).await;
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

async fn triples(settings: &Settings, count: u64) -> Result<Latencies, BenchError> {
    let mut redis = herald::queue::connect(settings.redis.url.as_str()).await?;
    let scratch = format!("{}:latency-floor", settings.redis.namespace.as_str());
    let database = store::connect(&settings.mongodb).await?;
    let collection = database.collection::<Document>(SCRATCH_COLLECTION);
    let client = TuisongbaoClient::new(&settings.tuisongbao)
        .map_err(|e| BenchError::Enqueue(format!("push client: {e}")))?;
    let (documents, events) = payloads(settings, count + 1)?;

    let mut times = Vec::with_capacity(count as usize);
    let mut started = None;
    for (i, (document, event)) in documents.iter().zip(&events).enumerate() {
        let at = Instant::now();
        redis::pipe()
            .rpush(&scratch, i)
            .lpop(&scratch, None)
            .query_async::<()>(&mut redis)
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
    Ok(Latencies::of(
        "floor: Redis + MongoDB insert + push, in sequence".to_owned(),
        elapsed,
        times,
    ))
}

/// `count` message documents and their `new_message` events.
fn payloads(settings: &Settings, count: u64) -> Result<(Vec<Document>, Vec<Event>), BenchError> {
    let created_at = DateTime::now();
    let valid = validated(settings, &messages(settings, count)?)?;
    let documents = valid
        .iter()
        .map(|m| store::message_document(m, created_at))
        .collect();
    let events = valid
        .into_iter()
        .map(|message| {
            PushJob::new_message(&StoredMessage {
                message,
                created_at,
                newly_inserted: true,
            })
            .event
        })
        .collect();
    Ok((documents, events))
}
