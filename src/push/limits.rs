//! What a provider accepts in one event, checked before anything is sent.
//!
//! Each provider documents how many channels one event may name, how large
//! its `data` may be and what a channel name may hold. An event that breaks
//! the data or name rules can never be delivered, so it fails for good
//! before a request is made ([`ProviderLimits::check`]); an event naming
//! more channels than allowed is sent as several requests, one per slice of
//! [`ProviderLimits::channel_chunks`].

use super::{Event, PushError};

/// The documented limits of one provider's events call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Most channels one request may name.
    pub max_channels: usize,
    /// Most bytes of `data`, serialized as JSON.
    pub max_data_bytes: usize,
    /// Longest channel name, in characters.
    pub max_channel_name: usize,
}

/// Whether `c` may appear in a channel name: `A-Z a-z 0-9 _ - = @ , . ;`,
/// the set both Tuisongbao and the Pusher protocol document.
pub fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

impl ProviderLimits {
    /// Checks what no retry can change: every channel name, and the size
    /// of `data`. A channel list of any length passes (it is chunked).
    pub fn check(&self, event: &Event) -> Result<(), PushError> {
        if event.channels.is_empty() {
            return Err(PushError::InvalidEvent {
                event: event.name.clone(),
                reason: "it names no channel".to_owned(),
            });
        }
        for channel in &event.channels {
            self.check_channel(channel)
                .map_err(|reason| PushError::InvalidChannel {
                    channel: channel.clone(),
                    reason,
                })?;
        }
        let bytes = data_bytes(&event.data);
        if bytes > self.max_data_bytes {
            return Err(PushError::DataTooLarge {
                event: event.name.clone(),
                bytes,
                limit: self.max_data_bytes,
            });
        }
        Ok(())
    }

    /// Why `channel` is not a valid name, if it is not.
    pub fn check_channel(&self, channel: &str) -> Result<(), String> {
        let length = channel.chars().count();
        if length == 0 {
            return Err("a channel name must not be empty".to_owned());
        }
        if length > self.max_channel_name {
            return Err(format!(
                "a channel name has at most {} characters, this one {length}",
                self.max_channel_name
            ));
        }
        if let Some(bad) = channel.chars().find(|c| !is_channel_char(*c)) {
            return Err(format!(
                "{bad:?} is not allowed in a channel name (only A-Z a-z 0-9 _ - = @ , . ;)"
            ));
        }
        Ok(())
    }

    /// `channels` cut into consecutive slices of at most `max_channels`,
    /// in order: the same list always gives the same slices.
    pub fn channel_chunks<'a>(
        &self,
        channels: &'a [String],
    ) -> impl ExactSizeIterator<Item = &'a [String]> + 'a {
        channels.chunks(self.max_channels.max(1))
    }
}

/// Size of `data` as the provider receives it: its JSON text, in bytes.
pub fn data_bytes(data: &serde_json::Value) -> usize {
    serde_json::to_vec(data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ProviderLimits = ProviderLimits {
        max_channels: 10,
        max_data_bytes: 10 * 1024,
        max_channel_name: 128,
    };

    fn event(channels: &[&str], data: serde_json::Value) -> Event {
        Event {
            name: "e".into(),
            data,
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn every_documented_character_is_allowed() {
        let name = "AZaz09_-=@,.;";
        assert_eq!(LIMITS.check_channel(name), Ok(()));
        assert_eq!(
            LIMITS.check_channel("presence-message-wm-global5f0c8a3e2b1d4c0012345678"),
            Ok(())
        );
    }

    #[test]
    fn other_characters_are_refused_and_named() {
        for bad in ["a b", "a/b", "a:b", "é", "a#b", "a*b", "a\nb"] {
            let reason = LIMITS.check_channel(bad).unwrap_err();
            assert!(reason.contains("not allowed"), "{bad}: {reason}");
        }
        assert!(LIMITS.check_channel("").is_err());
    }

    #[test]
    fn a_name_of_128_characters_passes_and_129_fails() {
        assert_eq!(LIMITS.check_channel(&"a".repeat(128)), Ok(()));
        let reason = LIMITS.check_channel(&"a".repeat(129)).unwrap_err();
        assert!(reason.contains("128") && reason.contains("129"), "{reason}");
    }

    #[test]
    fn data_of_exactly_the_limit_passes_and_one_byte_more_fails_naming_the_size() {
        // `"` + payload + `"` is the JSON text of a string.
        let fits = serde_json::Value::String("x".repeat(10 * 1024 - 2));
        assert_eq!(data_bytes(&fits), 10 * 1024);
        assert_eq!(LIMITS.check(&event(&["c"], fits)), Ok(()));
        let over = serde_json::Value::String("x".repeat(10 * 1024 - 1));
        let err = LIMITS.check(&event(&["c"], over)).unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("10241") && text.contains("10240"), "{text}");
    }

    #[test]
    fn a_bad_channel_fails_the_event_for_good() {
        let err = LIMITS
            .check(&event(&["ok", "not ok"], serde_json::json!({})))
            .unwrap_err();
        assert!(
            matches!(err, PushError::InvalidChannel { ref channel, .. } if channel == "not ok")
        );
        assert!(!err.is_retryable());
        let err = LIMITS
            .check(&event(&[], serde_json::json!({})))
            .unwrap_err();
        assert!(!err.is_retryable());
    }

    #[test]
    fn channels_are_cut_into_slices_of_ten_in_order() {
        let channels: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        let chunks: Vec<&[String]> = LIMITS.channel_chunks(&channels).collect();
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        assert_eq!(chunks.concat(), channels);
        assert_eq!(LIMITS.channel_chunks(&channels[..10]).len(), 1);
    }
}
