//! The shared rate limit (`push.max_requests_per_sec`) and each account's
//! share of it (`push.account_share`): the limiter against the real Redis,
//! two worker processes under one limit counted at the stand-in, and one
//! account's broadcast that does not hold back another account's messages.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    num::NonZeroU32,
    path::PathBuf,
    time::{Duration, Instant},
};

use herald::{
    config::RateLimitSettings,
    push::rate_limit::{RateLimitError, RateLimiter},
};
use herald_jobs::{AccountId, MessageId, QueueName, SendMessage};
use herald_push_sandbox::RecordedRequest;
use mongodb::bson::doc;

use crate::helpers::{account, env_with, exited, signal, wait_for, wait_within, TestEnv};

/// The limit of the tests that count requests at the stand-in.
const PER_SEC: u32 = 50;

fn limit(per_sec: u32, share: f64, max_wait_ms: u64) -> Option<RateLimitSettings> {
    Some(RateLimitSettings {
        max_requests_per_sec: NonZeroU32::new(per_sec).expect("non-zero"),
        account_share: share,
        max_wait: Duration::from_millis(max_wait_ms),
    })
}

async fn limiter(env: &TestEnv, settings: Option<RateLimitSettings>) -> RateLimiter {
    let conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    RateLimiter::new(conn, &env.settings.redis.namespace, settings)
}

