//! The Grafana dashboard in `deploy/grafana/herald.json` cannot drift from
//! the metrics: every PromQL expression of its panels and template
//! variables reads only series that a real worker and `herald web` export
//! on `/metrics`, with label names (and literal label values) they carry.

use std::collections::{BTreeMap, BTreeSet};

use herald_jobs::{QueueName, SendMessage};
use serde_json::{json, Value};

use crate::{
    helpers::{account, env_with, wait_for},
    ops::{enqueue_title_export, free_port},
    promql::{is_ident_char, read_matchers, scrape, selectors, Selector},
};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/herald.json");

/// The datasource every panel and query must use: the dashboard's variable.
const DATASOURCE: &str = "${datasource}";

/// Splits `s` at its commas outside parentheses, braces, brackets and
/// strings.
fn split_arguments(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0i32;
    let mut quote = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(String::new());
                    continue;
                }
                _ => {}
            },
        }
        parts.last_mut().expect("one part at least").push(c);
    }
    parts.into_iter().map(|p| p.trim().to_owned()).collect()
}

/// The series a Grafana Prometheus variable query reads: `label_values(
/// selector, label)` (the selector's metric must carry the label),
/// `label_values(label)` (no metric), `query_result(expr)`, or an
/// expression.
fn variable_selectors(query: &str) -> Vec<Selector> {
    let query = query.trim();
    if let Some(args) = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let args = split_arguments(args);
        return match args.as_slice() {
            [selector, label] => selectors(selector)
                .into_iter()
                .map(|mut s| {
                    s.labels.push((label.clone(), None));
                    s
                })
                .collect(),
            _ => Vec::new(),
        };
    }
    if let Some(expr) = query
        .strip_prefix("query_result(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return selectors(expr);
    }
    selectors(query)
}

// ---------------------------------------------------------------- Dashboard

/// One PromQL query of the dashboard and where it is.
struct Query {
    /// `panel "Title" (id N), target A`, or `variable "queue"`.
    place: String,
    expr: String,
    selectors: Vec<Selector>,
}

fn load_dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("{DASHBOARD} cannot be read: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, with those nested in (collapsed) rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn panel_name(panel: &Value) -> String {
    format!(
        "panel {:?} (id {})",
        panel["title"].as_str().unwrap_or("(untitled)"),
        panel["id"]
    )
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// Whether a `datasource` field names the dashboard's variable: the
/// object form `{"type": "prometheus", "uid": "${datasource}"}` or the
/// older plain string.
fn uses_datasource_variable(datasource: &Value) -> bool {
    match datasource {
        Value::String(name) => name == DATASOURCE,
        Value::Object(_) => datasource["uid"] == DATASOURCE,
        _ => false,
    }
}

/// Every PromQL query of the dashboard: each panel's targets and each
/// query variable's query.
fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in all_panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push(Query {
                    place: format!(
                        "{}, target {}",
                        panel_name(panel),
                        target["refId"].as_str().unwrap_or("?")
                    ),
                    expr: expr.to_owned(),
                    selectors: selectors(expr),
                });
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
    {
        let query = &variable["query"];
        let text = query
            .as_str()
            .or_else(|| query["query"].as_str())
            .unwrap_or_default();
        queries.push(Query {
            place: format!("variable {:?}", variable["name"].as_str().unwrap_or("?")),
            expr: text.to_owned(),
            selectors: variable_selectors(text),
        });
    }
    queries
}

/// The panels the dashboard must have: a word of the title and the
/// metrics of which the panel must read one.
const REQUIRED_PANELS: &[(&str, &str, &[&str])] = &[
    ("throughput", "throughput", &["herald_jobs_done_total"]),
    (
        "latency",
        "latency",
        &[
            "herald_queue_latency_seconds",
            "herald_job_duration_seconds_bucket",
        ],
    ),
    ("failures", "failure", &["herald_jobs_failed_total"]),
    ("dead set", "dead set", &["herald_queue_jobs"]),
    ("queue depth", "queue depth", &["herald_queue_jobs"]),
    ("exports", "export", &["herald_export_rows_total"]),
];

