//! The Prometheus rules of `deploy/prometheus`: promtool's checks and unit
//! tests, the metric names they read against what a real worker and
//! `herald web` export, and a real Prometheus (Debian's `prometheus`)
//! scraping both: firing the dead-set alert when pushes fail for good (the
//! dependency alerts staying quiet meanwhile), and firing the Redis alert
//! when the Redis of a `herald worker` and a `herald web` stops.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use herald_jobs::{QueueName, SendMessage};
use serde_json::Value;

use crate::{
    helpers::{
        account, env_with, installed_binary, try_redis, wait_for, HeraldProcess, ScratchProcess,
    },
    ops::{free_port, wait_healthy},
    promql::{metric_names, scrape},
};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/herald-rules.yml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/herald-rules.test.yml"
);

/// The alert the end-to-end test waits for.
const DEAD_SET_ALERT: &str = "HeraldDeadSetGrowing";

/// Its `for:` in the rules Prometheus loads in that test (5m in the real
/// rules): long enough to go through `pending`, short enough for a test.
const TEST_DEAD_SET_FOR: &str = "3s";

/// How long the end-to-end tests wait for an alert to fire: a deadline
/// against hangs, not a speed assertion.
const FIRING_PATIENCE: Duration = Duration::from_secs(60);

/// The alert the Redis outage test waits for.
const REDIS_ALERT: &str = "HeraldRedisUnreachable";

/// Its `for:` in the rules Prometheus loads in that test (1m in the real
/// rules): a scrape or two reporting Redis down, so that it goes through
/// `pending` first, and fires well within [`FIRING_PATIENCE`].
const TEST_REDIS_FOR: &str = "3s";

/// The dependency alerts, which stay quiet while Redis and MongoDB answer.
const DEPENDENCY_ALERTS: [&str; 2] = ["HeraldRedisUnreachable", "HeraldMongoDBUnreachable"];

/// A program of Debian's `prometheus` package: `override_var`, else on
/// `PATH`, else `/usr/bin`.
fn prometheus_tool(override_var: &str, name: &str) -> PathBuf {
    installed_binary(override_var, name)
        .or_else(|| {
            let path = Path::new("/usr/bin").join(name);
            path.is_file().then_some(path)
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (nor named by {override_var}): run \
                 `bash scripts/setup.sh --tests`, which installs Debian's prometheus \
                 package (prometheus and promtool)"
            )
        })
}

fn promtool() -> PathBuf {
    prometheus_tool("HERALD_TEST_PROMTOOL", "promtool")
}

fn prometheus_binary() -> PathBuf {
    prometheus_tool("HERALD_TEST_PROMETHEUS", "prometheus")
}

/// Runs promtool with `args` in `deploy/prometheus` and fails with its
/// output unless it succeeds.
fn run_promtool(args: &[&str]) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(Path::new(RULES).parent().expect("rules directory"))
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What a rules file defines, read line by line (the file keeps one
/// `- record:`/`- alert:` per line and each `expr:` inline or as a `|`
/// block; no YAML library is among the dependencies).
#[derive(Debug, Default)]
struct RuleFile {
    /// Recording rule names.
    records: Vec<String>,
    /// Alert names.
    alerts: Vec<String>,
    /// Every expression, with the rule it belongs to.
    exprs: Vec<(String, String)>,
}

fn read_rules(text: &str) -> RuleFile {
    let mut rules = RuleFile::default();
    let mut current = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        i += 1;
        if let Some(name) = trimmed.strip_prefix("- record:") {
            current = name.trim().to_owned();
            rules.records.push(current.clone());
        } else if let Some(name) = trimmed.strip_prefix("- alert:") {
            current = name.trim().to_owned();
            rules.alerts.push(current.clone());
        } else if let Some(rest) = trimmed.strip_prefix("expr:") {
            let rest = rest.trim();
            let expr = if rest.starts_with('|') || rest.starts_with('>') {
                let mut block = Vec::new();
                while i < lines.len() {
                    let next = lines[i];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                block.join("\n")
            } else {
                rest.trim_matches(|c| c == '"' || c == '\'').to_owned()
            };
            assert!(!current.is_empty(), "expr before any rule: {expr}");
            rules.exprs.push((current.clone(), expr));
        }
    }
    rules
}

/// The sample names in an OpenMetrics/Prometheus text.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Each alert's unit-test cases in the promtool test file: `(fires, does
/// not fire)` counts, read from `alertname:` lines and the `exp_alerts:`
/// that follows each.
fn alert_cases(text: &str) -> BTreeMap<String, (usize, usize)> {
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let expected = lines.peek().copied().unwrap_or_default();
        let entry = cases.entry(name.trim().to_owned()).or_default();
        match expected {
            "exp_alerts: []" => entry.1 += 1,
            "exp_alerts:" => entry.0 += 1,
            other => panic!("alertname {name} followed by {other:?}, not exp_alerts"),
        }
    }
    cases
}

