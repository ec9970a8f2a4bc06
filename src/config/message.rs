//! `[message]`: limits applied to message jobs, as [`MessageLimits`].

use herald_jobs::MessageLimits;

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "message";
    MAX_CONTENT_BYTES: "max_content_bytes" = "65536", Rule::AtLeast(1), "content limit";
    MAX_TITLE_BYTES: "max_title_bytes" = "1024", Rule::AtLeast(1), "title limit";
    MAX_SCHEDULE_DAYS: "max_schedule_days" = "30", Rule::AtLeast(1),
        "furthest ahead a message's `sendAt` may be, in days; a later one is refused";
}

/// Reads and checks `[message]`.
pub(super) fn read(values: &Values) -> Result<MessageLimits, ConfigError> {
    Ok(MessageLimits {
        max_content_bytes: values.whole(&MAX_CONTENT_BYTES)?,
        max_title_bytes: values.whole(&MAX_TITLE_BYTES)?,
        max_schedule_ahead: values.days(&MAX_SCHEDULE_DAYS)?,
    })
}