#[test]
fn the_grafana_dashboard_is_well_formed() {
    let dashboard = load_dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion: {}",
        dashboard["schemaVersion"]
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name:?}"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource", "{datasource}");
    assert_eq!(datasource["query"], "prometheus", "{datasource}");
    let queue = variable("queue");
    assert_eq!(queue["type"], "query", "{queue}");
    assert!(
        uses_datasource_variable(&queue["datasource"]),
        "variable \"queue\" must query {DATASOURCE}: {}",
        queue["datasource"]
    );
    let queue_query = queue["query"]
        .as_str()
        .or_else(|| queue["query"]["query"].as_str())
        .unwrap_or_default();
    assert!(
        queue_query.starts_with("label_values(") && queue_query.contains("queue"),
        "variable \"queue\" takes the values of the queue label: {queue_query:?}"
    );

    let panels = all_panels(&dashboard);
    let mut problems = Vec::new();
    let mut ids = BTreeMap::new();
    for panel in &panels {
        let name = panel_name(panel);
        match panel["id"].as_u64() {
            Some(id) => {
                if let Some(other) = ids.insert(id, name.clone()) {
                    problems.push(format!("{name} has the id of {other}"));
                }
            }
            None => problems.push(format!("{name} has no numeric id")),
        }
        if panel["title"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{name} has no title"));
        }
        if is_row(panel) {
            continue;
        }
        if !uses_datasource_variable(&panel["datasource"]) {
            problems.push(format!(
                "{name}: datasource {} is not {DATASOURCE}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("{name} has no targets"));
        }
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or_default();
            if !ref_ids.insert(ref_id) {
                problems.push(format!("{name}: refId {ref_id:?} twice"));
            }
            if target["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{name}, target {ref_id:?} has no expr"));
            }
            if !target["datasource"].is_null() && !uses_datasource_variable(&target["datasource"]) {
                problems.push(format!(
                    "{name}, target {ref_id:?}: datasource {} is not {DATASOURCE}",
                    target["datasource"]
                ));
            }
        }
    }

    for (what, word, metrics) in REQUIRED_PANELS {
        let found = panels.iter().any(|panel| {
            !is_row(panel)
                && panel["title"]
                    .as_str()
                    .is_some_and(|t| t.to_lowercase().contains(word))
                && panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["expr"].as_str())
                    .any(|expr| {
                        selectors(expr)
                            .iter()
                            .any(|s| metrics.contains(&s.metric.as_str()))
                    })
        });
        if !found {
            problems.push(format!(
                "no {what} panel: none has {word:?} in its title and reads {}",
                metrics.join(" or ")
            ));
        }
    }

    for query in dashboard_queries(&dashboard) {
        if query.selectors.is_empty() {
            problems.push(format!("{} reads no metric: {:?}", query.place, query.expr));
        }
    }
    assert!(
        problems.is_empty(),
        "{DASHBOARD}:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------- Exported

/// Every sample of the scraped texts: name, then the label sets it has.
type Exported = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// Adds the samples of one OpenMetrics text to `exported`.
fn collect_samples(text: &str, exported: &mut Exported) {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let end = chars
            .iter()
            .position(|c| !is_ident_char(*c))
            .unwrap_or(chars.len());
        let name: String = chars[..end].iter().collect();
        let mut labels = BTreeMap::new();
        if chars.get(end) == Some(&'{') {
            let (_, matchers, _) = read_matchers(&chars, end);
            for (label, value) in matchers {
                labels.insert(label, value.unwrap_or_default());
            }
        }
        exported.entry(name).or_default().push(labels);
    }
}