/// The most of `times` (milliseconds) that fall in any window of one
/// second, `[t, t + 1000)`, a window starting at each of them.
fn busiest_second(times: &[u64]) -> usize {
    let mut times = times.to_vec();
    times.sort_unstable();
    let mut most = 0;
    let mut end = 0;
    for (start, &t) in times.iter().enumerate() {
        while end < times.len() && times[end] < t + 1_000 {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

#[test]
fn the_busiest_second_counts_a_sliding_window() {
    assert_eq!(busiest_second(&[]), 0);
    assert_eq!(busiest_second(&[0, 999, 1_000, 1_999]), 2);
    assert_eq!(busiest_second(&[5, 10, 500, 1_004, 1_005]), 4);
}

/// The receive time of each HTTP request the stand-in answered (the events
/// of one Pusher `batch_events` call are one request).
fn request_times(requests: &[RecordedRequest]) -> Vec<u64> {
    let mut by_request: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, r) in requests.iter().enumerate() {
        let number = if r.request == 0 { i as u64 } else { r.request };
        by_request.entry(number).or_insert(r.received_at_ms);
    }
    by_request.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_on_one_redis_share_one_schedule() {
    let env = env_with(&[]).await;
    // Two processes' limiters, as two workers would hold them.
    let first = limiter(&env, limit(PER_SEC, 1.0, 5_000)).await;
    let second = limiter(&env, limit(PER_SEC, 1.0, 5_000)).await;
    let start = Instant::now();
    let turns: Vec<_> = (0..60)
        .map(|i| {
            let limiter = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                // A turn that came too late (a busy machine) is not used;
                // the job would be deferred and ask again, and so does this.
                loop {
                    match limiter.acquire().await {
                        Ok(()) => return start.elapsed().as_millis() as u64,
                        Err(RateLimitError::Late { retry_in, .. }) => {
                            tokio::time::sleep(retry_in).await
                        }
                        Err(other) => panic!("no turn within 5 s: {other}"),
                    }
                }
            })
        })
        .collect();
    let mut times = Vec::new();
    for turn in turns {
        times.push(turn.await.expect("no panic"));
    }
    let busiest = busiest_second(&times);
    assert!(busiest <= PER_SEC as usize, "{busiest} turns in one second");
    let last = times.iter().max().copied().unwrap_or_default();
    // 60 turns 22 ms apart: the last one about 1.3 s after the first.
    assert!(last >= 1_250, "the 60th turn came after {last} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_too_far_away_is_refused_with_times_spread_a_turn_apart() {
    let env = env_with(&[]).await;
    // 10 requests a second, waiting at most 250 ms: 3 or 4 turns are taken,
    // the others are told to come back, each a turn (110 ms) after the last.
    let limiter = limiter(&env, limit(10, 1.0, 250)).await;
    let mut admitted = 0;
    let mut retry_in = Vec::new();
    let asks = (0..12).map(|_| limiter.take_turn());
    for answer in futures::future::join_all(asks).await {
        match answer {
            Ok(_) => admitted += 1,
            Err(RateLimitError::Busy { retry_in: wait, .. }) => retry_in.push(wait),
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
    assert!((3..=4).contains(&admitted), "{admitted} admitted");
    retry_in.sort();
    assert_eq!(retry_in.len(), 12 - admitted);
    for pair in retry_in.windows(2) {
        // A turn, less the time between the two asks.
        let gap = pair[1] - pair[0];
        assert!(
            (Duration::from_millis(60)..=Duration::from_millis(111)).contains(&gap),
            "deferred jobs are spread a turn apart: {retry_in:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_over_its_share_is_refused_while_another_goes_on() {
    let env = env_with(&[]).await;
    // A quarter of 100 a second: 25 a second, 200 ms ahead at most.
    let limiter = limiter(&env, limit(100, 0.25, 200)).await;
    let (busy, quiet) = (account().to_hex(), account().to_hex());
    let mut admitted = 0;
    let refusal = loop {
        match limiter.admit_account(&busy, 1).await {
            Ok(()) => admitted += 1,
            Err(e) => break e,
        }
        assert!(admitted < 100, "the share never ran out");
    };
    // 200 ms at 25 a second, plus the first.
    assert!((5..=7).contains(&admitted), "{admitted} admitted");
    match refusal {
        RateLimitError::OverShare {
            account, retry_in, ..
        } => {
            assert_eq!(account, busy);
            assert!(retry_in > Duration::from_millis(150), "{retry_in:?}");
        }
        other => panic!("unexpected refusal: {other}"),
    }
    limiter
        .admit_account(&quiet, 1)
        .await
        .expect("another account has its own share");
    // A job of several slices takes several turns.
    let fresh = account().to_hex();
    limiter.admit_account(&fresh, 6).await.expect("6 of 6");
    assert!(limiter.admit_account(&fresh, 1).await.is_err());
}

fn log_path(env: &TestEnv, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}.log", env.namespace))
}

/// Workers heart-beating on the push queue.
async fn live_push_workers(env: &TestEnv) -> usize {
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    redis::cmd("ZCARD")
        .arg(format!(
            "{}:workers",
            env.settings.redis.namespace.queue(QueueName::Push)
        ))
        .query_async(&mut conn)
        .await
        .expect("ZCARD")
}

/// How many times the stand-in accepted each message's `new_message`.
fn accepted_per_message(requests: &[RecordedRequest]) -> HashMap<String, usize> {
    let mut pushes = HashMap::new();
    for r in requests {
        if r.status == 200 && r.name.as_deref() == Some("new_message") {
            let id = r.data["messageId"].as_str().unwrap_or_default().to_owned();
            *pushes.entry(id).or_insert(0) += 1;
        }
    }
    pushes
}

/// Every push job done, none dead, and none charged for the times the rate
/// limit deferred it: each was recorded done after exactly one attempt.
async fn assert_push_jobs_done_in_one_attempt(env: &TestEnv, expected: usize) {
    let done = env.queue_set(QueueName::Push, "done").await;
    assert_eq!(done.len(), expected);
    assert!(env.queue_set(QueueName::Push, "dead").await.is_empty());
    for id in done {
        let meta = env.job_meta(QueueName::Push, &id).await;
        assert_eq!(
            meta.get("attempts").map(String::as_str),
            Some("1"),
            "push job {id}: {meta:?}"
        );
    }
}

fn messages_for(account: AccountId, count: usize, title: &str) -> Vec<SendMessage> {
    (0..count)
        .map(|i| SendMessage::new(account, format!("{title} {i}"), "rate limited"))
        .collect()
}

/// Two `herald worker` processes with `provider` and a limit of
/// `per_sec` between them push 300 messages of 30 accounts: each is
/// accepted exactly once, every push job is done after one attempt, and no
/// second at the stand-in (a window starting at any request) holds more
/// than `per_sec` requests. Returns the requests' receive times.
async fn two_workers_under_one_limit(provider: &str, per_sec: u32) -> Vec<u64> {
    const MESSAGES: usize = 300;
    let limit = per_sec.to_string();
    let env = env_with(&[
        ("HERALD_PUSH_PROVIDER", provider),
        ("HERALD_PUSH_MAX_REQUESTS_PER_SEC", limit.as_str()),
    ])
    .await;
    let logs = [log_path(&env, "limited-1"), log_path(&env, "limited-2")];
    let mut workers: Vec<_> = logs
        .iter()
        .map(|log| env.spawn_herald_logged(&["worker"], &[], log))
        .collect();
    wait_for("both workers to register", || async {
        (live_push_workers(&env).await == 2).then_some(())
    })
    .await;

    let mut jobs = Vec::new();
    for _ in 0..30 {
        jobs.extend(messages_for(account(), MESSAGES / 30, "limited"));
    }
    let ids: Vec<MessageId> = env.enqueue_bulk(jobs).await;
    wait_within(
        "every message pushed",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async { (env.delivered("new_message").await.len() >= MESSAGES).then_some(()) },
    )
    .await;
    for worker in &workers {
        signal(worker, "TERM");
    }
    for worker in &mut workers {
        assert_eq!(exited(worker).await.code(), Some(0));
    }

    let requests = env.sandbox_requests().await;
    assert!(requests.iter().all(|r| r.status == 200));
    let times = request_times(&requests);
    let busiest = busiest_second(&times);
    let span_ms =
        times.iter().max().copied().unwrap_or(0) - times.iter().min().copied().unwrap_or(0);
    let deferred: usize = logs
        .iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("push deferred by the rate limit"))
                .count()
        })
        .sum();
    eprintln!(
        "{provider}: {} requests for {MESSAGES} events over {span_ms} ms, at most {busiest} in one second (limit {per_sec}); {deferred} deferrals",
        times.len()
    );
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
    assert!(
        busiest <= per_sec as usize,
        "{busiest} requests in one second"
    );

    let pushes = accepted_per_message(&requests);
    let expected: HashSet<String> = ids.iter().map(|id| id.to_hex()).collect();
    assert_eq!(pushes.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(pushes.values().all(|n| *n == 1), "a message pushed twice");
    assert_eq!(env.message_count(doc! {}).await as usize, MESSAGES);
    assert_push_jobs_done_in_one_attempt(&env, MESSAGES).await;
    times
}

/// Tuisongbao: one request per event, 50 a second between two processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_keep_one_limit_of_50_per_second_between_them() {
    let times = two_workers_under_one_limit("tuisongbao", PER_SEC).await;
    assert_eq!(times.len(), 300);
    // The limit, not the pipeline, set the pace.
    let busiest = busiest_second(&times);
    assert!(
        busiest >= 40,
        "only {busiest} requests in the busiest second"
    );
    let span_ms =
        times.iter().max().copied().unwrap_or(0) - times.iter().min().copied().unwrap_or(0);
    assert!(span_ms >= 5_000, "300 requests in {span_ms} ms");
}

/// Pusher: a `batch_events` call is one request, so under a limit of 10 a
/// second the events gather into batches and 300 of them need far fewer
/// than 300 requests, never more than 10 in a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pusher_a_batch_is_one_request_under_the_limit() {
    let times = two_workers_under_one_limit("pusher", 10).await;
    assert!(times.len() < 150, "{} requests for 300 events", times.len());
}

/// Account A enqueues a broadcast of 300 messages, then account B 5: with
/// each account held to half of 50 requests a second, A's jobs past its
/// share step aside and B's 5 are delivered while most of A's broadcast is
/// still waiting (all 305 stored before the first push, B's last in the
/// push queue). Every message is still delivered exactly once, and no
/// deferral spends an attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_accounts_broadcast_does_not_hold_back_another_accounts_messages() {
    const BROADCAST: usize = 300;
    const OTHERS: usize = 5;
    let per_sec = PER_SEC.to_string();
    let mut env = env_with(&[
        ("HERALD_PUSH_MAX_REQUESTS_PER_SEC", per_sec.as_str()),
        ("HERALD_PUSH_ACCOUNT_SHARE", "0.5"),
    ])
    .await;
    let (a, b) = (account(), account());
    // Both enqueued before the worker starts: B's jobs are behind all of
    // A's in the queue.
    env.enqueue_bulk(messages_for(a, BROADCAST, "broadcast"))
        .await;
    env.enqueue_bulk(messages_for(b, OTHERS, "notification"))
        .await;
    // The push queue waits until every message is stored, so what is
    // measured is the push queue's fairness, not how fast the database
    // stores the broadcast ahead of B's messages on a busy machine.
    let conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("redis");
    let push = herald::queues::admin(conn, &env.settings, QueueName::Push);
    push.pause().await.expect("pause");
    env.start_worker().await;
    wait_within(
        "every message stored",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            (env.message_count(doc! {}).await == (BROADCAST + OTHERS) as u64).then_some(())
        },
    )
    .await;
    push.resume().await.expect("resume");

    let a_hex = a.to_hex();
    let b_hex = b.to_hex();
    let of = |r: &RecordedRequest, account: &str| {
        r.status == 200 && r.data["accountId"].as_str() == Some(account)
    };
    let requests = wait_within(
        "account B's messages delivered",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let requests = env.sandbox_requests().await;
            (requests.iter().filter(|r| of(r, &b_hex)).count() >= OTHERS).then_some(requests)
        },
    )
    .await;
    // A's events the stand-in accepted before B's last one.
    let last_b = requests
        .iter()
        .rposition(|r| of(r, &b_hex))
        .expect("B's events");
    let a_before = requests[..last_b].iter().filter(|r| of(r, &a_hex)).count();
    eprintln!("account B's {OTHERS} messages delivered after {a_before} of A's {BROADCAST}");
    assert!(
        a_before < BROADCAST / 2,
        "B waited for {a_before} of A's {BROADCAST} messages"
    );

    wait_within(
        "account A's broadcast delivered",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async { (env.accepted_count().await as usize >= BROADCAST + OTHERS).then_some(()) },
    )
    .await;
    env.stop_worker().await.expect("worker stops cleanly");
    let requests = env.sandbox_requests().await;
    let pushes = accepted_per_message(&requests);
    assert_eq!(pushes.len(), BROADCAST + OTHERS);
    assert!(pushes.values().all(|n| *n == 1), "a message pushed twice");
    // A alone never went over its share: 25 a second, plus what it may
    // run ahead (one second's worth).
    let a_times: Vec<u64> = requests
        .iter()
        .filter(|r| of(r, &a_hex))
        .map(|r| r.received_at_ms)
        .collect();
    let a_span =
        a_times.iter().max().copied().unwrap_or(0) - a_times.iter().min().copied().unwrap_or(0);
    assert!(
        a_span >= 8_000,
        "A's 300 messages took {a_span} ms; at 25 a second they take over 10 s"
    );
    assert_push_jobs_done_in_one_attempt(&env, BROADCAST + OTHERS).await;
}
