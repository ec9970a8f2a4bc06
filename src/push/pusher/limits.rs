//! The Pusher Channels HTTP API's documented limits: at most 100 channels
//! per event, `data` at most 10 KB, channel names at most 164 characters
//! of `A-Z a-z 0-9 _ - = @ , . ;`, and at most 10 events per
//! `batch_events` call. Self-hosted servers of the protocol (Sockudo,
//! soketi, Reverb) accept at least as much by default.

use crate::push::limits::ProviderLimits;

/// What one Pusher events call may carry.
pub const LIMITS: ProviderLimits = ProviderLimits {
    max_channels: 100,
    max_data_bytes: 10 * 1024,
    max_channel_name: 164,
};

/// Most events in one `batch_events` call.
pub const MAX_BATCH: usize = 10;
