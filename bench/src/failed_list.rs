//! The failed list at scale: page times of the dashboard's API with
//! 100,000 dead jobs, against the same server's `/healthz` (one HTTP round
//! trip with no work) measured in the same run.
//!
//! The dead jobs are written as the complete script records them
//! ([`herald::queue::seed`]): push jobs over three events, fifty accounts
//! and four error groups, so each filter selects a share like a real
//! incident's. `herald web`'s router serves in this process on loopback;
//! every request goes through HTTP, the guard, Redis and JSON, as the
//! dashboard's do. The run uses its own namespace and removes it.

use std::time::{Duration, Instant};

use herald::{
    config::Settings,
    queue::{
        dead_index::{error_group, group_id},
        seed::{seed_dead_jobs, SeedDeadJob},
    },
    store,
};
use herald_jobs::{Namespace, QueueName};
use serde_json::json;

use crate::queue::BenchError;

/// Requests per measured route.
pub const REQUESTS: usize = 200;

/// The p99 the issue asks of every route, in milliseconds.
pub const TARGET_P99_MS: f64 = 100.0;

/// The operator token of the in-process server.
const TOKEN: &str = "herald-bench-failed-list-operator-token";

/// One route's times.
#[derive(Debug, Clone)]
pub struct RouteTimes {
    /// What was asked.
    pub name: String,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// The benchmark's result: the baseline first.
#[derive(Debug, Clone)]
pub struct FailedListReport {
    /// Dead jobs seeded.
    pub dead_jobs: usize,
    /// Seconds the seeding took.
    pub seed_secs: f64,
    /// `/healthz` first, then each route.
    pub routes: Vec<RouteTimes>,
}

fn error_text(i: usize) -> String {
    match i % 4 {
        0 => format!("tuisongbao answered 401 for new_message:{i:024x}"),
        1 => format!("tuisongbao answered 500 after {} ms", 1000 + i),
        2 => format!("connection refused to 127.0.0.1:{}", 10_000 + i % 50_000),
        _ => "data is over 10 KB".to_owned(),
    }
}

fn account_of(i: usize) -> String {
    format!("{:024x}", 0x5f0c_8a3e_0000_usize + i % 50)
}

/// Seeds `dead_jobs` dead push jobs and measures each route.
pub async fn run(settings: &Settings, dead_jobs: usize) -> Result<FailedListReport, BenchError> {
    let suffix = mongodb::bson::oid::ObjectId::new().to_hex();
    let mut settings = settings.clone();
    settings.redis.namespace = Namespace::parse(&format!("herald-bench-failed-{suffix}"))
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let mut conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    let result = measure(&settings, &mut conn, dead_jobs).await;
    crate::queue::cleanup(&mut conn, &settings.redis.namespace.key_pattern()).await?;
    result
}

async fn measure(
    settings: &Settings,
    conn: &mut herald_jobs::RedisConnection,
    dead_jobs: usize,
) -> Result<FailedListReport, BenchError> {
    let config = herald::queues::config(settings, QueueName::Push);
    let events = ["new_message", "export_finish", "export_progress"];
    let jobs: Vec<SeedDeadJob> = (0..dead_jobs)
        .map(|i| SeedDeadJob {
            id: format!("bench-{i:07}"),
            payload: json!({
                "event": { "name": events[i % 3], "channels": [format!("presence-{}", account_of(i))] },
                "accountId": account_of(i),
                "idempotencyKey": format!("{}:{i}", events[i % 3]),
            })
            .to_string(),
            failed_at: 1_700_000_000.0 + i as f64,
            error: error_text(i),
        })
        .collect();
    let seeding = Instant::now();
    seed_dead_jobs(conn, &config, &jobs).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    drop(jobs);

    let database = store::connect(&settings.mongodb).await?;
    let state = herald::web::WebState::new(
        conn.clone(),
        &database,
        settings,
        Some(secrecy::SecretString::from(TOKEN.to_owned())),
    )
    .map_err(|e| BenchError::Invalid(format!("web state: {e}")))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(herald::web::serve(listener, state, std::future::pending()));

    let group = group_id(&error_group(&error_text(2)));
    let account = account_of(7);
    let failed = format!("{base}/api/v1/queues/push/failed");
    let routes = [
        ("GET /healthz (baseline)", format!("{base}/healthz")),
        ("failed, first page of 50", format!("{failed}?limit=50")),
        (
            "failed, page at offset 50,000",
            format!("{failed}?limit=50&offset=50000"),
        ),
        (
            "failed, by event",
            format!("{failed}?limit=50&event=export_finish"),
        ),
        (
            "failed, by account",
            format!("{failed}?limit=50&account={account}"),
        ),
        (
            "failed, by error group",
            format!("{failed}?limit=50&error={group}"),
        ),
        (
            "failed, by event and account",
            format!("{failed}?limit=50&event=new_message&account={account}"),
        ),
        ("error groups", format!("{failed}/groups")),
        ("queue counts", format!("{base}/api/v1/queues")),
    ];
    let http = reqwest::Client::new();
    let mut measured = Vec::new();
    for (name, url) in routes {
        measured.push(time_route(&http, name, &url).await?);
    }
    server.abort();
    Ok(FailedListReport {
        dead_jobs,
        seed_secs,
        routes: measured,
    })
}

async fn time_route(
    http: &reqwest::Client,
    name: &str,
    url: &str,
) -> Result<RouteTimes, BenchError> {
    let get = |url: &str| http.get(url).bearer_auth(TOKEN).send();
    // One unmeasured request warms the connection and the page.
    let first = get(url)
        .await
        .map_err(|e| BenchError::Invalid(format!("{name}: {e}")))?;
    if !first.status().is_success() {
        return Err(BenchError::Invalid(format!(
            "{name}: HTTP {}",
            first.status()
        )));
    }
    let mut times: Vec<Duration> = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        let response = get(url)
            .await
            .map_err(|e| BenchError::Invalid(format!("{name}: {e}")))?;
        let body = response
            .bytes()
            .await
            .map_err(|e| BenchError::Invalid(format!("{name}: {e}")))?;
        times.push(start.elapsed());
        std::hint::black_box(body);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at =
        |q: f64| ms(times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1]);
    Ok(RouteTimes {
        name: name.to_owned(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times.last().copied().map(ms).unwrap_or_default(),
    })
}

impl FailedListReport {
    /// Whether every route's p99 is under [`TARGET_P99_MS`].
    pub fn met(&self) -> bool {
        self.routes.iter().all(|r| r.p99_ms < TARGET_P99_MS)
    }

    /// The table: each route's times and its p99 over the baseline's.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Failed list with {} dead jobs (seeded in {:.1} s), {REQUESTS} requests per route; target p99 < {TARGET_P99_MS} ms\n",
            self.dead_jobs, self.seed_secs
        );
        out.push_str(&format!(
            "{:<36} {:>8} {:>8} {:>8} {:>12}\n",
            "route", "p50 ms", "p99 ms", "max ms", "p99 ratio"
        ));
        let baseline = self.routes.first().map_or(1.0, |r| r.p99_ms.max(1e-6));
        for r in &self.routes {
            out.push_str(&format!(
                "{:<36} {:>8.2} {:>8.2} {:>8.2} {:>12.1}\n",
                r.name,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.p99_ms / baseline
            ));
        }
        out
    }
}
