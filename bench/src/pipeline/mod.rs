//! End-to-end message throughput against the limits of its two services.
//!
//! "Concurrency `c`" means what it means for the raw limits: at most `c`
//! requests in flight to each service. For each `c` the run measures, in
//! this order and with the same machine busy only with the measurement at
//! hand:
//!
//! 1. the raw MongoDB insert rate: `c` tasks inserting `jobs` documents of
//!    the `message` shape with `insert_one`, through the same driver, into a
//!    collection with the same indexes (for information: Herald does not
//!    insert one at a time);
//! 2. the raw stand-in rate: `c` tasks posting `jobs` `new_message` events
//!    through Herald's own Tuisongbao client to a fresh push sandbox;
//! 3. Herald end to end: a worker (in this process, `herald worker`'s code)
//!    with `queues.push.concurrency` set to `c`, so at most `c` pushes are in
//!    flight, and `queues.send_message.concurrency` at its configured value (or `c` if
//!    higher). MongoDB never sees more than one request of Herald's at a
//!    time: the jobs in flight share one `insert_many` (see
//!    [`herald::store::MessageBatcher`]). A producer enqueues `jobs` messages, keeping
//!    at most `window` of them outstanding (enqueued but not yet received by
//!    the sandbox). The clock runs from the first enqueue until the sandbox
//!    has received the last event; each message's latency runs from just
//!    before its enqueue call to the moment its event reaches the sandbox.
//!    The worker's `herald_message_insert_batch_size` metric tells how
//!    many messages its `insert_many` calls carried on average, and
//!    `herald_message_insert_seconds` how long each took: set beside the
//!    raw calls of step 4, that shows how much the rest of Herald's work
//!    on the same cores slows the database down. Redis's own counters,
//!    read before the first enqueue and after the last event
//!    ([`RedisWork`]), tell the script calls and commands each message
//!    cost and the time Redis spent on them;
//! 4. the physical limit of the database for what Herald asks of it: one
//!    task inserting the same `jobs` documents with unordered `insert_many`
//!    calls of the size Herald's averaged in step 3, one after another;
//! 5. at `c` = 1 only, for information: Herald taking one job at a time
//!    (`queues.send_message.concurrency` 1 as well), so Redis, MongoDB and the push
//!    take turns for each message. No target applies to it.
//!
//! The target compares Herald with the lower of 2 and 4, trial by trial.
//! The run then checks that every message was stored once and pushed once.
//! Each measurement uses its own Redis namespace, Mongo database and sandbox,
//! and removes them afterwards.

mod baseline;
pub(crate) mod recorder;
mod redis_work;

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use herald::{
    config::Settings,
    store::{self, MESSAGE_COLLECTION},
    worker,
};
use herald_jobs::{queue::shard_of, AccountId, Namespace, Producer, SendMessage, ValidMessage};
use mongodb::bson::{doc, Document};

pub use self::redis_work::RedisWork;
use self::{
    baseline::{raw_insert, raw_insert_many, raw_insert_many_and_post, raw_post},
    recorder::{Receipts, Recorder},
};
use crate::{queue::BenchError, Row};

/// The workload's size.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages (and raw operations) per measurement.
    pub jobs: u64,
    /// Concurrencies to measure, each a full set of three measurements.
    pub concurrencies: Vec<usize>,
    /// Most messages outstanding (enqueued, not yet received) at once.
    pub window: u64,
    /// Trials per concurrency; each runs the three measurements back to
    /// back, and the table keeps the trial with the median ratio (see
    /// [`run`]).
    pub trials: usize,
}

