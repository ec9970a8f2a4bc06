//! A queue's last hour, minute by minute: jobs done and failed, and the
//! enqueue-to-finish latency of the jobs done, from the counters the
//! complete script keeps (each kept an hour, so the storage is bounded:
//! at most 60 counters and 60 small histograms per queue).

use std::collections::HashMap;

use serde::Serialize;

use super::ShardAdmin;
use crate::{now_secs, MinuteStat, QueueError};

/// Upper bounds (ms) of the latency buckets the complete script fills
/// (`lua/complete.lua` has the same list); the last bucket is the rest.
pub const LATENCY_BOUNDS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// Most minutes a history covers (the counters are kept an hour).
pub const HISTORY_MINUTES: usize = 60;

/// One minute of a queue's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minute {
    /// Start of the minute (Unix seconds).
    pub at: u64,
    /// Jobs that succeeded in it.
    pub done: u64,
    /// Jobs that failed for good in it.
    pub failed: u64,
    /// Median enqueue-to-finish time of the jobs done in it, as the upper
    /// bound of its latency bucket (ms); `None` when none was measured.
    pub latency_p50_ms: Option<u64>,
    /// 99th percentile, the same way.
    pub latency_p99_ms: Option<u64>,
}

/// The upper bound of the bucket holding quantile `q` of `counts`
/// (bucket number, from 1, → jobs), in ms; the overflow bucket reads as
/// twice the last bound. `None` for an empty histogram.
pub fn quantile_ms(counts: &HashMap<usize, u64>, q: f64) -> Option<u64> {
    let total: u64 = counts.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for bucket in 1..=LATENCY_BOUNDS_MS.len() + 1 {
        seen += counts.get(&bucket).copied().unwrap_or(0);
        if seen >= rank {
            return Some(
                LATENCY_BOUNDS_MS
                    .get(bucket - 1)
                    .copied()
                    .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] * 2),
            );
        }
    }
    None
}

/// One minute's counters as one shard keeps them; the shards' are added
/// up ([`MinuteCounts::add`]) before the quantiles are read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct MinuteCounts {
    /// Start of the minute (Unix seconds).
    pub at: u64,
    /// Jobs that succeeded in it.
    pub done: u64,
    /// Jobs that failed for good in it.
    pub failed: u64,
    /// Latency bucket (from 1) → jobs done.
    pub latency: HashMap<usize, u64>,
}

impl MinuteCounts {
    /// Adds `other`'s counts (the same minute of another shard).
    pub fn add(&mut self, other: &MinuteCounts) {
        self.done += other.done;
        self.failed += other.failed;
        for (bucket, jobs) in &other.latency {
            *self.latency.entry(*bucket).or_default() += jobs;
        }
    }

    /// The minute as the history shows it.
    pub fn into_minute(self) -> Minute {
        Minute {
            at: self.at,
            done: self.done,
            failed: self.failed,
            latency_p50_ms: quantile_ms(&self.latency, 0.5),
            latency_p99_ms: quantile_ms(&self.latency, 0.99),
        }
    }
}

impl ShardAdmin {
    /// The counters of the last `minutes` minutes (at most
    /// [`HISTORY_MINUTES`]), oldest first, the current minute last.
    pub async fn history(&self, minutes: usize) -> Result<Vec<MinuteCounts>, QueueError> {
        let minutes = minutes.clamp(1, HISTORY_MINUTES) as u64;
        let now_minute = (now_secs() / 60.0).floor() as u64;
        let first = now_minute + 1 - minutes;
        let mut pipe = redis::pipe();
        for stat in [MinuteStat::Done, MinuteStat::Failed] {
            let keys: Vec<String> = (first..=now_minute)
                .map(|m| self.config.minute_key(stat, m))
                .collect();
            pipe.mget(keys);
        }
        for m in first..=now_minute {
            pipe.hgetall(self.config.minute_key(MinuteStat::Latency, m));
        }
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(self.error("read the queue's history"))?;
        let mut values = values.into_iter();
        let counts = |values: &mut std::vec::IntoIter<redis::Value>| -> Vec<u64> {
            values
                .next()
                .and_then(|v| redis::from_redis_value::<Vec<Option<u64>>>(v).ok())
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect()
        };
        let done = counts(&mut values);
        let failed = counts(&mut values);
        Ok((first..=now_minute)
            .enumerate()
            .map(|(i, m)| {
                let latency: HashMap<usize, u64> = values
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default();
                MinuteCounts {
                    at: m * 60,
                    done: done.get(i).copied().unwrap_or(0),
                    failed: failed.get(i).copied().unwrap_or(0),
                    latency,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_read_the_bucket_bounds() {
        // 90 jobs within 5 ms, 9 within 100 ms, 1 within 2.5 s.
        let counts = HashMap::from([(1, 90), (5, 9), (9, 1)]);
        assert_eq!(quantile_ms(&counts, 0.5), Some(5));
        assert_eq!(quantile_ms(&counts, 0.95), Some(100));
        assert_eq!(quantile_ms(&counts, 0.99), Some(100));
        assert_eq!(quantile_ms(&counts, 1.0), Some(2_500));
    }

    #[test]
    fn shards_minutes_add_up_before_the_quantiles_are_read() {
        // One shard: 99 fast jobs; another: 1 slow job and a failure.
        let mut minute = MinuteCounts {
            at: 60,
            done: 99,
            failed: 0,
            latency: HashMap::from([(1, 99)]),
        };
        minute.add(&MinuteCounts {
            at: 60,
            done: 1,
            failed: 1,
            latency: HashMap::from([(9, 1)]),
        });
        let minute = minute.into_minute();
        assert_eq!((minute.done, minute.failed), (100, 1));
        assert_eq!(minute.latency_p50_ms, Some(5));
        assert_eq!(minute.latency_p99_ms, Some(5));
    }

    #[test]
    fn an_empty_minute_has_no_latency_and_the_overflow_bucket_reads_high() {
        assert_eq!(quantile_ms(&HashMap::new(), 0.5), None);
        let slow = HashMap::from([(LATENCY_BOUNDS_MS.len() + 1, 3)]);
        assert_eq!(quantile_ms(&slow, 0.5), Some(600_000));
    }
}
