//! When a failed job runs again: exponential backoff with jitter.
//!
//! Attempt `n` (1-based) that failed waits `base × 2^(n-1)`, capped at `cap`,
//! then a random point in the upper half of that delay ("equal jitter"): at
//! least half the backoff, so retries do not hammer a provider that is down,
//! and spread out, so a burst of failures does not come back as a burst.
//!
//! A job's error may ask for a later run than that ([`NotBefore`], e.g. a
//! provider's `Retry-After`): the later of the two counts, capped by `cap`.

use std::time::Duration;

use apalis_core::error::BoxDynError;

/// A job's error that asks for its next run no sooner than `delay` from
/// now. Displays as the error it wraps, so the job's history records that.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct NotBefore {
    /// Shortest wait before the next run (the policy's cap still applies).
    pub delay: Duration,
    /// The job's error.
    #[source]
    pub source: BoxDynError,
}

impl NotBefore {
    /// The shortest wait `error`, or an error in its source chain, asks for.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(not_before) = e.downcast_ref::<NotBefore>() {
                return Some(not_before.delay);
            }
            current = e.source();
        }
        None
    }
}

/// A job's error that asks to run again after `delay` *without this run
/// counting as an attempt*: the job did not get to do its work, for a
/// reason outside it (a rate limit shared with other workers, say), so it
/// keeps its whole attempt budget. No backoff, no cap and no history
/// entry: it is not a failure. Displays as the error it wraps.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct Defer {
    /// When the job runs again, from now.
    pub delay: Duration,
    /// Why it was deferred.
    #[source]
    pub source: BoxDynError,
}

impl Defer {
    /// The delay `error`, or an error in its source chain, defers its job by.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(defer) = e.downcast_ref::<Defer>() {
                return Some(defer.delay);
            }
            current = e.source();
        }
        None
    }
}

/// A queue's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure, before jitter.
    pub base: Duration,
    /// Longest delay, before jitter.
    pub cap: Duration,
    /// Runs allowed in all (the first one included); then the job is dead.
    pub max_attempts: usize,
}

/// What becomes of a job after a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// It succeeded.
    Done,
    /// It failed and runs again after this long.
    Retry(Duration),
    /// It will not run again (aborted, or out of attempts).
    Dead,
}

impl RetryPolicy {
    /// The delay before the run after failed attempt `attempt` (1-based),
    /// with `unit` a random number in `[0, 1)`.
    pub fn delay(&self, attempt: usize, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32) as u32;
        let backoff = self
            .base
            .checked_mul(2u32.saturating_pow(exponent))
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = backoff / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The longest a job can wait between its runs in all: every delay
    /// its attempts allow, each at its upper bound.
    pub fn longest_retry_span(&self) -> Duration {
        (1..self.max_attempts).map(|n| self.delay(n, 1.0)).sum()
    }

    /// Decides the fate of a job whose `attempt`-th run ended with `status`.
    /// `aborted` means the handler said retrying cannot help.
    pub fn outcome(&self, succeeded: bool, aborted: bool, attempt: usize, unit: f64) -> Outcome {
        if succeeded {
            Outcome::Done
        } else if aborted || attempt >= self.max_attempts {
            Outcome::Dead
        } else {
            Outcome::Retry(self.delay(attempt, unit))
        }
    }

    /// `outcome`, its retry put off to at least `not_before` (capped by `cap`).
    pub fn not_sooner(&self, outcome: Outcome, not_before: Option<Duration>) -> Outcome {
        match (outcome, not_before) {
            (Outcome::Retry(delay), Some(wait)) => Outcome::Retry(delay.max(wait.min(self.cap))),
            (outcome, _) => outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        max_attempts: 5,
    };

    #[test]
    fn delays_double_per_attempt_within_the_jitter_band() {
        for (attempt, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)] {
            let low = POLICY.delay(attempt, 0.0).as_secs_f64();
            let high = POLICY.delay(attempt, 0.999_999).as_secs_f64();
            assert!((low - full / 2.0).abs() < 1e-6, "attempt {attempt}: {low}");
            assert!((high - full).abs() < 1e-3, "attempt {attempt}: {high}");
        }
    }

    #[test]
    fn the_retry_span_adds_every_delay_at_its_upper_bound() {
        // 1 + 2 + 4 + 8 seconds before runs 2 to 5.
        assert_eq!(POLICY.longest_retry_span(), Duration::from_secs(15));
    }

    #[test]
    fn delays_stop_growing_at_the_cap() {
        assert!(POLICY.delay(7, 0.999_999) <= Duration::from_secs(60));
        assert!(POLICY.delay(500, 0.5) <= Duration::from_secs(60));
        assert!(POLICY.delay(500, 0.0) >= Duration::from_secs(30));
    }

    #[test]
    fn the_last_attempt_and_aborts_are_dead_others_retry() {
        assert_eq!(POLICY.outcome(true, false, 5, 0.5), Outcome::Done);
        assert!(matches!(
            POLICY.outcome(false, false, 4, 0.5),
            Outcome::Retry(_)
        ));
        assert_eq!(POLICY.outcome(false, false, 5, 0.5), Outcome::Dead);
        assert_eq!(POLICY.outcome(false, true, 1, 0.5), Outcome::Dead);
    }

    #[test]
    fn a_not_before_delays_a_retry_within_the_cap_and_nothing_else() {
        let retry = Outcome::Retry(Duration::from_secs(1));
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            POLICY.not_sooner(retry, secs(7)),
            Outcome::Retry(Duration::from_secs(7))
        );
        assert_eq!(POLICY.not_sooner(retry, secs(0)), retry);
        assert_eq!(POLICY.not_sooner(retry, None), retry);
        assert_eq!(
            POLICY.not_sooner(retry, secs(3600)),
            Outcome::Retry(POLICY.cap)
        );
        assert_eq!(POLICY.not_sooner(Outcome::Dead, secs(7)), Outcome::Dead);
        assert_eq!(POLICY.not_sooner(Outcome::Done, secs(7)), Outcome::Done);
    }

    #[test]
    fn a_defer_is_found_through_the_source_chain_and_is_not_a_not_before() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Defer);
        let inner = Defer {
            delay: Duration::from_millis(1500),
            source: "rate limit".into(),
        };
        assert_eq!(inner.to_string(), "rate limit");
        let outer = Outer(inner);
        assert_eq!(Defer::find(&outer), Some(Duration::from_millis(1500)));
        assert_eq!(NotBefore::find(&outer), None);
        let plain: BoxDynError = "plain".into();
        assert_eq!(Defer::find(plain.as_ref()), None);
    }

    #[test]
    fn a_not_before_is_found_through_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] NotBefore);
        let inner = NotBefore {
            delay: Duration::from_secs(5),
            source: "HTTP 429".into(),
        };
        assert_eq!(inner.to_string(), "HTTP 429");
        assert_eq!(NotBefore::find(&Outer(inner)), Some(Duration::from_secs(5)));
        let plain: BoxDynError = "plain".into();
        assert_eq!(NotBefore::find(plain.as_ref()), None);
    }
}
