//! One rate limit towards the provider for every worker process sharing
//! the Redis (`push.max_requests_per_sec`), and each account's share of it
//! (`push.account_share`).
//!
//! A provider counts requests per app, not per process, so the limit lives
//! in Redis: one Lua script (`rate_limit.lua`) runs GCRA (the generic cell
//! rate algorithm, as "virtual scheduling") on one hash,
//! `{NAMESPACE:push}:rate` (beside the push queue's keys), on Redis's
//! clock. Each call takes the next turn of a schedule spaced
//! `1.1 s / max_requests_per_sec` apart and answers
//! how long until it; the caller sleeps that long and sends. There is no
//! burst: a quiet minute does not buy a busy second.
//!
//! A turn is a moment on Redis's clock, and the provider sees the request
//! somewhat later: the script's answer travels back, the sleeping task
//! wakes, the request is written. If those delays differed freely, one
//! late request followed by one on time would squeeze 51 requests of a
//! 50-per-second schedule into one of the provider's seconds. Two things
//! bound it:
//!
//! - a request that finds itself more than [`LATE_LIMIT`] past its turn
//!   (counted from when it asked, so a slow answer counts too) gives the
//!   turn up and takes the next one; after [`MAX_RETAKES`] such retakes it
//!   is not sent late but deferred ([`RateLimitError::Late`]), so no
//!   request leaves more than [`LATE_LIMIT`] after its turn;
//! - the 10 % of headroom in the spacing (100 ms a second) absorbs that
//!   lateness plus the differences in the request's journey to the
//!   provider: a second at the provider holds more than the limit only if
//!   two requests' journeys differ by more than 85 ms.
//!
//! - [`RateLimiter::acquire`] is called by the provider clients before
//!   every request (a slice of channels, a Pusher `batch_events` call): it
//!   waits for the turn, or, when the turn is more than `push.rate_wait_ms`
//!   away, takes nothing and answers [`RateLimitError::Busy`] with a time
//!   to come back.
//! - [`RateLimiter::admit_account`] is called by the push handler once per
//!   job, before sending: the same script on the account's own hash,
//!   `{NAMESPACE:push}:rate:account:<accountId>`, spaced `1 / share` times
//!   wider and allowed to run `push.rate_wait_ms` ahead. An account past
//!   its share gets [`RateLimitError::OverShare`].
//!
//! Both refusals defer the job ([`crate::queue::retry::Defer`]): it goes
//! back to the queue's schedule without spending an attempt, and the jobs
//! behind it in the queue (other accounts' notifications) run meanwhile.
//! The times handed to deferred jobs are spread a turn apart, so a backlog
//! of them comes back at the limited rate rather than all at once.
//!
//! With no limit set the limiter is [`RateLimiter::unlimited`]: no Redis
//! call, no allocation, nothing but a branch.

use std::{num::NonZeroU32, sync::Arc, sync::LazyLock, time::Duration};

use tokio::time::Instant;

use herald_jobs::RedisConnection;
use herald_jobs::{Namespace, QueueName};
use redis::Script;
use tracing::debug;

use crate::config::RateLimitSettings;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rate_limit.lua")));

/// How much longer than a second the schedule of `max_requests_per_sec`
/// turns is stretched, in parts per thousand: the headroom for requests
/// that reach the provider later than their turn (see the module docs).
const HEADROOM_PERMILLE: u64 = 100;

/// How late past its turn a request may still be sent.
pub const LATE_LIMIT: Duration = Duration::from_millis(15);

/// How many times a request too late for its turn takes another before it
/// is deferred ([`RateLimitError::Late`]).
pub const MAX_RETAKES: usize = 2;