/// What `query` reads that no scraped process exports.
fn missing(query: &Query, exported: &Exported) -> Vec<String> {
    let mut problems = Vec::new();
    for selector in &query.selectors {
        let Some(series) = exported.get(&selector.metric) else {
            problems.push(format!(
                "{}: metric {} is not exported (in {:?})",
                query.place, selector.metric, query.expr
            ));
            continue;
        };
        for (label, value) in &selector.labels {
            let has = |s: &BTreeMap<String, String>| match value {
                Some(value) => s.get(label) == Some(value),
                None => s.contains_key(label),
            };
            if !series.iter().any(has) {
                let what = match value {
                    Some(value) => format!("{label}=\"{value}\""),
                    None => format!("label {label}"),
                };
                problems.push(format!(
                    "{}: metric {} has no series with {what} (in {:?})",
                    query.place, selector.metric, query.expr
                ));
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_reads_only_metrics_herald_exports() {
    let dashboard = load_dashboard();
    let queries = dashboard_queries(&dashboard);

    let worker_bind = format!("127.0.0.1:{}", free_port());
    let mut env = env_with(&[("HERALD_WORKER_OPS_BIND", &worker_bind)]).await;
    let worker = format!("http://{worker_bind}");
    env.start_worker().await;
    let web = env.start_web().await;
    wait_for("the worker's ops listener", || async {
        let response = env
            .http
            .get(format!("{worker}/healthz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    // A little of everything, so that every labelled series exists: two
    // messages pushed, one that fails validation (a failed run and a dead
    // job), and an export.
    let account = account();
    for i in 0..2 {
        env.enqueue(SendMessage::new(account, format!("m{i}"), "body"))
            .await;
    }
    env.push_raw(json!({"accountId": "nope"})).await;
    enqueue_title_export(&env, account).await;
    wait_for("two pushes, a dead job and a finished export", || async {
        let dead = env.queue_set(QueueName::SendMessage, "dead").await.len();
        let pushed = env.delivered("new_message").await.len();
        let exported = env.delivered("export_finish").await.len();
        (pushed == 2 && dead == 1 && exported == 1).then_some(())
    })
    .await;

    let mut exported = Exported::new();
    for base in [&worker, &web] {
        let text = scrape(&env, base).await;
        assert!(
            text.contains("herald_queue_jobs{"),
            "{base}/metrics reports the queues:\n{text}"
        );
        collect_samples(&text, &mut exported);
    }

    let mut problems = Vec::new();
    let mut checked = 0;
    for query in &queries {
        checked += query.selectors.len();
        problems.extend(missing(query, &exported));
    }
    assert!(
        problems.is_empty(),
        "{DASHBOARD} reads what Herald does not export:\n  {}\nexported: {}",
        problems.join("\n  "),
        exported.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    assert!(checked >= REQUIRED_PANELS.len(), "{checked} selectors");
}

// ---------------------------------------------------------------- Tokenizer

mod tokenizer {
    use super::*;

    fn metrics(expr: &str) -> Vec<String> {
        selectors(expr).into_iter().map(|s| s.metric).collect()
    }

    #[test]
    fn functions_aggregations_and_grouping_labels_are_not_metrics() {
        assert_eq!(
            metrics(
                r#"histogram_quantile(0.99, sum by (queue, le) (rate(herald_job_duration_seconds_bucket{queue=~"$queue"}[$__rate_interval])))"#
            ),
            ["herald_job_duration_seconds_bucket"]
        );
        assert_eq!(
            metrics("sum(rate(a_total[5m])) by (queue) / ignoring(state) group_left(x) b"),
            ["a_total", "b"]
        );
        assert_eq!(
            metrics("SUM WITHOUT (instance) (rate (a[1h30m] offset -5m)) > bool 0.5 unless on() c"),
            ["a", "c"]
        );
        assert_eq!(
            metrics("topk(3, count_values(\"value\", up)) and Inf or NaN"),
            ["up"]
        );
    }

    #[test]
    fn a_selector_carries_its_label_names_and_literal_values() {
        assert_eq!(
            selectors(r#"max by (queue) (q{queue=~"$queue", state="failed", x!="y", z=""})"#),
            [Selector {
                metric: "q".into(),
                labels: vec![
                    ("queue".into(), None),
                    ("state".into(), Some("failed".into())),
                    ("x".into(), None),
                    ("z".into(), None),
                ],
            }]
        );
        // Braces, strings and brackets hide what looks like metric names.
        assert_eq!(
            metrics(
                r#"label_replace(a{l="b c"}, "d", "$1", "e", "(f)") + g[5m:1m] + h {i="j,k}"} "#
            ),
            ["a", "g", "h"]
        );
        // A metric named in its braces.
        assert_eq!(
            selectors(r#"rate({__name__="a_total", q="p"}[5m]) + {"b"}"#),
            [
                Selector {
                    metric: "a_total".into(),
                    labels: vec![("q".into(), Some("p".into()))],
                },
                Selector {
                    metric: "b".into(),
                    labels: vec![],
                },
            ]
        );
    }

    #[test]
    fn grafana_variables_and_numbers_are_skipped() {
        assert_eq!(
            metrics("a_total * ${factor} / $divisor + 1e3 + 0x1F + .5 - m:rule:rate5m"),
            ["a_total", "m:rule:rate5m"]
        );
        assert_eq!(
            metrics("increase(a[$__range]) # trailing comment b\n+ c"),
            ["a", "c"]
        );
        assert!(metrics("vector(1)").is_empty());
    }

    #[test]
    fn variable_queries_name_the_label_they_list() {
        assert_eq!(
            variable_selectors(r#"label_values(herald_jobs_done_total{state="x, y"}, queue)"#),
            [Selector {
                metric: "herald_jobs_done_total".into(),
                labels: vec![
                    ("state".into(), Some("x, y".into())),
                    ("queue".into(), None)
                ],
            }]
        );
        assert!(variable_selectors("label_values(queue)").is_empty());
        assert_eq!(
            variable_selectors("query_result(topk(5, sum by (queue) (a_total)))")
                .into_iter()
                .map(|s| s.metric)
                .collect::<Vec<_>>(),
            ["a_total"]
        );
    }

    #[test]
    fn exposition_samples_are_read_with_their_labels() {
        let mut exported = Exported::new();
        collect_samples(
            "# TYPE h histogram\nh_bucket{le=\"+Inf\",queue=\"push\"} 1\nc_total 3\n# EOF\n",
            &mut exported,
        );
        assert_eq!(
            exported.keys().cloned().collect::<Vec<_>>(),
            ["c_total", "h_bucket"]
        );
        assert_eq!(exported["h_bucket"][0]["queue"], "push");
        let query = Query {
            place: "panel \"P\" (id 1), target A".into(),
            expr: String::new(),
            selectors: selectors(r#"h_bucket{queue="export"} + h_count + c_total{le=~"x"}"#),
        };
        let problems = missing(&query, &exported);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("panel \"P\"") && problems[0].contains("queue=\"export\""));
        assert!(problems[1].contains("metric h_count is not exported"));
        assert!(problems[2].contains("label le"));
    }
}
