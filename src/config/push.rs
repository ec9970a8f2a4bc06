//! `[push]`: which provider delivers realtime events, and the rate limit
//! every worker sharing the Redis keeps towards it.

use std::{num::NonZeroU32, time::Duration};

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "push";
    PROVIDER: "provider" = "tuisongbao", Rule::Form("`tuisongbao` or `pusher`"), "realtime provider: tuisongbao or pusher (Pusher Channels, Sockudo, soketi, Reverb)";
    MAX_REQUESTS_PER_SEC: "max_requests_per_sec" = "0", Rule::Between(0, u32::MAX as u64), "provider requests per second, shared by every worker on this Redis (0: unlimited)";
    ACCOUNT_SHARE: "account_share" = "0.5", Rule::Fraction, "largest fraction of max_requests_per_sec one account's pushes may use; beyond it they are deferred (1: no per-account limit)";
    RATE_WAIT_MS: "rate_wait_ms" = "1000", Rule::AtLeast(1), "longest a request waits for the rate limit; a longer wait defers the push job without spending an attempt";
    USER_CHANNEL: "user_channel" = "private-message-wm-user-{account}-{user}",
        Rule::Form("a channel name with {account} and {user}"),
        "each user's channel, where a message addressed to one user goes in full: {account} and {user} become the ids; must start with private- or presence-";
}

/// The realtime providers Herald speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Tuisongbao's REST API (`[tuisongbao]`).
    Tuisongbao,
    /// The Pusher Channels HTTP API (`[pusher]`).
    Pusher,
}

/// `[push]`, checked.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// The provider events go to.
    pub provider: ProviderKind,
    /// The shared rate limit; `None` when unlimited (`max_requests_per_sec` 0).
    pub rate_limit: Option<RateLimitSettings>,
    /// Each user's channel (`user_channel`).
    pub user_channels: crate::channels::UserChannels,
}

/// `push.max_requests_per_sec` and its companions, when a limit is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitSettings {
    /// Requests per second, for every worker sharing the Redis.
    pub max_requests_per_sec: NonZeroU32,
    /// Fraction of that rate one account may use, in `(0, 1]`.
    pub account_share: f64,
    /// Longest a request waits for its turn before its job is deferred.
    pub max_wait: Duration,
}

/// Reads and checks `[push]`.
pub(super) fn read(values: &Values) -> Result<PushSettings, ConfigError> {
    Ok(PushSettings {
        provider: values.checked(&PROVIDER, |name: String| {
            match name.trim().to_ascii_lowercase().as_str() {
                "tuisongbao" => Ok(ProviderKind::Tuisongbao),
                "pusher" => Ok(ProviderKind::Pusher),
                _ => Err(format!("is '{name}'; expected tuisongbao or pusher")),
            }
        })?,
        rate_limit: rate_limit(values)?,
        user_channels: values.checked(&USER_CHANNEL, |template: String| {
            crate::channels::UserChannels::parse(template.trim())
        })?,
    })
}

/// The rate limit's settings; its companions are checked even when no
/// limit is set, so a typo is found before someone turns the limit on.
fn rate_limit(values: &Values) -> Result<Option<RateLimitSettings>, ConfigError> {
    let per_sec: u32 = values.whole(&MAX_REQUESTS_PER_SEC)?;
    let account_share = values.fraction(&ACCOUNT_SHARE)?;
    let max_wait = values.millis(&RATE_WAIT_MS)?;
    Ok(
        NonZeroU32::new(per_sec).map(|max_requests_per_sec| RateLimitSettings {
            max_requests_per_sec,
            account_share,
            max_wait,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::ProviderKind;
    use crate::config::{tests::vars, Settings};

    #[test]
    fn tuisongbao_is_the_default_and_pusher_can_be_chosen() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.push.provider, ProviderKind::Tuisongbao);
        let s = Settings::load_from(&vars(&[("HERALD_PUSH_PROVIDER", "Pusher")])).unwrap();
        assert_eq!(s.push.provider, ProviderKind::Pusher);
        let err = Settings::load_from(&vars(&[("HERALD_PUSH_PROVIDER", "ably")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_PUSH_PROVIDER"), "{err}");
    }

    #[test]
    fn no_rate_limit_by_default_and_a_share_must_be_a_fraction() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.push.rate_limit, None);
        let s = Settings::load_from(&vars(&[
            ("HERALD_PUSH_MAX_REQUESTS_PER_SEC", "50"),
            ("HERALD_PUSH_ACCOUNT_SHARE", "0.25"),
        ]))
        .unwrap();
        let limit = s.push.rate_limit.expect("a limit");
        assert_eq!(limit.max_requests_per_sec.get(), 50);
        assert_eq!(limit.account_share, 0.25);
        assert_eq!(limit.max_wait, std::time::Duration::from_secs(1));
        for share in ["0", "1.5", "-0.1"] {
            let err =
                Settings::load_from(&vars(&[("HERALD_PUSH_ACCOUNT_SHARE", share)])).unwrap_err();
            assert!(
                err.to_string().contains("HERALD_PUSH_ACCOUNT_SHARE"),
                "{err}"
            );
        }
    }
}
