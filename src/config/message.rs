//! `[message]`: limits applied to message jobs, as [`MessageLimits`], and how
//! long stored messages are kept ([`MessageRetention`]).

use std::time::Duration;

use herald_jobs::MessageLimits;

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "message";
    MAX_CONTENT_BYTES: "max_content_bytes" = "65536", Rule::AtLeast(1), "content limit";
    MAX_TITLE_BYTES: "max_title_bytes" = "1024", Rule::AtLeast(1), "title limit";
    MAX_SCHEDULE_DAYS: "max_schedule_days" = "30", Rule::AtLeast(1),
        "furthest ahead a message's `sendAt` may be, in days; a later one is refused";
    MAX_DATA_BYTES: "max_data_bytes" = "4096", Rule::AtLeast(2),
        "largest `data` object a message may carry, in bytes of JSON";
    KEEP_DAYS: "keep_days" = "0", Rule::AtLeast(0),
        "messages stored without `expiresAt` are removed this many days after `createdAt`, with their read marks; 0 keeps them (messages stored before it was set are kept)";
    EXPIRY_SWEEP_SECS: "expiry_sweep_secs" = "60", Rule::AtLeast(1),
        "how often a worker removes expired messages (one worker at a time)";
}

/// Reads and checks `[message]`.
/// How long stored messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRetention {
    /// How long after `createdAt` a message stored without `expiresAt` is
    /// removed; `None`: kept.
    pub keep: Option<Duration>,
    /// How often expired messages are removed.
    pub sweep_every: Duration,
}

/// Reads `[message]`'s retention settings.
pub(super) fn read_retention(values: &Values) -> Result<MessageRetention, ConfigError> {
    Ok(MessageRetention {
        keep: Some(values.days(&KEEP_DAYS)?).filter(|keep| !keep.is_zero()),
        sweep_every: values.secs(&EXPIRY_SWEEP_SECS)?,
    })
}

/// Reads `[message]`'s limits.
pub(super) fn read(values: &Values) -> Result<MessageLimits, ConfigError> {
    Ok(MessageLimits {
        max_content_bytes: values.whole(&MAX_CONTENT_BYTES)?,
        max_title_bytes: values.whole(&MAX_TITLE_BYTES)?,
        max_schedule_ahead: values.days(&MAX_SCHEDULE_DAYS)?,
        max_data_bytes: values.whole(&MAX_DATA_BYTES)?,
    })
}
