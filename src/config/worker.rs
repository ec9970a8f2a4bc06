//! `[worker]`: worker process tuning shared by every queue (each queue's own
//! options are in `[queues.<name>]`, see `queues.rs`).

use std::{net::SocketAddr, time::Duration};

use super::setting::{define_settings, optional_address, Rule, Values};
use super::ConfigError;

define_settings! {
    section "worker";
    FETCH_BATCH_SIZE: "fetch_batch_size" = "100", Rule::AtLeast(1), "jobs per Redis fetch";
    IDLE_WAIT_MS: "idle_wait_ms" = "5000", Rule::AtLeast(1),
        "longest an idle worker blocks on its queue's wake list before it fetches anyway (enqueues wake it at once)";
    HEARTBEAT_INTERVAL_SECS: "heartbeat_interval_secs" = "10", Rule::AtLeast(1), "liveness heartbeat";
    MISSED_HEARTBEATS: "missed_heartbeats" = "3", Rule::AtLeast(1),
        "missed beats before a worker's jobs are re-run elsewhere";
    SHUTDOWN_TIMEOUT_SECS: "shutdown_timeout_secs" = "30", Rule::AtLeast(0),
        "grace period for running jobs on shutdown (0: none)";
    RETRY_BASE_MS: "retry_base_ms" = "1000", Rule::AtLeast(1), "backoff after a job's first failure";
    RETRY_CAP_SECS: "retry_cap_secs" = "300", Rule::AtLeast(1), "longest backoff";
    OPS_BIND: "ops_bind" = "127.0.0.1:9090", Rule::Form("an address, or empty"),
        "where the worker serves `/healthz`, `/readyz`, `/metrics` (empty: off)";
    MAX_PAYLOAD_BYTES: "max_payload_bytes" = "1048576", Rule::AtLeast(1),
        "largest job payload a worker reads; a larger job is recorded dead";
}

/// Worker process tuning.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
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
        fetch_batch_size: values.whole(&FETCH_BATCH_SIZE)?,
        idle_wait: values.millis(&IDLE_WAIT_MS)?,
        heartbeat_interval: values.secs(&HEARTBEAT_INTERVAL_SECS)?,
        missed_heartbeats: values.whole(&MISSED_HEARTBEATS)?,
        shutdown_timeout: values.secs(&SHUTDOWN_TIMEOUT_SECS)?,
        retry_base: values.millis(&RETRY_BASE_MS)?,
        retry_cap: values.secs(&RETRY_CAP_SECS)?,
        ops_bind: values.checked(&OPS_BIND, optional_address)?,
        max_payload_bytes: values.whole(&MAX_PAYLOAD_BYTES)?,
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
