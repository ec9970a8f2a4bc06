//! `[worker]`: worker process tuning.

use std::{net::SocketAddr, time::Duration};

use super::setting::{define_settings, millis, optional_address, positive, secs, Values};
use super::ConfigError;

define_settings! {
    section "worker";
    CONCURRENCY: "concurrency" = "16", "send_message jobs at once";
    PUSH_CONCURRENCY: "push_concurrency" = "32",
        "pushes at once; 1 keeps each account's events in enqueue order (docs/delivery.md)";
    FETCH_BATCH_SIZE: "fetch_batch_size" = "100", "jobs per Redis fetch";
    IDLE_WAIT_MS: "idle_wait_ms" = "5000",
        "longest an idle worker blocks on its queue's wake list before it fetches anyway (enqueues wake it at once)";
    HEARTBEAT_INTERVAL_SECS: "heartbeat_interval_secs" = "10", "liveness heartbeat";
    MISSED_HEARTBEATS: "missed_heartbeats" = "3",
        "missed beats before a worker's jobs are re-run elsewhere";
    SHUTDOWN_TIMEOUT_SECS: "shutdown_timeout_secs" = "30",
        "grace period for running jobs on shutdown";
    RETRY_BASE_MS: "retry_base_ms" = "1000", "backoff after a job's first failure";
    RETRY_CAP_SECS: "retry_cap_secs" = "300", "longest backoff";
    SEND_MESSAGE_MAX_ATTEMPTS: "send_message_max_attempts" = "10",
        "runs of a send_message job before it is dead";
    PUSH_MAX_ATTEMPTS: "push_max_attempts" = "12", "runs of a push job before it is dead";
    EXPORT_MAX_ATTEMPTS: "export_max_attempts" = "3", "runs of an export job before it is dead";
    EXPORT_CONCURRENCY: "export_concurrency" = "2", "exports at once per worker process";
    OPS_BIND: "ops_bind" = "127.0.0.1:9090",
        "where the worker serves `/healthz`, `/readyz`, `/metrics` (empty: off)";
    MAX_PAYLOAD_BYTES: "max_payload_bytes" = "1048576",
        "largest job payload a worker reads; a larger job is recorded dead";
}

/// Worker process tuning.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Concurrent send_message jobs.
    pub concurrency: usize,
    /// Concurrent push jobs.
    pub push_concurrency: usize,
    /// Jobs fetched per Redis round trip.
    pub fetch_batch_size: usize,
    /// Longest an idle worker waits for a wake-up before it fetches anyway.
    pub idle_wait: Duration,
    /// Liveness heartbeat period.
    pub heartbeat_interval: Duration,
    /// Heartbeats missed before a worker's jobs are re-run elsewhere.
    pub missed_heartbeats: usize,
    /// Grace period for running jobs on shutdown.
    pub shutdown_timeout: Duration,
    /// Backoff after a job's first failure (doubling after each further one).
    pub retry_base: Duration,
    /// Longest backoff between two runs of a job.
    pub retry_cap: Duration,
    /// Runs a send_message job gets before it is dead.
    pub send_message_max_attempts: usize,
    /// Runs a push job gets before it is dead.
    pub push_max_attempts: usize,
    /// Runs an export job gets before it is dead.
    pub export_max_attempts: usize,
    /// Exports running at the same time in one worker process.
    pub export_concurrency: usize,
    /// Where the worker serves `/healthz`, `/readyz` and `/metrics`;
    /// `None` when the setting is empty (no listener).
    pub ops_bind: Option<SocketAddr>,
    /// Largest job payload a worker decodes, in bytes; a larger one is
    /// recorded dead unread.
    pub max_payload_bytes: usize,
}

/// Reads and checks `[worker]`.
pub(super) fn read(values: &Values) -> Result<WorkerSettings, ConfigError> {
    Ok(WorkerSettings {
        concurrency: values.checked(&CONCURRENCY, positive)?,
        push_concurrency: values.checked(&PUSH_CONCURRENCY, positive)?,
        fetch_batch_size: values.checked(&FETCH_BATCH_SIZE, positive)?,
        idle_wait: values.checked(&IDLE_WAIT_MS, millis)?,
        heartbeat_interval: values.checked(&HEARTBEAT_INTERVAL_SECS, secs)?,
        missed_heartbeats: values.checked(&MISSED_HEARTBEATS, positive)?,
        // 0 is allowed: no grace period.
        shutdown_timeout: Duration::from_secs(values.get(&SHUTDOWN_TIMEOUT_SECS)?),
        retry_base: values.checked(&RETRY_BASE_MS, millis)?,
        retry_cap: values.checked(&RETRY_CAP_SECS, secs)?,
        send_message_max_attempts: values.checked(&SEND_MESSAGE_MAX_ATTEMPTS, positive)?,
        push_max_attempts: values.checked(&PUSH_MAX_ATTEMPTS, positive)?,
        export_max_attempts: values.checked(&EXPORT_MAX_ATTEMPTS, positive)?,
        export_concurrency: values.checked(&EXPORT_CONCURRENCY, positive)?,
        ops_bind: values.checked(&OPS_BIND, optional_address)?,
        max_payload_bytes: values.checked(&MAX_PAYLOAD_BYTES, positive)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn the_ops_listener_is_on_by_default_and_empty_disables_it() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.worker.ops_bind, Some("127.0.0.1:9090".parse().unwrap()));
        let s = Settings::load_from(&vars(&[("HERALD_WORKER_OPS_BIND", "")])).unwrap();
        assert_eq!(s.worker.ops_bind, None);
        let s = Settings::load_from(&vars(&[("HERALD_WORKER_OPS_BIND", "0.0.0.0:0")])).unwrap();
        assert_eq!(s.worker.ops_bind, Some("0.0.0.0:0".parse().unwrap()));
    }
}
