//! Guessing tokens is slow for the guesser and cheap for Herald.
//!
//! - Each client address may fail `web.failed_logins_per_minute` sign-ins
//!   and token checks (a burst of that many, then one more per
//!   `60 / n` seconds: governor's GCRA). Past that, its requests that carry
//!   credentials are answered 429 with `Retry-After` *before* the
//!   credentials are checked, so a guess made while throttled tells
//!   nothing, right or wrong.
//! - A token of the wrong form never reaches MongoDB (the callers check the
//!   form first), and a well-formed token found unknown is remembered for a
//!   minute in a small cache of digests, so repeating it costs no query.
//!
//! The counts live in this process: several `herald web` processes each
//! allow the budget, which still leaves a 32-byte secret far out of reach.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

/// Client addresses and unknown tokens remembered at most.
const REMEMBERED: usize = 10_000;

/// How long a token found unknown is answered from the cache.
const UNKNOWN_FOR: Duration = Duration::from_secs(60);

/// The failed-credentials throttle and the unknown-token cache.
pub struct Throttle {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    /// Until when each throttled address is answered 429.
    blocked: Cache<IpAddr, Instant>,
    /// Digests of tokens found unknown, with when.
    unknown: Cache<[u8; 32], Instant>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Throttle {
    /// A throttle allowing `per_minute` failures per client address: the
    /// failure that spends the budget throttles the address, so the
    /// attempt after the `per_minute`-th failure is already refused.
    pub fn new(per_minute: NonZeroU32) -> Self {
        // GCRA admits a burst and then refuses: a burst one short of the
        // budget makes its last failure the refused one, which starts the
        // throttle.
        let burst = NonZeroU32::new(per_minute.get() - 1).unwrap_or(NonZeroU32::MIN);
        Self {
            failures: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            blocked: Cache::new(REMEMBERED),
            unknown: Cache::new(REMEMBERED),
        }
    }

    /// How long `client` must still wait, if it is throttled now.
    pub fn wait(&self, client: IpAddr) -> Option<Duration> {
        let until = self.blocked.get(&client)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            self.blocked.remove(&client);
        }
        left
    }

    /// Counts a failed sign-in or token check of `client`; past its budget,
    /// the client is throttled until the budget allows one more.
    pub fn failed(&self, client: IpAddr) {
        if let Err(not_until) = self.failures.check_key(&client) {
            let wait = not_until.wait_time_from(self.clock.now());
            self.blocked.insert(client, Instant::now() + wait);
        }
        if self.failures.len() > REMEMBERED {
            self.failures.retain_recent();
        }
    }

    /// Whether `token` was found unknown within the last minute.
    pub fn known_unknown(&self, token: &str) -> bool {
        let key = digest(token);
        match self.unknown.get(&key) {
            Some(at) if at.elapsed() < UNKNOWN_FOR => true,
            Some(_) => {
                self.unknown.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Remembers that `token` is unknown.
    pub fn remember_unknown(&self, token: &str) {
        self.unknown.insert(digest(token), Instant::now());
    }
}

/// Seconds for a `Retry-After` header: `wait` rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// 429 with `Retry-After` for a client throttled for `wait`.
pub fn too_many(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut response = super::problem::Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many failed sign-ins or token checks from this address; try again in {secs} s"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_budget_waits_and_others_do_not() {
        let throttle = Throttle::new(NonZeroU32::new(3).unwrap());
        let guesser: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.wait(guesser), None);
            throttle.failed(guesser);
        }
        // Three failures spend the budget of three a minute.
        let wait = throttle.wait(guesser).expect("throttled");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert_eq!(throttle.wait(other), None);
    }

    #[test]
    fn unknown_tokens_are_remembered_by_digest() {
        let throttle = Throttle::new(NonZeroU32::new(3).unwrap());
        assert!(!throttle.known_unknown("hrd_x"));
        throttle.remember_unknown("hrd_x");
        assert!(throttle.known_unknown("hrd_x"));
        assert!(!throttle.known_unknown("hrd_y"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
