//! The Grafana dashboard in `deploy/grafana/herald.json` cannot drift from
//! the metrics: every PromQL expression of its panels and template
//! variables reads only series that a real worker and `herald web` export
//! on `/metrics`, with label names (and literal label values) they carry.

use std::collections::{BTreeMap, BTreeSet};

use herald::export::status::ExportStatusStore;
use herald_jobs::{Export, Producer, QueueName, SendMessage};
use serde_json::{json, Value};

use crate::{
    helpers::{account, env_with, redis_url, wait_for, TestEnv},
    ops::free_port,
};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/herald.json");

/// The datasource every panel and query must use: the dashboard's variable.
const DATASOURCE: &str = "${datasource}";

// ---------------------------------------------------------------- PromQL

/// A series a PromQL expression reads: the metric name and the labels its
/// matchers name, with the value when the matcher is a literal `label="v"`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    metric: String,
    labels: Vec<(String, Option<String>)>,
}

/// Aggregation operators and the keywords of the language: never metrics,
/// whatever follows them (compared in lower case, as PromQL does).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "bool",
    "inf",
    "nan",
];

/// Keywords followed by a list of label names in parentheses.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index of the first character at or after `i` that is not whitespace.
fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Reads the string literal opening at `i` (`"`, `'` or a backquote);
/// returns its (unescaped) text and the index after its closing quote.
fn read_string(chars: &[char], i: usize) -> (String, usize) {
    let quote = chars[i];
    let mut text = String::new();
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' && j + 1 < chars.len() {
            j += 1;
        }
        text.push(chars[j]);
        j += 1;
    }
    (text, (j + 1).min(chars.len()))
}

/// Index after the `close` matching the `open` at `i` (to the end if none).
fn skip_balanced(chars: &[char], i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = read_string(chars, j).1;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// What [`read_matchers`] finds: the metric name the braces give, if any;
/// each label named, with its value when matched literally by `=`; and the
/// index after `}`.
type Matchers = (Option<String>, Vec<(String, Option<String>)>, usize);

/// Parses the matchers in the braces opening at `i`: the labels they name
/// (a literal `=` matcher with its value), a metric name given as
/// `__name__="..."` or as a bare quoted string, and the index after `}`.
fn read_matchers(chars: &[char], i: usize) -> Matchers {
    let mut name = None;
    let mut labels = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_space(chars, j);
        match chars.get(j) {
            None => return (name, labels, j),
            Some('}') => return (name, labels, j + 1),
            Some(',') => {
                j += 1;
                continue;
            }
            _ => {}
        }
        let label = if matches!(chars[j], '"' | '\'' | '`') {
            let (text, next) = read_string(chars, j);
            j = next;
            text
        } else {
            let start = j;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                // Not a matcher: step over the character.
                j += 1;
                continue;
            }
            chars[start..j].iter().collect()
        };
        j = skip_space(chars, j);
        let op: String = chars[j..]
            .iter()
            .take_while(|c| matches!(c, '=' | '!' | '~'))
            .collect();
        if op.is_empty() {
            // `{"metric_name", ...}`: a bare string is the metric's name.
            name = Some(label);
            continue;
        }
        j = skip_space(chars, j + op.len());
        let value = if matches!(chars.get(j), Some('"' | '\'' | '`')) {
            let (text, next) = read_string(chars, j);
            j = next;
            text
        } else {
            String::new()
        };
        if label == "__name__" && op == "=" {
            name = Some(value);
        } else {
            // Only a literal equality pins a value; a regex, a negation,
            // an empty value or a Grafana variable does not.
            let exact = (op == "=" && !value.is_empty() && !value.contains('$')).then_some(value);
            labels.push((label, exact));
        }
    }
}

/// The series a PromQL expression (as a Grafana target holds it, with
/// `$variables`) reads.
///
/// An identifier is a metric name unless it is a keyword or aggregation
/// operator, a function (followed by `(`), or a label name: in a matcher's
/// braces, or in the list after `by`, `without`, `on`, `ignoring`,
/// `group_left` or `group_right`. String literals, ranges and subqueries
/// in brackets, numbers, durations and Grafana variables are skipped.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            // A comment, to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            i = read_string(&chars, i).1;
        } else if c == '$' {
            // `$var`, `$__rate_interval`, `${var}`, `${var:format}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_balanced(&chars, i, '{', '}');
            } else {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c == '[' {
            i = skip_balanced(&chars, i, '[', ']');
        } else if c == '{' {
            // A selector with no name before its braces.
            let (name, labels, next) = read_matchers(&chars, i);
            if let Some(metric) = name {
                found.push(Selector { metric, labels });
            }
            i = next;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (`0.99`, `1e3`, `0x1f`, `1h30m`).
            while i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let next = skip_space(&chars, i);
            let followed_by = chars.get(next).copied();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if followed_by == Some('(') {
                    i = skip_balanced(&chars, next, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) || followed_by == Some('(') {
                // An operator, a keyword or a function.
            } else if followed_by == Some('{') {
                let (_, labels, after) = read_matchers(&chars, next);
                found.push(Selector {
                    metric: word,
                    labels,
                });
                i = after;
            } else {
                found.push(Selector {
                    metric: word,
                    labels: Vec::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    found
}

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

async fn scrape(env: &TestEnv, base: &str) -> String {
    let response = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}/metrics answers: {e}"));
    assert_eq!(response.status(), 200, "{base}/metrics");
    response.text().await.expect("metrics text")
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
    let key = mongodb::bson::oid::ObjectId::new().to_hex();
    ExportStatusStore::new(&env.database)
        .queued(
            account,
            &herald_jobs::ExportKey::parse(&key).expect("export key"),
            "message",
        )
        .await
        .expect("status record");
    let export: Export = serde_json::from_value(json!({
        "accountId": account.to_hex(),
        "key": key,
        "collection": "message",
        "fields": [{ "path": "title", "title": "Title" }],
    }))
    .expect("export job");
    Producer::connect(&redis_url(), &env.settings.redis.namespace)
        .await
        .expect("producer")
        .enqueue_export(export)
        .await
        .expect("enqueue export");
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
