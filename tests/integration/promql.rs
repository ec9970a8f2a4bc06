//! PromQL as the tests of `deploy/` read it: the series an expression
//! reads (`selectors`), and `/metrics` as a running process serves it
//! (`scrape`). The Prometheus rules' test (`alerting.rs`) and the Grafana
//! dashboard's (`grafana_dashboard.rs`) both check that what they read is
//! what Herald exports.

use crate::helpers::TestEnv;

/// A series a PromQL expression reads: the metric name and the labels its
/// matchers name, with the value when the matcher is a literal `label="v"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    /// The metric's name (or a recording rule's).
    pub metric: String,
    /// Each label a matcher names, with its value when matched by `=`.
    pub labels: Vec<(String, Option<String>)>,
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

pub(crate) fn is_ident_char(c: char) -> bool {
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
pub(crate) fn read_matchers(chars: &[char], i: usize) -> Matchers {
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
pub(crate) fn selectors(expr: &str) -> Vec<Selector> {
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

/// The metric names `expr` reads.
pub(crate) fn metric_names(expr: &str) -> std::collections::BTreeSet<String> {
    selectors(expr).into_iter().map(|s| s.metric).collect()
}

/// `{base}/metrics` as the process serves it.
pub(crate) async fn scrape(env: &TestEnv, base: &str) -> String {
    let response = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}/metrics answers: {e}"));
    assert_eq!(response.status(), 200, "{base}/metrics");
    response.text().await.expect("metrics text")
}
