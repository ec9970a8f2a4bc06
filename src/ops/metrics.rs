//! The Prometheus registry of one process and the metrics in it.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client):
//! the registry is a value owned by the process, not a global recorder, so
//! two workers started in one test process keep separate figures, and the
//! text it writes is OpenMetrics, which Prometheus scrapes natively.
//!
//! Counters and histograms are updated where the work happens (the job
//! layer, the push client, the export handler); the queue gauges are read
//! from Redis when `/metrics` is scraped, so every process reports the same
//! shared depth whichever one is asked.

use std::{
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Metric, Registry, Unit},
};

use herald_jobs::QueueName;

use crate::queue::{admin::QueueStats, TrimReason};

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of per-queue metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    /// Short queue name: `send_message`, `push` or `export`.
    queue: &'static str,
}

/// Labels of the queue depth gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    queue: &'static str,
    state: &'static str,
}

/// Labels of the enqueue-to-finish latency gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    queue: &'static str,
    /// `0.5` or `0.99`.
    quantile: &'static str,
}

/// Labels of the dependency gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    /// `redis` or `mongodb`.
    service: &'static str,
}

/// Labels of the trimmed dead jobs counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrimLabels {
    queue: &'static str,
    /// `age` (past `retention.dead_days`) or `cap` (beyond
    /// `retention.dead_max`).
    reason: &'static str,
}

/// How one call to the push provider ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted (`2xx` with body `OK`).
    Ok,
    /// Failed in a way that is retried (connection, timeout, 5xx, 429).
    Retryable,
    /// Refused for good (other 4xx).
    Permanent,
}

impl PushOutcome {
    /// The `outcome` label value: `ok`, `retryable` or `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            PushOutcome::Ok => "ok",
            PushOutcome::Retryable => "retryable",
            PushOutcome::Permanent => "permanent",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn job_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn push_histogram() -> Histogram {
    // 5 ms to about 10 s (the default request timeout).
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

struct Inner {
    registry: Registry,
    jobs_done: Family<QueueLabels, Counter>,
    jobs_failed: Family<QueueLabels, Counter>,
    jobs_deferred: Family<QueueLabels, Counter>,
    job_duration: HistogramFamily<QueueLabels>,
    push_duration: HistogramFamily<PushLabels>,
    export_rows: Counter,
    message_insert_batch: Histogram,
    message_insert_seconds: Histogram,
    queue_jobs: Family<DepthLabels, Gauge>,
    queue_workers: Family<QueueLabels, Gauge>,
    jobs_trimmed: Family<TrimLabels, Counter>,
    queue_paused: Family<QueueLabels, Gauge>,
    queue_latency: Family<LatencyLabels, Gauge<f64, AtomicU64>>,
    dependency_up: Family<ServiceLabels, Gauge>,
}

/// The metrics of one Herald process. Clones share the same figures.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` under `name` and gives it back, for recording.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`registered`], for a metric measured in seconds.
fn registered_seconds<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, Unit::Seconds, metric.clone());
    metric
}