/// The three measurements at one concurrency.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The concurrency.
    pub concurrency: usize,
    /// Raw MongoDB `insert_one` rate (for information).
    pub raw_insert: Row,
    /// Raw MongoDB `insert_many` rate, one call at a time, in batches of
    /// the size Herald's averaged in the same trial.
    pub raw_insert_many: Row,
    /// That batch size: messages per `insert_many` of Herald's.
    pub batch_size: f64,
    /// Mean time of one of Herald's `insert_many` calls in that trial.
    pub insert_call: Duration,
    /// What Redis did per message in that trial's Herald run.
    pub redis: RedisWork,
    /// Raw sandbox POST rate.
    pub raw_post: Row,
    /// Raw `insert_many` (Herald's batch size) and raw POST run at once,
    /// timed to the later finish: both stages sharing the machine.
    pub raw_both: Row,
    /// Herald end to end, at most `concurrency` requests in flight to each
    /// service.
    pub herald: Timed,
    /// At concurrency 1 only: Herald taking one job at a time, from the
    /// same trial as the other rows. For information; no target applies.
    pub one_job_at_a_time: Option<Timed>,
    /// Documents stored at the end.
    pub stored: u64,
    /// Accepted `new_message` events in all.
    pub pushed: u64,
    /// Distinct messages among them.
    pub pushed_distinct: u64,
    /// Each trial's own ratio of Herald to its lower raw limit, in order.
    pub trial_ratios: Vec<f64>,
    /// Each trial's own ratio of Herald to its raw stages run at once.
    pub both_trial_ratios: Vec<f64>,
}

/// A Herald row with its latencies from enqueue to the sandbox and the
/// order in which its events arrived.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Messages and time taken.
    pub row: Row,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Events that reached the sandbox after the event of a message
    /// enqueued later (all of a run's messages belong to one account); 0
    /// when every event arrived in enqueue order. See [`arrived_late`].
    pub out_of_order: u64,
}

impl Measured {
    /// The lower of the raw `insert_many` rate (Herald's batch size) and
    /// the raw push rate: what end to end could reach if Herald's queue
    /// cost nothing.
    pub fn limit(&self) -> f64 {
        self.raw_insert_many.rate().min(self.raw_post.rate())
    }

    /// Mean time of one raw `insert_many` call (of Herald's batch size).
    pub fn raw_insert_call(&self) -> Duration {
        let batch = self.batch_size.round().max(1.0) as u64;
        let calls = self.raw_insert_many.count.div_ceil(batch).max(1);
        self.raw_insert_many.elapsed / calls as u32
    }

    /// Whether every message was stored and pushed exactly once.
    pub fn verified(&self, jobs: u64) -> bool {
        self.stored == jobs && self.pushed == jobs && self.pushed_distinct == jobs
    }
}