#[test]
fn the_metric_name_reader_skips_functions_labels_and_keywords() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (queue, le) (rate(herald_job_duration_seconds_bucket{queue=~\"a|b\"}[5m])))\n\
         / on (queue) group_left max(herald:queue_jobs:max{state=\"failed\"} offset 1m) > 1e3\n\
         and absent(up) unless sum(x) without (instance) == bool 2",
    );
    let expected: BTreeSet<String> = [
        "herald_job_duration_seconds_bucket",
        "herald:queue_jobs:max",
        "up",
        "x",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    run_promtool(&["check", "rules", RULES]);
    run_promtool(&["test", "rules", RULE_TESTS]);

    // The unit tests show every alert both firing and not firing.
    let rules = read_rules(&std::fs::read_to_string(RULES).expect("rules file"));
    let cases = alert_cases(&std::fs::read_to_string(RULE_TESTS).expect("rule tests file"));
    for alert in [
        "HeraldNoWorker",
        "HeraldMetricsAbsent",
        "HeraldDeadSetGrowing",
        "HeraldDeadJobsTrimmedByCap",
        "HeraldPushFailureRateHigh",
        "HeraldJobDurationP99High",
        "HeraldEnqueueToFinishP99High",
        "HeraldQueueBacklog",
        "HeraldRedisUnreachable",
        "HeraldMongoDBUnreachable",
        "HeraldExportsFailing",
    ] {
        assert!(
            rules.alerts.iter().any(|a| a == alert),
            "{alert} missing: {:?}",
            rules.alerts
        );
    }
    for alert in &rules.alerts {
        let (fires, quiet) = cases.get(alert).copied().unwrap_or_default();
        assert!(
            fires > 0 && quiet > 0,
            "{alert}: {fires} firing and {quiet} not-firing cases in {RULE_TESTS}"
        );
    }
    let unknown: Vec<_> = cases.keys().filter(|a| !rules.alerts.contains(a)).collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts the rules lack: {unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_read_is_one_herald_exports() {
    let bind = format!("127.0.0.1:{}", free_port());
    let mut env = env_with(&[("HERALD_WORKER_OPS_BIND", &bind)]).await;
    env.start_worker().await;
    let worker = format!("http://{bind}");
    let web = env.start_web().await;
    wait_healthy(&env, &worker, "the worker's ops listener").await;
    wait_healthy(&env, &web, "herald web").await;

    // Some work first: a message stored and pushed.
    env.enqueue(SendMessage::new(account(), "alerting", "names"))
        .await;
    wait_for("the push", || async {
        (!env.delivered("new_message").await.is_empty()).then_some(())
    })
    .await;

    let mut exported = exported_names(&scrape(&env, &worker).await);
    exported.extend(exported_names(&scrape(&env, &web).await));
    assert!(
        exported.contains("herald_jobs_done_total") && exported.contains("herald_queue_jobs"),
        "{exported:?}"
    );

    let rules = read_rules(&std::fs::read_to_string(RULES).expect("rules file"));
    assert!(!rules.records.is_empty() && !rules.alerts.is_empty());
    for record in &rules.records {
        assert!(
            record.starts_with("herald:") && record.matches(':').count() == 2,
            "recording rule {record} is not named level:metric:operations"
        );
    }
    let mut unknown = Vec::new();
    let mut read = BTreeSet::new();
    for (rule, expr) in &rules.exprs {
        for name in metric_names(expr) {
            if !exported.contains(&name) && !rules.records.contains(&name) {
                unknown.push(format!("{name} (in {rule})"));
            }
            read.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "the rules read metrics neither Herald nor a recording rule provides: {unknown:#?}\n\
         exported by the worker and herald web: {exported:#?}"
    );
    // The reader did find the names (a reader that found none would pass).
    for name in [
        "herald_queue_jobs",
        "herald_queue_workers",
        "herald_jobs_failed_total",
        "herald_push_duration_seconds_count",
        "herald_job_duration_seconds_bucket",
        "herald_dependency_up",
        "herald_queue_latency_seconds",
    ] {
        assert!(
            read.contains(name),
            "{name} not read from the rules: {read:?}"
        );
    }
}

/// A Prometheus server started by a test: killed, and its directory
/// (configuration, rules, TSDB, log) removed, when dropped — on success and
/// when the test fails.
struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl PrometheusServer {
    /// Starts Prometheus on a free loopback port, scraping `targets`
    /// (`host:port`, path `/metrics`) every `scrape` (which is also the
    /// scrape's timeout, e.g. `1s`) and evaluating `rules` every second.
    fn start(name: &str, targets: &[&str], rules: &str, scrape: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-prometheus-{name}"));
        std::fs::create_dir_all(&dir).expect("Prometheus's scratch directory");
        std::fs::write(dir.join("herald-rules.yml"), rules).expect("rules copy");
        let targets = targets
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {scrape}\n  scrape_timeout: {scrape}\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: herald\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{targets}]\n",
            rules = dir.join("herald-rules.yml").display(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("Prometheus's configuration");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("Prometheus's log");
        let child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus runs: {e}"));
        Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `GET /api/v1/{path}`'s `data`, or `None` if Prometheus does not
    /// answer with success.
    async fn api(&self, http: &reqwest::Client, path: &str) -> Option<Value> {
        let answer: Value = http
            .get(format!("{}/api/v1/{path}", self.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// How many rules Prometheus has loaded, or `None` before it answers.
    async fn loaded_rules(&self, http: &reqwest::Client) -> Option<usize> {
        let groups = self.api(http, "rules").await?;
        Some(
            groups["groups"]
                .as_array()?
                .iter()
                .map(|g| g["rules"].as_array().map_or(0, Vec::len))
                .sum(),
        )
    }

    /// An instant query's result vector.
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<Value> {
        let data = self
            .api(http, &format!("query?query={}", urlencode(promql)))
            .await
            .unwrap_or_default();
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// What Prometheus says about the alerts, the rules and itself, for a
    /// failure message.
    async fn report(&self, http: &reqwest::Client) -> String {
        let alerts = self.api(http, "alerts").await.unwrap_or_default();
        let targets = self.api(http, "targets").await.unwrap_or_default();
        let dead = self
            .query(http, "herald_queue_jobs{state=\"failed\"}")
            .await;
        let dependencies = self.query(http, "herald_dependency_up").await;
        let rules = self.api(http, "rules").await.unwrap_or_default();
        let rule_health: Vec<String> = rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| format!("{} {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        format!(
            "alerts: {alerts:#}\ntargets: {}\ndead-set series: {:#}\ndependency series: {:#}\n\
             rules: {rule_health:#?}\nlog:\n{}",
            targets["activeTargets"],
            Value::Array(dead),
            Value::Array(dependencies),
            self.log_tail()
        )
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The rules with `alert`'s `for:` replaced by `duration`.
fn with_shorter_for(rules: &str, alert: &str, duration: &str) -> String {
    let mut lines: Vec<String> = rules.lines().map(str::to_owned).collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- alert: {alert}"))
        .unwrap_or_else(|| panic!("{alert} is in the rules"));
    let for_line = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with("- alert:"))
        .position(|l| l.trim_start().starts_with("for:"))
        .map(|i| start + 1 + i)
        .unwrap_or_else(|| panic!("{alert} has a for:"));
    let indent = lines[for_line].len() - lines[for_line].trim_start().len();
    lines[for_line] = format!("{}for: {duration}", " ".repeat(indent));
    lines.join("\n") + "\n"
}

/// The alert called `name` with `queue` (if given) in `/api/v1/alerts`.
fn find_alert<'a>(alerts: &'a Value, name: &str, queue: Option<&str>) -> Option<&'a Value> {
    alerts["alerts"].as_array()?.iter().find(|a| {
        a["labels"]["alertname"] == name && queue.is_none_or(|q| a["labels"]["queue"] == q)
    })
}

/// Whether, since Prometheus started, every one of `processes` scraped has
/// reported `service` up at each scrape and `alert` has never been pending
/// or firing (Prometheus's own `ALERTS` series keep both states); `Err`
/// says what Prometheus saw instead.
async fn stayed_quiet(
    prometheus: &PrometheusServer,
    http: &reqwest::Client,
    service: &str,
    alert: &str,
    processes: usize,
) -> Result<(), String> {
    let lowest = prometheus
        .query(
            http,
            &format!("min_over_time(herald_dependency_up{{service=\"{service}\"}}[1h])"),
        )
        .await;
    let always_up = lowest.iter().filter(|s| s["value"][1] == "1").count();
    if lowest.len() != processes || always_up != processes {
        return Err(format!(
            "lowest herald_dependency_up{{service=\"{service}\"}} of {processes} processes: {:#}",
            Value::Array(lowest)
        ));
    }
    let raised = prometheus
        .query(
            http,
            &format!("max_over_time(ALERTS{{alertname=\"{alert}\"}}[1h])"),
        )
        .await;
    if !raised.is_empty() {
        return Err(format!("{alert} was raised: {:#}", Value::Array(raised)));
    }
    Ok(())
}

/// Polls `check` every 250 ms until it returns `Some`, or fails the test
/// after `patience` naming `what` and printing what Prometheus reported.
/// A deadline against hangs, not a speed assertion.
async fn until<T, F, Fut>(
    prometheus: &PrometheusServer,
    http: &reqwest::Client,
    what: &str,
    patience: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {patience:?} waiting for {what}; Prometheus reported:\n{}",
                prometheus.report(http).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Messages whose pushes fail for good.
const DOOMED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_the_dead_set_alert_when_pushes_fail_for_good() {
    let bind = format!("127.0.0.1:{}", free_port());
    let mut env = env_with(&[
        ("HERALD_WORKER_OPS_BIND", &bind),
        ("HERALD_WORKER_RETRY_BASE_MS", "100"),
        ("HERALD_QUEUES_PUSH_MAX_ATTEMPTS", "2"),
    ])
    .await;
    // The provider answers every push 503: each is tried twice, then dead.
    env.script_failures(Some(503), 0, 1_000).await;
    env.start_worker().await;
    let web = env.start_web().await;
    let worker = format!("http://{bind}");
    wait_healthy(&env, &worker, "the worker's ops listener").await;
    wait_healthy(&env, &web, "herald web").await;

    // The real rules, but the dead-set alert fires 3 s after the dead set
    // grows instead of 5 minutes (everything else as shipped).
    let real = std::fs::read_to_string(RULES).expect("rules file");
    let rules = with_shorter_for(&real, DEAD_SET_ALERT, TEST_DEAD_SET_FOR);
    let web_target = web.trim_start_matches("http://").to_owned();
    let prometheus = PrometheusServer::start(&env.namespace, &[&bind, &web_target], &rules, "1s");
    let http = env.http.clone();
    let started = Instant::now();

    // Prometheus is up with every rule loaded, both targets scraped, and a
    // sample of the push queue's empty dead set and of Redis and MongoDB up
    // from each before any job fails.
    let expected = read_rules(&real);
    let rule_count = expected.records.len() + expected.alerts.len();
    until(
        &prometheus,
        &http,
        "Prometheus to load the rules and scrape the worker and herald web",
        FIRING_PATIENCE,
        || async {
            let loaded = prometheus.loaded_rules(&http).await?;
            if loaded != rule_count {
                return None;
            }
            let dead = prometheus
                .query(
                    &http,
                    "herald_queue_jobs{queue=\"push\",state=\"failed\"} == 0",
                )
                .await;
            let up = prometheus.query(&http, "herald_dependency_up == 1").await;
            (dead.len() == 2 && up.len() == 4).then_some(())
        },
    )
    .await;
    let alerts = prometheus.api(&http, "alerts").await.expect("alerts");
    for quiet in [DEAD_SET_ALERT].iter().chain(&DEPENDENCY_ALERTS) {
        assert!(
            find_alert(&alerts, quiet, None).is_none(),
            "{quiet} before any job failed:\n{}",
            prometheus.report(&http).await
        );
    }

    let account = account();
    for i in 0..DOOMED {
        env.enqueue(SendMessage::new(
            account,
            format!("doomed {i}"),
            "never delivered",
        ))
        .await;
    }
    wait_for("every push in the dead set", || async {
        (env.queue_set(QueueName::Push, "dead").await.len() == DOOMED).then_some(())
    })
    .await;

    let firing = until(
        &prometheus,
        &http,
        &format!("{DEAD_SET_ALERT} to fire after the dead set grew"),
        FIRING_PATIENCE,
        || async {
            let alerts = prometheus.api(&http, "alerts").await?;
            find_alert(&alerts, DEAD_SET_ALERT, Some("push"))
                .filter(|alert| alert["state"] == "firing")
                .cloned()
        },
    )
    .await;
    eprintln!(
        "{DEAD_SET_ALERT} firing {:.1} s after Prometheus started",
        started.elapsed().as_secs_f64()
    );

    // The alert as an operator gets it: the queue, the severity, the dead
    // set's size, and the annotations filled in.
    let report = format!("{firing:#}");
    assert_eq!(firing["labels"]["severity"], "warning", "{report}");
    let value: f64 = firing["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("value in {report}"));
    assert_eq!(value, DOOMED as f64, "{report}");
    let annotations = &firing["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .is_some_and(|s| s.contains("push")),
        "{report}"
    );
    assert!(
        annotations["description"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("holds {DOOMED} jobs"))),
        "{report}"
    );
    assert!(
        annotations["runbook"]
            .as_str()
            .is_some_and(|s| s.contains("herald failed groups --queue push")),
        "{report}"
    );

    // Every call to the provider failed: the push failure alert is on its
    // way (pending, its `for:` is 10 minutes), and no rule failed to
    // evaluate on real series from two processes.
    let alerts = until(
        &prometheus,
        &http,
        "HeraldPushFailureRateHigh to be pending",
        FIRING_PATIENCE,
        || async {
            let alerts = prometheus.api(&http, "alerts").await?;
            find_alert(&alerts, "HeraldPushFailureRateHigh", None)
                .is_some_and(|a| a["state"] == "pending")
                .then_some(alerts)
        },
    )
    .await;
    let groups = prometheus.api(&http, "rules").await.expect("rules");
    let broken: Vec<String> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["health"] == "err")
        .map(|r| format!("{}: {}", r["name"], r["lastError"]))
        .collect();
    assert!(broken.is_empty(), "rules failing to evaluate: {broken:#?}");
    // The worker, Redis and MongoDB are up, so nothing says otherwise: not
    // now, and (for the dependency alerts) not at any evaluation of the
    // test, with every scrape of both processes reporting both up.
    for quiet in ["HeraldNoWorker"].iter().chain(&DEPENDENCY_ALERTS) {
        assert!(
            find_alert(&alerts, quiet, None).is_none(),
            "{quiet}:\n{}",
            prometheus.report(&http).await
        );
    }
    for (service, alert) in ["redis", "mongodb"].into_iter().zip(DEPENDENCY_ALERTS) {
        if let Err(seen) = stayed_quiet(&prometheus, &http, service, alert, 2).await {
            panic!("{seen}\n{}", prometheus.report(&http).await);
        }
    }
    drop(prometheus);
}

/// A private `redis-server` on a free port, without persistence: killed
/// (and its directory removed) by [`PrivateRedis::kill`] or on drop.
struct PrivateRedis {
    process: Option<ScratchProcess>,
    port: u16,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-alerting-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("private Redis directory");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir);
        let server = Self {
            process: Some(ScratchProcess::spawn(
                &mut command,
                dir,
                "redis-server (Debian: redis-server)",
            )),
            port,
        };
        let url = server.url();
        wait_for("the private Redis to answer", || {
            let url = url.clone();
            async move {
                let mut conn = try_redis(&url).await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: a crash, as far as its clients can tell).
    fn kill(&mut self) {
        self.process.take();
    }
}

/// A scratch directory for the logs of the processes a test starts:
/// removed when dropped, after printing the end of each log if the test is
/// failing.
struct LogDir(PathBuf);

impl LogDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("log directory");
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!(
                    "--- end of {}:\n{}",
                    entry.path().display(),
                    lines[lines.len().saturating_sub(20)..].join("\n")
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How often Prometheus scrapes in the Redis outage test, and the scrape's
/// timeout: above the 2 s a `/metrics` may spend on its Redis ping while
/// Redis does not answer (a scrape that times out records nothing, not 0).
const OUTAGE_SCRAPE: &str = "3s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_the_redis_alert_when_redis_stops() {
    // Dropped in reverse: Prometheus, the Herald processes, their logs, the
    // test environment, then Redis (if the test has not killed it already).
    let mut redis = PrivateRedis::start().await;
    let worker_bind = format!("127.0.0.1:{}", free_port());
    let web_bind = format!("127.0.0.1:{}", free_port());
    let env = env_with(&[
        ("HERALD_REDIS_URL", &redis.url()),
        ("HERALD_WORKER_OPS_BIND", &worker_bind),
        ("HERALD_WEB_BIND", &web_bind),
    ])
    .await;
    let logs = LogDir::new(&format!("herald-alerting-logs-{}", env.namespace));
    // The real binaries, as deployed.
    let mut worker: HeraldProcess =
        env.spawn_herald_logged(&["worker"], &[], &logs.file("worker.log"));
    let mut web: HeraldProcess = env.spawn_herald_logged(&["web"], &[], &logs.file("web.log"));
    wait_healthy(&env, &format!("http://{worker_bind}"), "herald worker").await;
    wait_healthy(&env, &format!("http://{web_bind}"), "herald web").await;

    // The real rules, but the Redis alert fires after 3 s of scrapes
    // reporting Redis down instead of 1 minute (everything else as shipped).
    let real = std::fs::read_to_string(RULES).expect("rules file");
    let rules = with_shorter_for(&real, REDIS_ALERT, TEST_REDIS_FOR);
    let prometheus = PrometheusServer::start(
        &env.namespace,
        &[&worker_bind, &web_bind],
        &rules,
        OUTAGE_SCRAPE,
    );
    let http = env.http.clone();

    // Every rule loaded, and Redis and MongoDB up from both processes.
    let expected = read_rules(&real);
    let rule_count = expected.records.len() + expected.alerts.len();
    until(
        &prometheus,
        &http,
        "Prometheus to load the rules and see Redis and MongoDB up from both processes",
        FIRING_PATIENCE,
        || async {
            let loaded = prometheus.loaded_rules(&http).await?;
            let up = prometheus.query(&http, "herald_dependency_up == 1").await;
            (loaded == rule_count && up.len() == 4).then_some(())
        },
    )
    .await;
    // A few more scrapes: any reporting Redis down would have raised the
    // shortened Redis alert (pending at least, in Prometheus's ALERTS
    // series). It stays quiet while Redis answers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (service, alert) in ["redis", "mongodb"].into_iter().zip(DEPENDENCY_ALERTS) {
        if let Err(seen) = stayed_quiet(&prometheus, &http, service, alert, 2).await {
            panic!("with Redis up: {seen}\n{}", prometheus.report(&http).await);
        }
    }

    redis.kill();
    let killed = Instant::now();
    // What a scrape costs with Redis gone (Prometheus's scrapes have to
    // fit in OUTAGE_SCRAPE).
    for base in [&worker_bind, &web_bind] {
        let asked = Instant::now();
        let text = scrape(&env, &format!("http://{base}")).await;
        eprintln!(
            "/metrics of {base} with Redis killed: {:.2} s, {}",
            asked.elapsed().as_secs_f64(),
            text.lines()
                .find(|l| l.starts_with("herald_dependency_up{service=\"redis\"}"))
                .unwrap_or("no herald_dependency_up for redis")
        );
    }

    let firing = until(
        &prometheus,
        &http,
        &format!("{REDIS_ALERT} to fire for both processes after Redis was killed"),
        FIRING_PATIENCE.saturating_sub(killed.elapsed()),
        || async {
            let alerts = prometheus.api(&http, "alerts").await?;
            let firing: Vec<Value> = alerts["alerts"]
                .as_array()?
                .iter()
                .filter(|a| a["labels"]["alertname"] == REDIS_ALERT && a["state"] == "firing")
                .cloned()
                .collect();
            (firing.len() == 2).then_some(firing)
        },
    )
    .await;
    eprintln!(
        "{REDIS_ALERT} firing for both processes {:.1} s after Redis was killed",
        killed.elapsed().as_secs_f64()
    );

    // One alert per process, as an operator gets it.
    let mut instances: Vec<String> = Vec::new();
    for alert in &firing {
        let report = format!("{alert:#}");
        let labels = &alert["labels"];
        assert_eq!(labels["severity"], "critical", "{report}");
        assert_eq!(labels["service"], "redis", "{report}");
        let instance = labels["instance"].as_str().expect("instance").to_owned();
        let value: Option<f64> = alert["value"].as_str().and_then(|v| v.parse().ok());
        assert_eq!(value, Some(0.0), "{report}");
        let annotations = &alert["annotations"];
        assert_eq!(
            annotations["summary"],
            format!("Herald: {instance} cannot reach Redis"),
            "{report}"
        );
        assert!(
            annotations["description"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("answered {instance}'s ping"))),
            "{report}"
        );
        assert!(
            annotations["runbook"]
                .as_str()
                .is_some_and(|r| r.contains("/readyz")),
            "{report}"
        );
        instances.push(instance);
    }
    instances.sort();
    let mut expected_instances = vec![worker_bind.clone(), web_bind.clone()];
    expected_instances.sort();
    assert_eq!(instances, expected_instances);

    // MongoDB still answered every scrape: its alert never moved.
    if let Err(seen) = stayed_quiet(&prometheus, &http, "mongodb", DEPENDENCY_ALERTS[1], 2).await {
        panic!(
            "with MongoDB up: {seen}\n{}",
            prometheus.report(&http).await
        );
    }
    // Neither process gave up on Redis (docs/operations.md: neither needs
    // restarting while Redis is away).
    for (name, process) in [("herald worker", &mut worker), ("herald web", &mut web)] {
        assert!(
            process.try_wait().expect("try_wait").is_none(),
            "{name} exited while Redis was away"
        );
    }
    drop(prometheus);
}
