//! `[message]`: limits applied to message jobs, as [`MessageLimits`].

use herald_jobs::MessageLimits;

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "message";
    MAX_CONTENT_BYTES: "max_content_bytes" = "65536", Rule::AtLeast(1), "content limit";
    MAX_TITLE_BYTES: "max_title_bytes" = "1024", Rule::AtLeast(1), "title limit";
}

/// Reads and checks `[message]`.
pub(super) fn read(values: &Values) -> Result<MessageLimits, ConfigError> {
    Ok(MessageLimits {
        max_content_bytes: values.whole(&MAX_CONTENT_BYTES)?,
        max_title_bytes: values.whole(&MAX_TITLE_BYTES)?,
    })
}