impl Metrics {
    /// A registry holding every Herald metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let jobs_done = registered(
            &mut registry,
            "jobs_done",
            "Job runs that succeeded, per queue",
            Family::<QueueLabels, Counter>::default(),
        );
        let jobs_failed = registered(
            &mut registry,
            "jobs_failed",
            "Job runs that failed (retried later or dead), per queue",
            Family::<QueueLabels, Counter>::default(),
        );
        let jobs_deferred = registered(
            &mut registry,
            "jobs_deferred",
            "Job runs deferred without spending an attempt (the push rate limit), per queue",
            Family::<QueueLabels, Counter>::default(),
        );
        let job_duration: HistogramFamily<QueueLabels> = registered_seconds(
            &mut registry,
            "job_duration",
            "Time a job run took in its handler, per queue",
            Family::new_with_constructor(job_histogram),
        );
        let push_duration: HistogramFamily<PushLabels> = registered_seconds(
            &mut registry,
            "push_duration",
            "Time of one HTTP call to the push provider, by outcome",
            Family::new_with_constructor(push_histogram),
        );
        let export_rows = registered(
            &mut registry,
            "export_rows",
            "Rows written to finished export files",
            Counter::default(),
        );
        let message_insert_batch = registered(
            &mut registry,
            "message_insert_batch_size",
            "Messages stored by one insert_many (the send_message jobs' group commit)",
            Histogram::new(exponential_buckets(1.0, 2.0, 9)),
        );
        let message_insert_seconds = registered(
            &mut registry,
            "message_insert_seconds",
            "Time one insert_many of the send_message jobs' group commit took, from the call to its answer",
            Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
        );
        let queue_jobs = registered(&mut registry, "queue_jobs", "Jobs in a queue per state (pending, scheduled, running, failed), read from Redis at scrape time", Family::<DepthLabels, Gauge>::default());
        let queue_workers = registered(
            &mut registry,
            "queue_workers",
            "Worker processes heart-beating on a queue, read from Redis at scrape time",
            Family::<QueueLabels, Gauge>::default(),
        );
        let jobs_trimmed = registered(
            &mut registry,
            "jobs_trimmed",
            "Dead jobs removed by the retention, per queue and reason (age, cap), read from Redis at scrape time",
            Family::<TrimLabels, Counter>::default(),
        );
        let queue_paused = registered(
            &mut registry,
            "queue_paused",
            "1 while an operator has paused the queue, read from Redis at scrape time",
            Family::<QueueLabels, Gauge>::default(),
        );
        let queue_latency = registered_seconds(
            &mut registry,
            "queue_latency",
            "Enqueue-to-finish time of the jobs done in the last 5 minutes, per quantile, read from Redis (shared by every process) at scrape time; 0 when none finished",
            Family::<LatencyLabels, Gauge<f64, AtomicU64>>::default(),
        );
        let dependency_up = registered(
            &mut registry,
            "dependency_up",
            "1 when the service (redis, mongodb) answered a ping within 2 s at scrape time, else 0",
            Family::<ServiceLabels, Gauge>::default(),
        );
        // Every series exists from the start, at zero, so that rates and
        // alerts see a value before the first job rather than nothing.
        for queue in QueueName::ALL {
            let labels = QueueLabels {
                queue: queue.as_str(),
            };
            let _ = jobs_done.get_or_create(&labels);
            let _ = jobs_failed.get_or_create(&labels);
            let _ = jobs_deferred.get_or_create(&labels);
            let _ = job_duration.get_or_create(&labels);
            for reason in TrimReason::ALL {
                let _ = jobs_trimmed.get_or_create(&TrimLabels {
                    queue: queue.as_str(),
                    reason: reason.as_str(),
                });
            }
        }
        for outcome in [
            PushOutcome::Ok,
            PushOutcome::Retryable,
            PushOutcome::Permanent,
        ] {
            let _ = push_duration.get_or_create(&PushLabels {
                outcome: outcome.as_str(),
            });
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                jobs_done,
                jobs_failed,
                jobs_deferred,
                job_duration,
                push_duration,
                export_rows,
                message_insert_batch,
                message_insert_seconds,
                queue_jobs,
                queue_workers,
                jobs_trimmed,
                queue_paused,
                queue_latency,
                dependency_up,
            }),
        }
    }

    /// Records one `insert_many` of `documents` messages that took
    /// `elapsed`.
    pub fn message_batch_stored(&self, documents: usize, elapsed: Duration) {
        self.inner.message_insert_batch.observe(documents as f64);
        self.inner
            .message_insert_seconds
            .observe(elapsed.as_secs_f64());
    }

    /// Records one job run of `queue` that took `elapsed`.
    pub fn job_finished(&self, queue: &'static str, succeeded: bool, elapsed: Duration) {
        let labels = QueueLabels { queue };
        let counter = if succeeded {
            &self.inner.jobs_done
        } else {
            &self.inner.jobs_failed
        };
        counter.get_or_create(&labels).inc();
        self.inner
            .job_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records a job run of `queue` that deferred its job without
    /// spending an attempt (neither done nor failed).
    pub fn job_deferred(&self, queue: &'static str, elapsed: Duration) {
        let labels = QueueLabels { queue };
        self.inner.jobs_deferred.get_or_create(&labels).inc();
        self.inner
            .job_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records one call to the push provider.
    pub fn push_sent(&self, outcome: PushOutcome, elapsed: Duration) {
        self.inner
            .push_duration
            .get_or_create(&PushLabels {
                outcome: outcome.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Adds the rows of a finished export.
    pub fn export_rows(&self, rows: u64) {
        self.inner.export_rows.inc_by(rows);
    }

    /// Sets `queue`'s enqueue-to-finish latency gauges from the 50th and
    /// 99th percentiles in milliseconds (`None`: no job finished).
    pub fn set_queue_latency(&self, queue: &'static str, p50_ms: Option<u64>, p99_ms: Option<u64>) {
        for (quantile, ms) in [("0.5", p50_ms), ("0.99", p99_ms)] {
            self.inner
                .queue_latency
                .get_or_create(&LatencyLabels { queue, quantile })
                .set(ms.unwrap_or(0) as f64 / 1_000.0);
        }
    }

    /// Records whether `service` (`redis`, `mongodb`) answered.
    pub fn set_dependency_up(&self, service: &'static str, up: bool) {
        self.inner
            .dependency_up
            .get_or_create(&ServiceLabels { service })
            .set(i64::from(up));
    }

    /// Sets the depth gauges of `queue` from a fresh reading.
    pub fn set_queue_stats(&self, queue: &'static str, stats: &QueueStats) {
        let states = [
            ("pending", stats.pending),
            ("scheduled", stats.scheduled),
            ("running", stats.running),
            ("failed", stats.failed),
        ];
        for (state, count) in states {
            self.inner
                .queue_jobs
                .get_or_create(&DepthLabels { queue, state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.inner
            .queue_workers
            .get_or_create(&QueueLabels { queue })
            .set(i64::try_from(stats.workers).unwrap_or(i64::MAX));
        self.inner
            .queue_paused
            .get_or_create(&QueueLabels { queue })
            .set(i64::from(stats.paused));
        // The counts live in Redis, shared by every process; each process's
        // counter catches up with them (a counter only grows).
        for (reason, total) in [
            (TrimReason::Age, stats.trimmed_by_age),
            (TrimReason::Cap, stats.trimmed_by_cap),
        ] {
            let counter = self.inner.jobs_trimmed.get_or_create(&TrimLabels {
                queue,
                reason: reason.as_str(),
            });
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
    }

    /// The whole registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an error could only come from
        // a metric's own encoder, and then the partial text is still useful.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::warn!(error = %e, "metrics could not be fully encoded");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_text() {
        let metrics = Metrics::new();
        metrics.job_finished("push", true, Duration::from_millis(20));
        metrics.job_finished("push", false, Duration::from_millis(20));
        metrics.job_finished("push", true, Duration::from_millis(20));
        metrics.job_deferred("push", Duration::from_millis(1));
        metrics.job_deferred("push", Duration::from_millis(1));
        metrics.push_sent(PushOutcome::Retryable, Duration::from_millis(3));
        metrics.export_rows(42);
        metrics.set_queue_stats(
            "export",
            &QueueStats {
                pending: 7,
                workers: 2,
                trimmed_by_cap: 5,
                paused: true,
                ..QueueStats::default()
            },
        );
        // A second reading of the same Redis counts adds nothing.
        metrics.set_queue_stats(
            "export",
            &QueueStats {
                pending: 7,
                workers: 2,
                trimmed_by_cap: 5,
                ..QueueStats::default()
            },
        );
        metrics.set_queue_latency("push", Some(250), Some(2_500));
        metrics.set_queue_latency("export", None, None);
        metrics.set_dependency_up("redis", true);
        metrics.set_dependency_up("mongodb", false);
        let text = metrics.encode();
        for line in [
            "herald_queue_latency_seconds{queue=\"push\",quantile=\"0.5\"} 0.25",
            "herald_queue_latency_seconds{queue=\"push\",quantile=\"0.99\"} 2.5",
            "herald_queue_latency_seconds{queue=\"export\",quantile=\"0.99\"} 0.0",
            "herald_dependency_up{service=\"redis\"} 1",
            "herald_dependency_up{service=\"mongodb\"} 0",
            "# TYPE herald_jobs_done counter",
            "herald_jobs_done_total{queue=\"push\"} 2",
            "herald_jobs_failed_total{queue=\"push\"} 1",
            "herald_jobs_deferred_total{queue=\"push\"} 2",
            "herald_jobs_trimmed_total{queue=\"export\",reason=\"cap\"} 5",
            "herald_jobs_trimmed_total{queue=\"export\",reason=\"age\"} 0",
            "herald_queue_paused{queue=\"export\"} 0",
            "# TYPE herald_job_duration_seconds histogram",
            // Deferred runs are timed too.
            "herald_job_duration_seconds_count{queue=\"push\"} 5",
            "herald_push_duration_seconds_count{outcome=\"retryable\"} 1",
            "herald_export_rows_total 42",
            "herald_jobs_done_total{queue=\"send_message\"} 0",
            "herald_push_duration_seconds_count{outcome=\"ok\"} 0",
            "herald_queue_jobs{queue=\"export\",state=\"pending\"} 7",
            "herald_queue_workers{queue=\"export\"} 2",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
