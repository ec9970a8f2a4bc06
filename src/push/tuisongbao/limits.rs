//! Tuisongbao's documented limits for `POST /v2/open/engine/events`
//! (engineOpen): at most 10 channels per event, `data` at most 10 KB,
//! channel names at most 128 characters.

use crate::push::limits::ProviderLimits;

/// What one Tuisongbao events call may carry.
pub const LIMITS: ProviderLimits = ProviderLimits {
    max_channels: 10,
    max_data_bytes: 10 * 1024,
    max_channel_name: 128,
};