/// Why a request (or a job) may not go now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// The shared limit's next free turn is further away than the wait allowed.
    #[error("the shared rate limit of {per_sec} requests/s has no free turn within {max_wait_ms} ms; deferred by {} ms", retry_in.as_millis())]
    Busy {
        /// `push.max_requests_per_sec`.
        per_sec: u32,
        /// `push.rate_wait_ms`.
        max_wait_ms: u64,
        /// When to try again.
        retry_in: Duration,
    },
    /// Every turn taken came more than [`LATE_LIMIT`] late (a machine too
    /// busy to keep the schedule); nothing was sent.
    #[error("the rate limit's turn came {} ms late {turns} times in a row (a busy machine); not sent late, deferred by {} ms", late.as_millis(), retry_in.as_millis())]
    Late {
        /// How late the last turn came.
        late: Duration,
        /// How many turns were taken.
        turns: usize,
        /// When to try again.
        retry_in: Duration,
    },
    /// The account has used its share of the limit for now.
    #[error("account {account} is over its share of the rate limit ({share_percent}% of {per_sec} requests/s); deferred by {} ms", retry_in.as_millis())]
    OverShare {
        /// The account, as its job names it.
        account: String,
        /// `push.account_share`, in percent.
        share_percent: u32,
        /// `push.max_requests_per_sec`.
        per_sec: u32,
        /// When to try again.
        retry_in: Duration,
    },
    /// Redis did not answer the limiter's script; nothing was sent.
    #[error("the rate limiter cannot reach Redis: {reason}; not sent")]
    Redis {
        /// The client's explanation.
        reason: String,
    },
}

impl RateLimitError {
    /// How long the job should wait before running again, when it is to be
    /// deferred (not for a Redis failure, which is an ordinary failure).
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            RateLimitError::Busy { retry_in, .. }
            | RateLimitError::Late { retry_in, .. }
            | RateLimitError::OverShare { retry_in, .. } => Some(*retry_in),
            RateLimitError::Redis { .. } => None,
        }
    }
}

/// The spacing of the schedules, from the settings: pure arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Microseconds between two requests of all workers together.
    pub request_interval_us: u64,
    /// Microseconds between two requests of one account, or `None` when
    /// an account may use the whole rate.
    pub account_interval_us: Option<u64>,
    /// Microseconds a turn may lie ahead and still be waited for.
    pub tolerance_us: u64,
}

impl Pace {
    /// The spacing for `per_sec` requests a second, `share` of them for
    /// one account, waiting at most `max_wait`.
    pub fn new(per_sec: NonZeroU32, share: f64, max_wait: Duration) -> Self {
        let second_us = 1_000_000 * (1_000 + HEADROOM_PERMILLE) / 1_000;
        let request_interval_us = second_us.div_ceil(u64::from(per_sec.get()));
        let account_interval_us = (share < 1.0)
            .then(|| (request_interval_us as f64 / share.max(f64::MIN_POSITIVE)).round() as u64);
        Self {
            request_interval_us,
            account_interval_us,
            tolerance_us: u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The turn is taken: send after this long.
    Admitted(Duration),
    /// Nothing taken: come back after this long.
    Deferred(Duration),
}

impl Verdict {
    /// Reads the script's `{admitted, wait_us}` reply.
    pub fn from_reply((admitted, wait_us): (i64, i64)) -> Self {
        let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
        if admitted == 1 {
            Verdict::Admitted(wait)
        } else {
            Verdict::Deferred(wait)
        }
    }
}

/// The hash of the shared limit of `namespace`, `{NAMESPACE:push}:rate`,
/// beside the push queue's keys.
pub fn rate_key(namespace: &Namespace) -> String {
    herald_jobs::queue::queue_key(&namespace.queue(QueueName::Push), "rate")
}

/// The hash of `account`'s share of the limit whose hash is `rate_key`:
/// `<rate_key>:account:<account>`.
pub fn account_rate_key(rate_key: &str, account: &str) -> String {
    format!("{rate_key}:account:{account}")
}

/// The shared rate limit, or none; cheap to clone (one per provider client
/// and push handler of a process, all sharing one connection).
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    limited: Option<Arc<Limited>>,
}

/// A limiter with a limit.
#[derive(Debug)]
struct Limited {
    conn: RedisConnection,
    /// `{NAMESPACE:push}:rate` ([`rate_key`]).
    key: String,
    pace: Pace,
    settings: RateLimitSettings,
}

impl RateLimiter {
    /// No limit: [`Self::acquire`] and [`Self::admit_account`] return at once.
    pub fn unlimited() -> Self {
        Self { limited: None }
    }

