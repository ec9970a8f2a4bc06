//! Operations endpoints shared by `herald worker` and `herald web`.
//!
//! - `GET /healthz`: the process is alive and serving (`ok`), nothing else
//!   checked — for a supervisor's liveness probe.
//! - `GET /readyz`: Redis and MongoDB answer ([`health`]); 200 with a JSON
//!   body naming each dependency, 503 with the same body when one is down.
//! - `GET /metrics`: the process's Prometheus metrics ([`metrics`]), with
//!   the queue depth read from Redis at scrape time.
//!
//! None of them needs the operator token: they reveal counts, never
//! payloads, and are meant to be reached by probes and scrapers on an
//! internal address (`web.bind`, `worker.ops_bind`).
//!
//! - [`layer`]: the tower layer that counts and times job runs.

pub mod health;
pub mod layer;
pub mod metrics;

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use herald_jobs::RedisConnection;
use mongodb::Database;

pub use layer::JobMetricsLayer;
pub use metrics::{Metrics, PushOutcome};

use crate::{config::Settings, queue::admin::QueueAdmin};
use health::ReadinessProbe;

/// What the operations routes read.
#[derive(Debug, Clone)]
pub struct OpsState {
    metrics: Metrics,
    probe: Arc<ReadinessProbe>,
    queues: Arc<Vec<(&'static str, QueueAdmin)>>,
}

impl OpsState {
    /// State for a process connected to Redis by `redis`, reporting on
    /// `queues` (named; the caller configures them, so this layer knows
    /// none of Herald's queues); `database` is its MongoDB handle if it has
    /// one (otherwise one is opened on first check).
    pub fn new(
        metrics: Metrics,
        redis: RedisConnection,
        queues: Vec<(&'static str, QueueAdmin)>,
        settings: &Settings,
        database: Option<Database>,
    ) -> Self {
        Self {
            metrics,
            probe: Arc::new(ReadinessProbe::new(
                redis,
                settings.mongodb.clone(),
                database,
            )),
            queues: Arc::new(queues),
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// `/healthz` alone: what a public listener keeps when the others are on
/// an internal one.
pub fn health_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

/// `/healthz`, `/readyz` and `/metrics`, ready to merge into any router.
pub fn router<S>(state: OpsState) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let readiness = state.probe.check().await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        tracing::warn!(
            redis = readiness.redis.status,
            mongodb = readiness.mongodb.status,
            "readiness check failed"
        );
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Minutes of Redis's per-minute latency histograms the latency gauge reads.
const LATENCY_MINUTES: usize = 5;

async fn metrics(State(state): State<OpsState>) -> Response {
    let readiness = state.probe.check().await;
    state
        .metrics
        .set_dependency_up("redis", readiness.redis.is_up());
    state
        .metrics
        .set_dependency_up("mongodb", readiness.mongodb.is_up());
    // With Redis down each read would wait out its timeout, and the scrape
    // its own: the queue gauges keep their last reading instead.
    let queues = if readiness.redis.is_up() {
        state.queues.iter().as_slice()
    } else {
        &[]
    };
    // Every queue's two reads at once: a slow Redis costs the scrape one
    // timeout, not one per read.
    let reads = queues.iter().map(|(queue, admin)| async move {
        let (stats, latency) = tokio::join!(
            tokio::time::timeout(health::CHECK_TIMEOUT, admin.stats()),
            tokio::time::timeout(
                health::CHECK_TIMEOUT,
                admin.recent_latency_ms(LATENCY_MINUTES)
            ),
        );
        (queue, stats, latency)
    });
    for (queue, stats, latency) in futures::future::join_all(reads).await {
        match stats {
            Ok(Ok(stats)) => state.metrics.set_queue_stats(queue, &stats),
            // The gauges keep their last reading; the counters are still worth serving.
            Ok(Err(e)) => tracing::warn!(queue, error = %e, "queue depth not read for /metrics"),
            Err(_) => tracing::warn!(queue, "queue depth not read for /metrics: Redis too slow"),
        }
        match latency {
            Ok(Ok((p50, p99))) => state.metrics.set_queue_latency(queue, p50, p99),
            Ok(Err(e)) => tracing::warn!(queue, error = %e, "queue latency not read for /metrics"),
            Err(_) => tracing::warn!(queue, "queue latency not read for /metrics: Redis too slow"),
        }
    }
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Why the operations listener could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} (setting `{setting}`, env {}): {source}",
    crate::config::env_var_for(setting)
)]
pub struct OpsBindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The setting that asked for it (`worker.ops_bind`, `web.ops_bind`).
    pub setting: &'static str,
    /// The system's error.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves the operations routes on it until `shutdown`
/// completes. Returns the bound address (useful with port 0) and the task.
pub async fn spawn(
    addr: SocketAddr,
    setting: &'static str,
    state: OpsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), OpsBindError> {
    let failed = |source| OpsBindError {
        addr,
        setting,
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    let app: Router = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "operations listener failed");
        }
    });
    Ok((bound, task))
}