/// Runs every concurrency of `workload` against the services of `settings`.
///
/// Each concurrency gets `workload.trials` trials, one after another, each
/// measuring the raw insert rate, the raw POST rate and Herald back to
/// back, so a slow spell of the machine lands on both sides of a ratio
/// rather than on one. Each trial's ratio pairs measurements taken
/// together; the result keeps the trial with the median ratio (its three
/// rows and Herald's latencies) and every trial's ratio. The stored/pushed
/// counts are those of a trial that lost or doubled something, if any did.
pub async fn run(settings: &Settings, workload: &Workload) -> Result<Vec<Measured>, BenchError> {
    let mut results = Vec::new();
    for &concurrency in &workload.concurrencies {
        let mut inserts = Vec::new();
        let mut posts = Vec::new();
        let mut runs = Vec::new();
        let mut batched = Vec::new();
        let mut both = Vec::new();
        let mut serial_runs = Vec::new();
        let jobs_in_flight = settings.queues.send_message.concurrency.max(concurrency);
        for _ in 0..workload.trials.max(1) {
            inserts.push(raw_insert(settings, workload.jobs, concurrency).await?);
            posts.push(raw_post(settings, workload.jobs, concurrency).await?);
            let run = end_to_end(
                settings,
                workload,
                Lanes::PerService(jobs_in_flight, concurrency),
            )
            .await?;
            let batch = run.batch_size.round().max(1.0) as usize;
            batched.push(raw_insert_many(settings, workload.jobs, batch).await?);
            both.push(raw_insert_many_and_post(settings, workload.jobs, batch, concurrency).await?);
            runs.push(run);
            if concurrency == 1 {
                serial_runs.push(end_to_end(settings, workload, Lanes::OneJobAtATime).await?);
            }
        }
        let trial_ratios: Vec<f64> = batched
            .iter()
            .zip(&posts)
            .zip(&runs)
            .map(|((insert, post), run)| run.row.rate() / insert.rate().min(post.rate()).max(1e-9))
            .collect();
        let both_trial_ratios: Vec<f64> = both
            .iter()
            .zip(&runs)
            .map(|(both, run)| run.row.rate() / both.rate().max(1e-9))
            .collect();
        let median = super::median_index(&trial_ratios, |ratio| *ratio);
        let counts = runs
            .iter()
            .chain(&serial_runs)
            .find(|run| !run.verified(workload.jobs))
            .unwrap_or(&runs[median])
            .counts();
        let one_job_at_a_time =
            (median < serial_runs.len()).then(|| serial_runs.swap_remove(median).timed());
        let (batch_size, insert_call, redis) = (
            runs[median].batch_size,
            runs[median].insert_call,
            runs[median].redis,
        );
        results.push(Measured {
            concurrency,
            raw_insert: inserts.swap_remove(median),
            raw_insert_many: batched.swap_remove(median),
            batch_size,
            insert_call,
            redis,
            raw_post: posts.swap_remove(median),
            raw_both: both.swap_remove(median),
            herald: runs.swap_remove(median).timed(),
            one_job_at_a_time,
            stored: counts.0,
            pushed: counts.1,
            pushed_distinct: counts.2,
            trial_ratios,
            both_trial_ratios,
        });
    }
    Ok(results)
}

/// The raw insert rate and Herald end to end at `concurrency`, measured
/// back to back with `settings` (for comparing settings, such as the write
/// concern); the flag says every message was stored once and pushed once.
pub(crate) async fn insert_and_end_to_end(
    settings: &Settings,
    workload: &Workload,
    concurrency: usize,
) -> Result<(Row, Timed, bool), BenchError> {
    let insert = raw_insert(settings, workload.jobs, concurrency).await?;
    let (herald, verified) = herald_end_to_end(settings, workload, concurrency).await?;
    Ok((insert, herald, verified))
}

/// Herald end to end at `concurrency` with `settings` alone (no raw
/// baseline; the caller measures its own); the flag says every message was
/// stored once and pushed once.
pub(crate) async fn herald_end_to_end(
    settings: &Settings,
    workload: &Workload,
    concurrency: usize,
) -> Result<(Timed, bool), BenchError> {
    let jobs_in_flight = settings.queues.send_message.concurrency.max(concurrency);
    let run = end_to_end(
        settings,
        workload,
        Lanes::PerService(jobs_in_flight, concurrency),
    )
    .await?;
    let verified = run.verified(workload.jobs);
    Ok((run.timed(), verified))
}

/// A unique suffix for namespaces and database names.
pub(crate) fn unique_suffix() -> String {
    mongodb::bson::oid::ObjectId::new().to_hex()
}

/// `settings` with a private namespace and database.
pub(crate) fn private_settings(settings: &Settings, label: &str) -> Result<Settings, BenchError> {
    let suffix = unique_suffix();
    let mut settings = settings.clone();
    settings.redis.namespace = Namespace::parse(&format!("herald-bench-{label}-{suffix}"))
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    settings.mongodb.database = format!("herald_bench_{label}_{suffix}");
    Ok(settings)
}

