//! What the shared rate limit (`push.max_requests_per_sec`) costs a push:
//! the same events posted to a local stand-in by the Tuisongbao client
//! without a limiter (the baseline), with the limit at 0 (unlimited: no
//! Redis call, so it should cost nothing), with a limit far above the rate
//! reached (one script call per request, never a wait), and with that
//! limit and an account share (two script calls, as a push job makes).
//!
//! The four are measured in alternation, trial by trial and each trial
//! starting with the next one, after a warm-up, so a slow spell of the
//! machine falls on all of them; each row is the median trial. The
//! limiter's keys live in a private namespace and expire by themselves a
//! second after the last call.

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use herald::{
    config::{RateLimitSettings, Settings},
    push::{rate_limit::RateLimiter, Event, EventPusher, TuisongbaoClient},
    queue,
};
use herald_jobs::Namespace;
use herald_push_sandbox::{self as sandbox, SandboxCredentials};
use secrecy::ExposeSecret;

use crate::{queue::BenchError, Row};

/// A limit no benchmark reaches: each request asks Redis, none waits.
pub const HIGH_LIMIT: u32 = 1_000_000;

/// Accounts the account-share row spreads its requests over.
const ACCOUNTS: u64 = 100;

/// The ways a request is sent, in table order (the first is the baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    NoLimiter,
    Unlimited,
    HighLimit,
    HighLimitWithShare,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::NoLimiter,
        Variant::Unlimited,
        Variant::HighLimit,
        Variant::HighLimitWithShare,
    ];

    fn name(self, concurrency: usize) -> String {
        match self {
            Variant::NoLimiter => format!("push, no limiter, {concurrency} at a time"),
            Variant::Unlimited => "push, max_requests_per_sec 0".to_owned(),
            Variant::HighLimit => format!("push, max_requests_per_sec {HIGH_LIMIT}"),
            Variant::HighLimitWithShare => {
                format!("push, {HIGH_LIMIT}/s and account_share 0.5")
            }
        }
    }
}

/// Measures `requests` pushes, `concurrency` at a time, each variant once
/// per trial; returns one row per variant (the median trial), baseline first.
pub async fn run(
    settings: &Settings,
    requests: u64,
    concurrency: usize,
    trials: usize,
) -> Result<Vec<Row>, BenchError> {
    let (addr, server) = sandbox::spawn(
        "127.0.0.1:0".parse().expect("literal address"),
        SandboxCredentials {
            app_id: settings.tuisongbao.app_id.clone(),
            secret: settings.tuisongbao.secret.expose_secret().to_owned(),
        },
    )
    .await?;
    let mut tuisongbao = settings.tuisongbao.clone();
    tuisongbao.url = reqwest::Url::parse(&format!("http://{addr}"))
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    let client = TuisongbaoClient::new(&tuisongbao)
        .map_err(|e| BenchError::Enqueue(format!("push client: {e}")))?;
    let conn = queue::connect(settings.redis.url.as_str()).await?;
    let namespace = Namespace::parse(&format!(
        "{}-bench-rate-{}",
        settings.redis.namespace,
        std::process::id()
    ))
    .map_err(|e| BenchError::Invalid(e.reason))?;
    let limited = |share: f64| {
        Some(RateLimitSettings {
            max_requests_per_sec: NonZeroU32::new(HIGH_LIMIT).expect("non-zero"),
            account_share: share,
            max_wait: Duration::from_secs(1),
        })
    };
    let limiters = [
        RateLimiter::unlimited(),
        RateLimiter::new(conn.clone(), &namespace, None),
        RateLimiter::new(conn.clone(), &namespace, limited(1.0)),
        RateLimiter::new(conn, &namespace, limited(0.5)),
    ];
    let mut timings: Vec<Vec<Duration>> = vec![Vec::new(); Variant::ALL.len()];
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let result = async {
        // Connections opened and the stand-in warm before anything counts.
        measure(
            client.clone(),
            RateLimiter::unlimited(),
            Variant::NoLimiter,
            requests.min(500),
            concurrency,
        )
        .await?;
        for trial in 0..trials.max(1) {
            // Each trial starts with another variant, so none is always first.
            for k in 0..Variant::ALL.len() {
                let i = (trial + k) % Variant::ALL.len();
                let variant = Variant::ALL[i];
                let client = client.clone().with_rate_limit(limiters[i].clone());
                let elapsed =
                    measure(client, limiters[i].clone(), variant, requests, concurrency).await?;
                timings[i].push(elapsed);
                // The stand-in keeps every request; forget them, so its
                // growing log weighs on no later measurement.
                forget_requests(&http, &base).await?;
            }
        }
        Ok::<_, BenchError>(())
    }
    .await;
    server.abort();
    result?;
    Ok(Variant::ALL
        .into_iter()
        .zip(timings)
        .map(|(variant, mut times)| {
            times.sort();
            Row {
                name: variant.name(concurrency),
                count: requests,
                elapsed: times[times.len() / 2],
            }
        })
        .collect())
}

