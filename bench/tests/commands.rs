//! The `herald-bench` command still runs end to end, against the real
//! services: tiny workloads through every part (no-op jobs, messages end to
//! end, exports with their child processes, a backlog), so the command
//! cannot rot. Timing targets are the benchmark's business, not the test
//! suite's: only the tables' shapes and their counts are checked here.
//!
//! The latency workload runs the `herald` binary next to `herald-bench`
//! (target/debug when tested), which `cargo test --workspace` builds; with
//! `-p herald-bench` alone, `cargo build -p herald` first.
//!
//! Services: HERALD_TEST_REDIS_URL (default redis://127.0.0.1:6379) and
//! HERALD_TEST_MONGODB_URL (default mongodb://127.0.0.1:27017), as for the
//! `herald` package's integration tests. Every workload makes its own Redis
//! namespace, Mongo database, push sandbox and export directory and removes
//! them afterwards, so these tests need no environment of their own.

use std::process::{Command, Output};

/// The service at `variable`, or `default`.
fn service(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// Runs the real `herald-bench` binary to completion against the test
/// services, with the workspace's configuration files (`HERALD_ENV=test`).
fn run_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(args)
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config"),
        )
        .env("HERALD_ENV", "test")
        .env(
            "HERALD_REDIS_URL",
            service("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        )
        .env(
            "HERALD_MONGODB_URL",
            service("HERALD_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017"),
        )
        .env("HERALD_LOG_LEVEL", "warn")
        .output()
        .expect("herald-bench runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bench_all_smoke_prints_one_table_with_every_part_and_verified_counts() {
    let output = run_bench(&["all", "--smoke"]);
    let stdout = stdout(&output);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        stderr(&output)
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
        "-- Unread count, never read, 2000 messages",
        "-- Unread count, read up to date, 2000 messages",
        "-- Unread count: ms per call in each trial",
        "-- Latency at light load",
        "-- Latency under load",
        "-- Export start",
        "-- Idle worker on a private redis-server",
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
    // The physical limit: Herald's batch size, one call at a time.
    assert_eq!(count_of("raw MongoDB insert_many"), [200, 200]);
    assert_eq!(count_of("raw stand-in POST"), [200, 200]);
    // Concurrency 1 has a second Herald row: one job at a time.
    assert_eq!(count_of("Herald end to end"), [200, 200, 200]);
    assert_eq!(count_of("Herald end to end, one job at a time"), [200]);
    assert_eq!(count_of("raw cursor scan"), [1_000, 5_000]);
    assert_eq!(count_of("Herald export to CSV"), [1_000, 5_000]);
    // Each write concern section: two insert rows and two Herald rows.
    assert_eq!(count_of("insert_one, "), [200; 4]);
    assert_eq!(count_of("Herald, "), [200; 4]);
    // The unread count: index keys per call, the baseline's and the
    // subject's alike (never read: all 2,000 of the user's; read up to
    // date: the 1,000 new ones and 50 older ones marked unread again, 900
    // of them unread).
    assert_eq!(count_of("count command, "), [2_000, 1_050]);
    assert_eq!(
        count_of("Inbox::unread_count, never read (2000 unread)"),
        [2_000]
    );
    assert_eq!(
        count_of("Inbox::unread_count, read up to date (900 unread)"),
        [1_050]
    );
    // The floor back to back, then paced at the light load's rate.
    assert_eq!(count_of("floor "), [40, 40]);
    assert_eq!(count_of("HTTP POST /v1/messages"), [40]);
    // Light load, then half the maximum rate.
    assert_eq!(count_of("Producer::enqueue_message").len(), 2);
    assert_eq!(count_of("maximum rate"), [200]);
    assert_eq!(count_of("export, enqueue to export_finish"), [1_000]);
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
    // Each target line names its verdict and its measured ratio: no-op;
    // end to end at each concurrency; each export size, local and to S3;
    // export memory; the unread count; latency: p50 and p99 each way, the
    // export's start, the idle worker's CPU and Redis commands.
    let targets = stdout
        .lines()
        .filter(|l| {
            ["met ", "MISSED ", "INCONCLUSIVE "]
                .iter()
                .any(|verdict| l.starts_with(verdict))
        })
        .count();
    assert_eq!(targets, 1 + 2 + 2 * 2 + 1 + 1 + 4 + 1 + 2, "{stdout}");
    assert!(
        stdout.contains("unread count, never read, 2000 messages: <= 2.5 x one count"),
        "{stdout}"
    );
}

#[test]
fn the_latency_benchmark_runs_herald_as_processes_and_states_its_targets() {
    let output = run_bench(&["latency", "--smoke"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    for line in [
        "floor back to back: Redis + insert + push",
        "floor at 50/s: Redis + insert + push",
        "HTTP POST /v1/messages, 50/s",
        "Producer::enqueue_message, 50/s",
        "maximum rate: 200 enqueued at once",
        "raw read, write and sync, 1000 documents",
        "export, enqueue to export_finish, 1000 documents",
        "-- Latency: the slowest of each series",
        "-- Idle worker on a private redis-server",
        "Redis commands sent (",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    let targets = text
        .lines()
        .filter(|l| l.starts_with("met ") || l.starts_with("MISSED "))
        .count();
    assert_eq!(targets, 7, "{text}");
}

#[test]
fn the_inbox_benchmark_checks_its_counts_and_states_its_target() {
    let output = run_bench(&["inbox", "--smoke"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    for line in [
        "-- Unread count, never read, 2000 messages in the user's inbox",
        "count command, 2000 keys of one range",
        "Inbox::unread_count, never read (2000 unread)",
        "-- Unread count, read up to date, 2000 messages in the user's inbox",
        "count command, 1050 keys of one range",
        "Inbox::unread_count, read up to date (900 unread)",
        "6000 documents seeded",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    let targets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("met ") || l.starts_with("MISSED "))
        .collect();
    assert_eq!(targets.len(), 1, "{text}");
    assert!(targets[0].contains("unread count, never read"), "{text}");
}

#[test]
fn the_queue_benchmark_runs_a_small_workload() {
    let output = run_bench(&["queue", "--jobs", "300", "--round", "100"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(
        text.contains("plain apalis-redis 1.0, batch 10") && text.contains("herald queue"),
        "{text}"
    );
}

#[test]
fn the_backlog_benchmark_verifies_a_small_backlog() {
    let output = run_bench(&["backlog", "--jobs", "200"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(
        text.contains(
            "verified: 200 documents stored, 200 pushes accepted for 200 distinct messages"
        ),
        "{text}"
    );
}

#[test]
fn the_rate_limit_benchmark_runs_a_small_workload() {
    let output = run_bench(&[
        "rate-limit",
        "--requests",
        "100",
        "--concurrency",
        "4",
        "--trials",
        "1",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    for row in [
        "push, no limiter",
        "push, max_requests_per_sec 0",
        "push, max_requests_per_sec 1000000",
        "account_share 0.5",
    ] {
        assert!(text.contains(row), "no {row:?} in:\n{text}");
    }
}

#[test]
fn the_cluster_benchmark_runs_both_workloads_on_a_server_and_a_cluster() {
    let cluster = service(
        "HERALD_TEST_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102",
    );
    let output = run_bench(&["cluster", "--smoke", "--cluster-url", &cluster]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    for row in [
        "no-op jobs, one server",
        "no-op jobs, cluster",
        "messages end to end, one server",
        "messages end to end, cluster",
        "messages end to end, cluster, 3 shards",
        "Redis CPU per message on the busiest primary",
        "verified: every message stored once and pushed once on every deployment",
    ] {
        assert!(text.contains(row), "no {row:?} in:\n{text}");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["all", "--help"],
        vec!["pipeline", "--help"],
        vec!["latency", "--help"],
        vec!["export", "--help"],
        vec!["queue", "--help"],
        vec!["write-concern", "--help"],
        vec!["backlog", "--help"],
        vec!["rate-limit", "--help"],
        vec!["cluster", "--help"],
        vec!["inbox", "--help"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
            .args(&args)
            .output()
            .expect("herald-bench runs");
        assert!(output.status.success(), "{args:?}");
        assert!(stdout(&output).contains("Usage"), "{args:?}");
    }
}