/// `jobs` valid messages, ids fixed: for one fresh account, or, with
/// `redis.queue_shards` above 1, for one fresh account per shard in turn,
/// so every shard gets its share.
pub(crate) fn messages(settings: &Settings, jobs: u64) -> Result<Vec<SendMessage>, BenchError> {
    let shards = settings.redis.queue_shards.max(1);
    let mut accounts: Vec<Option<AccountId>> = vec![None; usize::from(shards)];
    while accounts.iter().any(Option::is_none) {
        let account = AccountId::from(mongodb::bson::oid::ObjectId::new());
        let slot = &mut accounts[usize::from(shard_of(&account.to_hex(), shards))];
        slot.get_or_insert(account);
    }
    let accounts: Vec<AccountId> = accounts.into_iter().flatten().collect();
    (0..jobs)
        .map(|i| {
            let account = accounts[(i % u64::from(shards)) as usize];
            let job = SendMessage::new(account, format!("broadcast {i}"), "to every user");
            job.validate(&settings.message)
                .map(|_| job)
                .map_err(|e| BenchError::Enqueue(e.to_string()))
        })
        .collect()
}

/// `jobs` as the worker validates them.
pub(crate) fn validated(
    settings: &Settings,
    jobs: &[SendMessage],
) -> Result<Vec<ValidMessage>, BenchError> {
    jobs.iter()
        .map(|job| {
            job.validate(&settings.message)
                .map_err(|e| BenchError::Enqueue(e.to_string()))
        })
        .collect()
}

/// The `new_message` event of each of `messages`, as if stored at
/// `created_at`.
pub(crate) fn new_message_events(
    messages: Vec<ValidMessage>,
    created_at: mongodb::bson::DateTime,
) -> Vec<herald::push::Event> {
    messages
        .into_iter()
        .map(|message| {
            let stored = herald::store::StoredMessage {
                message,
                created_at,
                newly_inserted: true,
            };
            // A message to the whole account: one event.
            herald::push::job::PushJob::for_message(&stored, &Default::default())
                .remove(0)
                .event
        })
        .collect()
}

/// What one end-to-end run measured.
struct EndToEnd {
    row: Row,
    /// Messages per `insert_many` of the worker's, on average.
    batch_size: f64,
    /// Mean time of one of those calls.
    insert_call: Duration,
    /// What Redis did per message, from its counters around the run.
    redis: RedisWork,
    p50: Duration,
    p99: Duration,
    out_of_order: u64,
    stored: u64,
    pushed: u64,
    pushed_distinct: u64,
}

impl EndToEnd {
    fn verified(&self, jobs: u64) -> bool {
        self.stored == jobs && self.pushed == jobs && self.pushed_distinct == jobs
    }

    fn counts(&self) -> (u64, u64, u64) {
        (self.stored, self.pushed, self.pushed_distinct)
    }

    fn timed(self) -> Timed {
        Timed {
            row: self.row,
            p50: self.p50,
            p99: self.p99,
            out_of_order: self.out_of_order,
        }
    }
}

/// How many jobs and pushes an end-to-end run keeps in flight.
#[derive(Debug, Clone, Copy)]
enum Lanes {
    /// `queues.send_message.concurrency` and `queues.push.concurrency`, in that order.
    PerService(usize, usize),
    /// Both 1: the informational row.
    OneJobAtATime,
}

/// One end-to-end run with the worker settings of `lanes`.
async fn end_to_end(
    settings: &Settings,
    workload: &Workload,
    lanes: Lanes,
) -> Result<EndToEnd, BenchError> {
    let mut settings = private_settings(settings, "e2e")?;
    let (jobs_in_flight, pushes_in_flight) = match lanes {
        Lanes::PerService(jobs, pushes) => (jobs, pushes),
        Lanes::OneJobAtATime => (1, 1),
    };
    settings.queues.send_message.concurrency = jobs_in_flight;
    settings.queues.push.concurrency = pushes_in_flight;
    // Its /metrics tells the batch sizes it reached.
    settings.worker.ops_bind = Some(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        crate::latency::process::free_port()?,
    )));
    let sandbox = Recorder::spawn(&settings).await?;
    settings.tuisongbao.url = sandbox.url()?;
    let database = store::connect(&settings.mongodb).await?;
    let name = match lanes {
        Lanes::OneJobAtATime => "Herald end to end, one job at a time (info)".to_owned(),
        Lanes::PerService(..) => {
            format!("Herald end to end, {jobs_in_flight} jobs, pushes {pushes_in_flight} at a time")
        }
    };
    let result = drive(&settings, workload, &sandbox, &database, name).await;
    sandbox.stop();
    let _ = database.drop().await;
    let mut conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    super::queue::cleanup(&mut conn, &settings.redis.namespace.key_pattern()).await?;
    result
}

