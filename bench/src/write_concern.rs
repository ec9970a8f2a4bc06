//! What the write concern costs: the raw `insert_one` rate and Herald end
//! to end, with the configured write concern (`mongodb.write_concern`,
//! `mongodb.write_journal`; by default a journaled majority) and with `w: 1`
//! without the journal, against the same server.
//!
//! The two are measured in alternation, trial by trial, so a slow spell of
//! the machine falls on both. The cost shown is the relaxed rate over the
//! configured one: 1.00 means the durable write costs nothing here. What a
//! write concern costs depends on the server: on a replica set, the
//! majority waits for a second member; on the local SecantusDB started with
//! `--sync-on-commit`, every commit is synced whatever the write concern
//! asks, so the cost of durability shows between that server and one
//! started without the flag (BENCHMARKS.md).

use herald::config::{Settings, WriteAcknowledgment};

use crate::{
    pipeline::{self, Timed, Workload},
    queue::BenchError,
    Row,
};

/// One concurrency's measurements, each the median of its trials.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The concurrency (requests in flight to each service).
    pub concurrency: usize,
    /// The configured write concern, as text.
    pub configured: String,
    /// Raw insert rate with the configured write concern.
    pub insert: Row,
    /// Raw insert rate with `w: 1`, no journal.
    pub insert_relaxed: Row,
    /// Herald end to end with the configured write concern.
    pub herald: Timed,
    /// Herald end to end with `w: 1`, no journal.
    pub herald_relaxed: Timed,
    /// Every message stored once and pushed once in every run.
    pub verified: bool,
}

/// The write concern of `settings`, as the table names it.
pub fn describe(settings: &Settings) -> String {
    let w = match &settings.mongodb.write_concern {
        WriteAcknowledgment::Majority => "majority".to_owned(),
        WriteAcknowledgment::Members(n) => format!("w:{n}"),
        WriteAcknowledgment::Tag(tag) => format!("tag {tag}"),
    };
    if settings.mongodb.write_journal {
        format!("{w} + journal")
    } else {
        w
    }
}

/// Measures every concurrency of `workload` both ways (see the module docs).
pub async fn run(settings: &Settings, workload: &Workload) -> Result<Vec<Measured>, BenchError> {
    let mut relaxed = settings.clone();
    relaxed.mongodb.write_concern = WriteAcknowledgment::Members(1);
    relaxed.mongodb.write_journal = false;
    let mut results = Vec::new();
    for &concurrency in &workload.concurrencies {
        let mut configured_runs = Vec::new();
        let mut relaxed_runs = Vec::new();
        for _ in 0..workload.trials.max(1) {
            configured_runs
                .push(pipeline::insert_and_end_to_end(settings, workload, concurrency).await?);
            relaxed_runs
                .push(pipeline::insert_and_end_to_end(&relaxed, workload, concurrency).await?);
        }
        let verified = configured_runs
            .iter()
            .chain(&relaxed_runs)
            .all(|(_, _, verified)| *verified);
        let (insert, herald) = median(configured_runs);
        let (insert_relaxed, herald_relaxed) = median(relaxed_runs);
        results.push(Measured {
            concurrency,
            configured: describe(settings),
            insert,
            insert_relaxed,
            herald,
            herald_relaxed,
            verified,
        });
    }
    Ok(results)
}

/// The median insert row and the median Herald row of `runs`.
fn median(mut runs: Vec<(Row, Timed, bool)>) -> (Row, Timed) {
    let insert = super::median_index(&runs, |(insert, _, _)| insert.rate());
    let herald = super::median_index(&runs, |(_, timed, _)| timed.row.rate());
    let insert_row = runs[insert].0.clone();
    let (_, timed, _) = runs.swap_remove(herald);
    (insert_row, timed)
}
