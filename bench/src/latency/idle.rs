//! What an idle worker costs: a `herald worker` against a private
//! `redis-server` nothing else uses, left alone; its CPU time from
//! `/proc/<pid>/stat`, the commands it sends (counted on a `MONITOR`
//! connection: every line not run by a script nor sent by this benchmark)
//! and the server's `total_commands_processed` (which also counts each
//! command a script runs), over a quiet spell.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use herald::config::Settings;

use super::process::{private_redis, spawn_herald, Spawned};
use crate::queue::BenchError;

/// An idle worker's cost over a quiet spell.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Length of the spell, seconds.
    pub seconds: f64,
    /// The worker's CPU time (user and system) over the spell, in percent
    /// of one core.
    pub cpu_percent: f64,
    /// Commands the private Redis processed over the spell, the
    /// benchmark's own `INFO` left out: the worker's, and those its
    /// scripts ran.
    pub commands: u64,
    /// Commands the worker sent over the spell (a script call is one).
    pub sent: u64,
}

impl Idle {
    /// Redis commands processed per second.
    pub fn commands_per_sec(&self) -> f64 {
        self.commands as f64 / self.seconds.max(1e-9)
    }

    /// Commands the worker sent per second.
    pub fn sent_per_sec(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }
}

/// Starts a private Redis and a worker on it (with the run's database),
/// lets the worker settle for `settle`, then watches it for `spell`.
pub(super) async fn measure(
    binary: &Path,
    settings: &Settings,
    settle: Duration,
    spell: Duration,
) -> Result<Idle, BenchError> {
    let (server, url) = private_redis().await?;
    let mut settings = settings.clone();
    settings.redis.url = url;
    let result = match spawn_herald(binary, &settings, "worker", None) {
        Ok(mut worker) => {
            let watched = watch(&mut worker, &settings.redis.url, settle, spell).await;
            worker.stop().await;
            watched
        }
        Err(e) => Err(e),
    };
    server.stop().await;
    result
}

async fn watch(
    worker: &mut Spawned,
    url: &str,
    settle: Duration,
    spell: Duration,
) -> Result<Idle, BenchError> {
    tokio::time::sleep(settle).await;
    worker.ensure_running()?;
    let pid = worker.pid()?;
    let ticks_per_sec = clock_ticks_per_sec();
    // One connection, opened before the first reading, so its handshake is
    // not counted; each INFO counts once, after it has answered.
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let own = own_address(&mut conn).await?;
    let monitor = client.get_async_monitor().await?;
    let commands_before = commands_processed(&mut conn).await?;
    let cpu_before = cpu_ticks(pid)?;
    let begun = Instant::now();
    let sent = count_sent(monitor, own, spell).await;
    let cpu_after = cpu_ticks(pid)?;
    let seconds = begun.elapsed().as_secs_f64();
    let commands_after = commands_processed(&mut conn).await?;
    worker.ensure_running()?;
    let cpu_secs = cpu_after.saturating_sub(cpu_before) as f64 / ticks_per_sec;
    Ok(Idle {
        seconds,
        cpu_percent: 100.0 * cpu_secs / seconds.max(1e-9),
        // The first INFO is counted in the second reading.
        commands: commands_after.saturating_sub(commands_before + 1),
        sent,
    })
}

/// The address (`ip:port`) of `conn` as the server sees it, which names
/// the benchmark's own commands in `MONITOR` lines.
async fn own_address(conn: &mut redis::aio::MultiplexedConnection) -> Result<String, BenchError> {
    let info: String = redis::cmd("CLIENT").arg("INFO").query_async(conn).await?;
    info.split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Invalid(format!("CLIENT INFO has no addr: {info}")))
}

/// Counts, for `spell`, the commands `MONITOR` shows that neither a script
/// (`[0 lua]`) nor the benchmark's connection `own` sent.
async fn count_sent(monitor: redis::aio::Monitor, own: String, spell: Duration) -> u64 {
    use futures::StreamExt;
    let mut lines = monitor.into_on_message::<String>();
    let until = tokio::time::Instant::now() + spell;
    let mut sent = 0;
    while let Ok(Some(line)) = tokio::time::timeout_at(until, lines.next()).await {
        if sent_by_a_client(&line, &own) {
            sent += 1;
        }
    }
    sent
}

/// Whether a `MONITOR` line (`<time> [<db> <client>] "<command>" ...`) is
/// a command a client other than `own` sent, not one a script ran.
fn sent_by_a_client(line: &str, own: &str) -> bool {
    let client = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(inside, _)| inside.split_whitespace().nth(1));
    matches!(client, Some(client) if client != "lua" && client != own)
}

/// `total_commands_processed` of `INFO stats`.
async fn commands_processed(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<u64, BenchError> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await?;
    total_commands(&info)
        .ok_or_else(|| BenchError::Invalid("INFO stats has no total_commands_processed".into()))
}

/// The `total_commands_processed` field of an `INFO` answer.
fn total_commands(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|value| value.trim().parse().ok())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's usual value,
/// if that fails).
fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_cpu_ticks(&stat)
        .ok_or_else(|| BenchError::Invalid(format!("cannot read utime and stime of {pid}")))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name come field 3 (state) onwards: utime is field 14.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_whatever_the_name() {
        let stat = "4242 (herald (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 17 0 0 20 0 9 0 123 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(267));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn monitor_lines_of_scripts_and_of_the_benchmark_are_not_counted() {
        let own = "127.0.0.1:5000";
        assert!(sent_by_a_client(
            r#"1796121528.03 [0 127.0.0.1:6000] "EVALSHA" "abc" "1" "k""#,
            own
        ));
        assert!(!sent_by_a_client(
            r#"1796121528.03 [0 lua] "zscore" "k" "w""#,
            own
        ));
        assert!(!sent_by_a_client(
            r#"1796121528.03 [0 127.0.0.1:5000] "INFO" "stats""#,
            own
        ));
        assert!(!sent_by_a_client("OK", own));
    }

    #[test]
    fn the_command_count_is_read_from_info_stats() {
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n";
        assert_eq!(total_commands(info), Some(1234));
        assert_eq!(total_commands("# Stats\r\n"), None);
    }
}
