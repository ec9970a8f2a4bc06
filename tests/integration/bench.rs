//! `herald bench all --smoke`: the benchmark command still runs end to end.
//!
//! A tiny workload through every part (no-op jobs, messages end to end,
//! exports with their child processes), so the command cannot rot. Timing
//! targets are the benchmark's business, not the test suite's: only the
//! table's shape and its counts are checked here.

use crate::helpers::env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_all_smoke_prints_one_table_with_every_part_and_verified_counts() {
    let env = env().await;
    let output = env.run_herald(
        &["bench", "all", "--smoke"],
        &[("HERALD_LOG_LEVEL", "warn")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    for section in [
        "-- No-op jobs, one worker",
        "-- Messages end to end, concurrency 1 ",
        "-- Messages end to end, concurrency 8 ",
        "-- Order: events that reached the stand-in after",
        "-- Export, 1000 documents",
        "-- Export, 5000 documents",
        "-- Write concern, concurrency 1 ",
        "-- Write concern, concurrency 8 ",
        "-- Targets",
    ] {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
    let count_of = |prefix: &str| -> Vec<u64> {
        stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| {
                l[prefix.len()..]
                    .split_whitespace()
                    .rev()
                    .nth(6)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no count in {l:?}"))
            })
            .collect()
    };
    assert_eq!(count_of("plain apalis-redis"), [1_000]);
    assert_eq!(count_of("herald queue"), [1_000]);
    assert_eq!(count_of("raw MongoDB insert_one"), [200, 200]);
    assert_eq!(count_of("raw stand-in POST"), [200, 200]);
    // Concurrency 1 has a second Herald row: one job at a time.
    assert_eq!(count_of("Herald end to end"), [200, 200, 200]);
    assert_eq!(count_of("Herald end to end, one job at a time"), [200]);
    assert_eq!(count_of("raw cursor scan"), [1_000, 5_000]);
    assert_eq!(count_of("Herald export to CSV"), [1_000, 5_000]);
    // Each write concern section: two insert rows and two Herald rows.
    assert_eq!(count_of("insert_one, "), [200; 4]);
    assert_eq!(count_of("Herald, "), [200; 4]);
    // The order section names every Herald row, indented:
    // "  <row>  <late> of <count>".
    let order: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("-- Order"))
        .skip(1)
        .take_while(|l| !l.starts_with("--"))
        .collect();
    assert_eq!(order.len(), 3, "{stdout}");
    assert!(
        order
            .iter()
            .all(|l| l.starts_with("  Herald end to end") && l.ends_with(" of 200")),
        "{stdout}"
    );
    assert!(
        stdout.contains("verified: every message stored once and pushed once"),
        "{stdout}"
    );
    // Each target line names its measured ratio.
    let targets = stdout
        .lines()
        .filter(|l| l.starts_with("met ") || l.starts_with("MISSED "))
        .count();
    assert_eq!(targets, 1 + 2 + 2 + 1, "{stdout}");
}
