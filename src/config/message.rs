//! `[message]`: limits applied to message jobs, as [`MessageLimits`].

use herald_jobs::MessageLimits;

use super::setting::{define_settings, positive, Values};
use super::ConfigError;

define_settings! {
    section "message";
    MAX_CONTENT_BYTES: "max_content_bytes" = "65536", "content limit";
    MAX_TITLE_BYTES: "max_title_bytes" = "1024", "title limit";
}

/// Reads and checks `[message]`.
pub(super) fn read(values: &Values) -> Result<MessageLimits, ConfigError> {
    Ok(MessageLimits {
        max_content_bytes: values.checked(&MAX_CONTENT_BYTES, positive)?,
        max_title_bytes: values.checked(&MAX_TITLE_BYTES, positive)?,
    })
}
