//! `[retention]`: what the queues keep of finished jobs, and for how long.

use std::time::Duration;

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "retention";
    DONE_SECS: "done_secs" = "3600", Rule::AtLeast(1),
        "how long a job that succeeded is kept after it finished (the dashboard's counts and per-minute history are counters and stay)";
    DEAD_DAYS: "dead_days" = "30", Rule::AtLeast(1), "how long a dead job is kept for an operator to retry";
    DEAD_MAX: "dead_max" = "100000", Rule::AtLeast(1), "most dead jobs kept per queue; beyond it the oldest are trimmed";
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
        done: values.secs(&DONE_SECS)?,
        dead: values.days(&DEAD_DAYS)?,
        dead_max: values.whole(&DEAD_MAX)?,
    })
}
