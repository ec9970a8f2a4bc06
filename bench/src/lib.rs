//! Herald's benchmark: fixed workloads measured against a baseline in the
//! same run, through the `herald` library's public API. The `herald-bench`
//! binary runs them.
//!
//! Figures from different machines or runs are not comparable; ratios
//! against a baseline measured in the same run are. Every workload uses its
//! own Redis namespace and removes it afterwards.
//!
//! - [`queue`]: no-op jobs, Herald's queue layer against plain apalis-redis.
//! - [`pipeline`]: messages end to end against raw MongoDB and raw pushes.
//! - [`export`]: CSV exports against a raw cursor scan, with peak memory,
//!   to a local file and to an S3 server ([`s3`]) side by side.
//! - [`backlog`]: a large backlog drained end to end.
//! - [`write_concern`]: what the MongoDB write concern costs.
//! - [`inbox`]: a user's unread count with 100,000 messages against one
//!   `count` over as many index keys.
//! - [`rate_limit`]: what the shared rate limit costs a push, with no limit
//!   set and with one never reached.
//! - [`latency`]: latency at light load and an idle worker's cost, with
//!   `herald web` and `herald worker` as child processes, against the floor
//!   of the services' own round trips.
//! - [`cluster`]: the no-op and end-to-end workloads on one Redis server
//!   and on a Redis Cluster.
//! - [`report`]: `herald-bench all`'s one table and the targets it checks.

pub mod backlog;
pub mod cluster;
pub mod export;
pub mod failed_list;
pub mod inbox;
pub mod latency;
pub mod pipeline;
pub mod queue;
pub mod rate_limit;
pub mod report;
pub mod s3;
pub mod soak;
pub mod write_concern;

use std::time::Duration;

/// One row of a benchmark table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Jobs (or rows) processed.
    pub count: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl Row {
    /// Items per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Index of the item with the median `rate` (the lower middle one of an
/// even count); 0 for an empty slice.
pub(crate) fn median_index<T>(items: &[T], rate: impl Fn(&T) -> f64) -> usize {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| rate(&items[a]).total_cmp(&rate(&items[b])));
    order
        .get(items.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// Prints rows as a table with each rate's ratio to the first row's.
pub fn print_table(title: &str, rows: &[Row]) {
    println!("{title}");
    println!(
        "{:<48} {:>9} {:>9} {:>11} {:>7}",
        "workload", "jobs", "seconds", "jobs/s", "ratio"
    );
    let baseline = rows.first().map(Row::rate).unwrap_or(1.0);
    for row in rows {
        println!(
            "{:<48} {:>9} {:>9.2} {:>11.0} {:>7.2}",
            row.name,
            row.count,
            row.elapsed.as_secs_f64(),
            row.rate(),
            row.rate() / baseline
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_rate_whatever_the_order() {
        assert_eq!(median_index(&[5.0, 1.0, 3.0], |r| *r), 2);
        assert_eq!(median_index(&[1.0, 9.0, 4.0, 2.0], |r| *r), 3);
        assert_eq!(median_index(&[7.0], |r| *r), 0);
        assert_eq!(median_index::<f64>(&[], |r| *r), 0);
    }
}