    /// The limiter `settings` describe (`None`: unlimited) on the keys of
    /// `namespace`, calling Redis through `conn`.
    pub fn new(
        conn: RedisConnection,
        namespace: &Namespace,
        settings: Option<RateLimitSettings>,
    ) -> Self {
        let Some(settings) = settings else {
            return Self::unlimited();
        };
        Self {
            limited: Some(Arc::new(Limited {
                conn,
                key: rate_key(namespace),
                pace: Pace::new(
                    settings.max_requests_per_sec,
                    settings.account_share,
                    settings.max_wait,
                ),
                settings,
            })),
        }
    }

    /// Whether a limit is set.
    pub fn is_limited(&self) -> bool {
        self.limited.is_some()
    }

    /// Waits for the turn of one provider request; see the module docs.
    pub async fn acquire(&self) -> Result<(), RateLimitError> {
        if !self.is_limited() {
            return Ok(());
        }
        let mut retakes = 0;
        loop {
            let asked = Instant::now();
            let wait = self.take_turn().await?;
            // Redis ran the script somewhere between asking and the answer:
            // sleeping from the answer is never early, and the lateness
            // counted from the asking includes a slow answer.
            tokio::time::sleep_until(Instant::now() + wait).await;
            let late = asked.elapsed().saturating_sub(wait);
            if late <= LATE_LIMIT {
                if !wait.is_zero() {
                    debug!(
                        wait_ms = wait.as_millis() as u64,
                        late_ms = late.as_millis() as u64,
                        "waited for the rate limit"
                    );
                }
                return Ok(());
            }
            if retakes == MAX_RETAKES {
                return Err(RateLimitError::Late {
                    late,
                    turns: retakes + 1,
                    retry_in: self.pace().map_or(Duration::ZERO, |p| {
                        Duration::from_micros(p.request_interval_us)
                    }),
                });
            }
            retakes += 1;
            debug!(
                late_ms = late.as_millis() as u64,
                "too late for the rate limit's turn; taking the next one"
            );
        }
    }

    /// The spacing in force, when a limit is set.
    fn pace(&self) -> Option<Pace> {
        self.limited.as_ref().map(|l| l.pace)
    }

    /// Takes the turn of one provider request and answers how long until
    /// it comes, without waiting ([`Self::acquire`] waits).
    pub async fn take_turn(&self) -> Result<Duration, RateLimitError> {
        let Some(limited) = &self.limited else {
            return Ok(Duration::ZERO);
        };
        let pace = limited.pace;
        match limited
            .call(&limited.key, pace.request_interval_us, 1)
            .await?
        {
            Verdict::Admitted(wait) => Ok(wait),
            Verdict::Deferred(retry_in) => Err(RateLimitError::Busy {
                per_sec: limited.settings.max_requests_per_sec.get(),
                max_wait_ms: limited.settings.max_wait.as_millis() as u64,
                retry_in,
            }),
        }
    }

