//! `[retention]`: what the queues keep of finished jobs, and for how long.

use std::time::Duration;

use super::setting::{define_settings, positive, secs, Values};
use super::ConfigError;

define_settings! {
    section "retention";
    DONE_SECS: "done_secs" = "3600",
        "how long a job that succeeded is kept after it finished (the dashboard's counts and per-minute history are counters and stay)";
    DEAD_DAYS: "dead_days" = "30", "how long a dead job is kept for an operator to retry";
    DEAD_MAX: "dead_max" = "100000", "most dead jobs kept per queue; beyond it the oldest are trimmed";
}

/// What the queues keep of finished jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// How long a job that succeeded is kept after it finished.
    pub done: Duration,
    /// How long a dead job is kept after it failed for good.
    pub dead: Duration,
    /// Most dead jobs kept per queue.
    pub dead_max: u64,
}

/// Reads and checks `[retention]`.
pub(super) fn read(values: &Values) -> Result<RetentionSettings, ConfigError> {
    Ok(RetentionSettings {
        done: values.checked(&DONE_SECS, secs)?,
        dead: values.checked(&DEAD_DAYS, |days: u64| {
            positive(days).map(|d| Duration::from_secs(d.saturating_mul(86_400)))
        })?,
        dead_max: values.checked(&DEAD_MAX, positive)?,
    })
}