async fn drive(
    settings: &Settings,
    workload: &Workload,
    sandbox: &Recorder,
    database: &mongodb::Database,
    name: String,
) -> Result<EndToEnd, BenchError> {
    let jobs = workload.jobs;
    let messages = messages(settings, jobs)?;
    let conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    let mut producer =
        Producer::from_connection(conn, &settings.redis.namespace).with_limits(settings.message);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker::run(settings.clone(), async move {
        let _ = stopped.await;
    }));
    // The producer spreads messages over the shard count the worker
    // writes as it starts; before that it would see one shard.
    let mut redis = herald::queue::connect(settings.redis.url.as_str()).await?;
    let waiting = Instant::now();
    while herald::queues::shards::stored(&mut redis, &settings.redis.namespace)
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))?
        .is_none()
    {
        if running.is_finished() || waiting.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Invalid(
                "the worker did not write the queues' shard count".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let receipts = &sandbox.receipts;
    let window = workload.window.max(1);
    // Each message's enqueue time and its place in the enqueue order.
    let mut enqueued: HashMap<String, (Instant, u64)> = HashMap::with_capacity(jobs as usize);
    let mut pending = messages.into_iter();
    let mut sent: u64 = 0;
    let redis_before = RedisWork::read(&mut redis).await?;
    let start = Instant::now();
    let deadline = Duration::from_secs(600);
    while sent < jobs {
        let outstanding = sent - receipts.count.load(Ordering::Acquire).min(sent);
        if outstanding >= window {
            wait_for_receipt(receipts, start, deadline, &running).await?;
            continue;
        }
        let n = (window - outstanding).min(jobs - sent).min(ENQUEUE_CHUNK);
        let chunk: Vec<SendMessage> = pending.by_ref().take(n as usize).collect();
        let at = Instant::now();
        let ids = producer
            .enqueue_messages(chunk)
            .await
            .map_err(|e| BenchError::Enqueue(e.to_string()))?;
        for id in ids {
            let place = enqueued.len() as u64;
            enqueued.insert(id.to_hex(), (at, place));
        }
        sent += n;
    }
    while receipts.count.load(Ordering::Acquire) < jobs {
        wait_for_receipt(receipts, start, deadline, &running).await?;
    }
    let redis_work = RedisWork::read(&mut redis)
        .await?
        .since(&redis_before, jobs);
    let times = receipts.take();
    let last = times.iter().map(|(_, at)| *at).max().unwrap_or(start);
    let elapsed = last.saturating_duration_since(start);

    // Late duplicates, if any, would arrive now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let InsertCalls {
        batch_size,
        insert_call,
    } = insert_calls(settings).await?;
    let _ = stop.send(());
    let _ = running.await;

    let mut late = receipts.take();
    let mut all = times;
    all.append(&mut late);
    // In the order the events reached the sandbox.
    all.sort_by_key(|(_, at)| *at);
    let distinct: HashSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    let mut latencies: Vec<Duration> = all
        .iter()
        .filter_map(|(id, at)| {
            enqueued
                .get(id)
                .map(|(t, _)| at.saturating_duration_since(*t))
        })
        .collect();
    latencies.sort_unstable();
    let places: Vec<u64> = all
        .iter()
        .filter_map(|(id, _)| enqueued.get(id).map(|(_, place)| *place))
        .collect();
    let stored = database
        .collection::<Document>(MESSAGE_COLLECTION)
        .count_documents(doc! {})
        .await?;
    Ok(EndToEnd {
        row: Row {
            name,
            count: jobs,
            elapsed,
        },
        batch_size,
        insert_call,
        redis: redis_work,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        out_of_order: arrived_late(&places),
        stored,
        pushed: all.len() as u64,
        pushed_distinct: distinct.len() as u64,
    })
}