    /// Whether `account` may send `requests` more now, within its share;
    /// see the module docs. Always yes without a limit or with a share of 1.
    pub async fn admit_account(
        &self,
        account: &str,
        requests: usize,
    ) -> Result<(), RateLimitError> {
        let Some(limited) = &self.limited else {
            return Ok(());
        };
        let Some(interval) = limited.pace.account_interval_us else {
            return Ok(());
        };
        let key = account_rate_key(&limited.key, account);
        let cost = u64::try_from(requests.max(1)).unwrap_or(u64::MAX);
        match limited.call(&key, interval, cost).await? {
            Verdict::Admitted(_) => Ok(()),
            Verdict::Deferred(retry_in) => Err(RateLimitError::OverShare {
                account: account.to_owned(),
                share_percent: (limited.settings.account_share * 100.0).round() as u32,
                per_sec: limited.settings.max_requests_per_sec.get(),
                retry_in,
            }),
        }
    }
}

impl Limited {
    /// One run of the script on `key`.
    async fn call(
        &self,
        key: &str,
        interval_us: u64,
        cost: u64,
    ) -> Result<Verdict, RateLimitError> {
        let mut conn = self.conn.clone();
        let reply: (i64, i64) = GCRA
            .key(key)
            .arg(interval_us)
            .arg(cost)
            .arg(self.pace.tolerance_us)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| RateLimitError::Redis {
                reason: e.to_string(),
            })?;
        Ok(Verdict::from_reply(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_sec(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn turns_are_spaced_a_little_wider_than_the_rate() {
        let pace = Pace::new(per_sec(50), 1.0, Duration::from_secs(1));
        // 1.1 s / 50
        assert_eq!(pace.request_interval_us, 22_000);
        assert_eq!(pace.account_interval_us, None);
        assert_eq!(pace.tolerance_us, 1_000_000);
        // So 51 turns span 1.1 s: they fit into no second unless the
        // provider sees them more than 100 ms apart from their turns.
        assert_eq!(50 * pace.request_interval_us, 1_100_000);
        let fast = Pace::new(per_sec(1_000_000), 1.0, Duration::from_millis(5));
        assert_eq!(fast.request_interval_us, 2, "rounded up, never 0");
    }

    #[test]
    fn an_account_share_widens_the_accounts_spacing() {
        let pace = Pace::new(per_sec(50), 0.5, Duration::from_secs(1));
        assert_eq!(pace.account_interval_us, Some(44_000));
        let pace = Pace::new(per_sec(100), 0.3, Duration::from_secs(1));
        assert_eq!(pace.account_interval_us, Some(36_667));
    }

    #[test]
    fn the_scripts_reply_becomes_a_verdict() {
        assert_eq!(
            Verdict::from_reply((1, 22_000)),
            Verdict::Admitted(Duration::from_micros(22_000))
        );
        assert_eq!(
            Verdict::from_reply((0, 1_500_000)),
            Verdict::Deferred(Duration::from_millis(1_500))
        );
        // A negative wait (clock rounding) is no wait.
        assert_eq!(
            Verdict::from_reply((1, -3)),
            Verdict::Admitted(Duration::ZERO)
        );
    }

    #[test]
    fn refusals_carry_a_time_to_come_back_and_a_redis_failure_none() {
        let busy = RateLimitError::Busy {
            per_sec: 50,
            max_wait_ms: 1_000,
            retry_in: Duration::from_millis(1_200),
        };
        assert_eq!(busy.retry_in(), Some(Duration::from_millis(1_200)));
        assert!(busy.to_string().contains("50 requests/s"), "{busy}");
        let over = RateLimitError::OverShare {
            account: "a".into(),
            share_percent: 50,
            per_sec: 50,
            retry_in: Duration::from_secs(3),
        };
        assert!(over.to_string().contains("50% of 50"), "{over}");
        assert_eq!(over.retry_in(), Some(Duration::from_secs(3)));
        let down = RateLimitError::Redis {
            reason: "refused".into(),
        };
        assert_eq!(down.retry_in(), None);
    }

    #[tokio::test]
    async fn without_a_limit_nothing_waits_and_nothing_is_called() {
        let limiter = RateLimiter::unlimited();
        assert!(!limiter.is_limited());
        limiter.acquire().await.expect("no limit");
        limiter.admit_account("a", 10).await.expect("no limit");
    }
}