/// Empties the stand-in's request log.
async fn forget_requests(http: &reqwest::Client, base: &str) -> Result<(), BenchError> {
    let answer = http
        .delete(format!("{base}/_sandbox/events"))
        .send()
        .await
        .map_err(|e| BenchError::Invalid(format!("the stand-in: {e}")))?;
    if !answer.status().is_success() {
        return Err(BenchError::Invalid(format!(
            "the stand-in answered {} to DELETE /_sandbox/events",
            answer.status()
        )));
    }
    Ok(())
}

/// The limiter's own cost per request, without HTTP: `acquire` with
/// `max_requests_per_sec` 0 (a branch; `calls` of them on one task) and
/// with [`HIGH_LIMIT`] (one script call each; `calls / 100` of them,
/// `concurrency` at a time on a shared connection). Rows in that order.
pub async fn limiter_alone(
    settings: &Settings,
    calls: u64,
    concurrency: usize,
) -> Result<Vec<Row>, BenchError> {
    let conn = queue::connect(settings.redis.url.as_str()).await?;
    let namespace = Namespace::parse(&format!(
        "{}-bench-rate-alone-{}",
        settings.redis.namespace,
        std::process::id()
    ))
    .map_err(|e| BenchError::Invalid(e.reason))?;
    let unlimited = RateLimiter::new(conn.clone(), &namespace, None);
    let start = Instant::now();
    for _ in 0..calls {
        unlimited
            .acquire()
            .await
            .map_err(|e| BenchError::Invalid(e.to_string()))?;
    }
    let free = Row {
        name: "acquire, max_requests_per_sec 0".to_owned(),
        count: calls,
        elapsed: start.elapsed(),
    };
    let limited = RateLimiter::new(
        conn,
        &namespace,
        Some(RateLimitSettings {
            max_requests_per_sec: NonZeroU32::new(HIGH_LIMIT).expect("non-zero"),
            account_share: 1.0,
            max_wait: Duration::from_secs(1),
        }),
    );
    let scripted = (calls / 100).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (limited, next) = (limited.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < scripted {
                    limited
                        .acquire()
                        .await
                        .map_err(|e| BenchError::Invalid(e.to_string()))?;
                }
                Ok::<(), BenchError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Invalid(format!("a caller panicked: {e}")))??;
    }
    Ok(vec![
        free,
        Row {
            name: format!("acquire, max_requests_per_sec {HIGH_LIMIT}, {concurrency} at a time"),
            count: scripted,
            elapsed: start.elapsed(),
        },
    ])
}

/// Sends `requests` events, `concurrency` at a time; a push job's account
/// check first in the account-share variant.
async fn measure(
    client: TuisongbaoClient,
    limiter: RateLimiter,
    variant: Variant,
    requests: u64,
    concurrency: usize,
) -> Result<Duration, BenchError> {
    let event = Arc::new(Event {
        name: "bench".to_owned(),
        data: serde_json::json!({ "bench": "rate limit" }),
        channels: vec!["presence-message-wm-global-bench".to_owned()],
    });
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, limiter, event, next) =
                (client.clone(), limiter.clone(), event.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return Ok::<(), BenchError>(());
                    }
                    if variant == Variant::HighLimitWithShare {
                        limiter
                            .admit_account(&format!("account-{}", i % ACCOUNTS), 1)
                            .await
                            .map_err(|e| BenchError::Invalid(e.to_string()))?;
                    }
                    client
                        .send(&event)
                        .await
                        .map_err(|e| BenchError::Invalid(format!("push: {e}")))?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Invalid(format!("a sender panicked: {e}")))??;
    }
    Ok(start.elapsed())
}