/// The worker's `insert_many` calls on average.
struct InsertCalls {
    /// Messages per call.
    batch_size: f64,
    /// Time per call.
    insert_call: Duration,
}

/// The means of the worker's `herald_message_insert_batch_size` and
/// `herald_message_insert_seconds`, read from its `/metrics`
/// (`worker.ops_bind` of `settings`).
async fn insert_calls(settings: &Settings) -> Result<InsertCalls, BenchError> {
    let bind = settings
        .worker
        .ops_bind
        .ok_or_else(|| BenchError::Invalid("the worker has no ops_bind".into()))?;
    let body = reqwest::get(format!("http://{bind}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| BenchError::Invalid(format!("the worker's /metrics: {e}")))?
        .text()
        .await
        .map_err(|e| BenchError::Invalid(format!("the worker's /metrics: {e}")))?;
    let sample = |name: &str| {
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    match (
        sample("herald_message_insert_batch_size_sum "),
        sample("herald_message_insert_seconds_sum "),
        sample("herald_message_insert_batch_size_count "),
    ) {
        (Some(documents), Some(seconds), Some(count)) if count > 0.0 => Ok(InsertCalls {
            batch_size: documents / count,
            insert_call: Duration::from_secs_f64((seconds / count).max(0.0)),
        }),
        _ => Err(BenchError::Invalid(
            "the worker's /metrics has no insert batches".into(),
        )),
    }
}

/// Messages enqueued per producer round trip (at most).
const ENQUEUE_CHUNK: u64 = 100;

async fn wait_for_receipt(
    receipts: &Receipts,
    start: Instant,
    deadline: Duration,
    running: &tokio::task::JoinHandle<Result<(), worker::WorkerError>>,
) -> Result<(), BenchError> {
    if running.is_finished() {
        return Err(BenchError::Stuck("the worker stopped early".into()));
    }
    if start.elapsed() > deadline {
        return Err(BenchError::Stuck(format!(
            "end to end ({} received)",
            receipts.count.load(Ordering::Relaxed)
        )));
    }
    // Bounded, so a missed notification costs a millisecond, not the run.
    let _ = tokio::time::timeout(Duration::from_millis(5), receipts.arrived.notified()).await;
    Ok(())
}

/// The value below which `q` of the sorted `values` fall (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How many of `places` (each event's place in the enqueue order, in the
/// order the events arrived) come after a higher one: events that arrived
/// after the event of a message enqueued later.
pub fn arrived_late(places: &[u64]) -> u64 {
    let mut highest = None;
    let mut late = 0;
    for &place in places {
        match highest {
            Some(h) if place < h => late += 1,
            _ => highest = Some(place),
        }
    }
    late
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&values[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn events_count_as_late_when_a_later_message_arrived_before_them() {
        assert_eq!(arrived_late(&[0, 1, 2, 3]), 0);
        assert_eq!(arrived_late(&[]), 0);
        // 1 and 2 both arrive after 3.
        assert_eq!(arrived_late(&[0, 3, 1, 2, 4]), 2);
        // Everything after the first arrival, in reverse.
        assert_eq!(arrived_late(&[3, 2, 1, 0]), 3);
        // A repeat of an earlier message's event is late too.
        assert_eq!(arrived_late(&[0, 1, 0]), 1);
    }
}
