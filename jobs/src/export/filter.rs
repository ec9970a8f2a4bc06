//! What an export's filter may ask of the database.
//!
//! A filter is the producer's MongoDB query, run with Herald's credentials
//! over a collection every account shares. Narrowing it to the account
//! (`herald::export::narrowed_filter`) keeps other accounts' documents out
//! of the file, but not their share of the server: one filter such as
//! `{"$expr": {"$gt": [{"$size": {"$range": [0, 1000000]}}, 0]}}` builds a
//! million-element array per document and holds a core for as long as the
//! scan lasts. [`FilterPolicy`] therefore bounds what a filter may be
//! before it reaches the server:
//!
//! - only operators on an allow-list (`export.filter_operators`), so
//!   aggregation expressions (`$expr`) and anything new stay out unless an
//!   operator turns them on; operators that run JavaScript
//!   ([`FORBIDDEN_OPERATORS`]) are refused whatever the list says;
//! - at most so many bytes of BSON (`export.max_filter_bytes`) and levels
//!   of nesting (`export.max_filter_depth`), which also bounds `$in` lists;
//! - regular expressions of at most `export.max_regex_bytes`, which bounds
//!   the cost of one match; the server's time limit on the query
//!   (`export.max_query_ms`, applied by the worker) bounds the rest.
//!
//! Each refusal names the limit and the setting that sets it.

use std::collections::BTreeSet;

use bson::{Bson, Document};

use crate::error::ValidationError;

/// Query operators refused anywhere in a filter: they run server-side JavaScript.
pub const FORBIDDEN_OPERATORS: [&str; 3] = ["$where", "$function", "$accumulator"];

/// The operators a filter may use by default: comparisons, `$in`,
/// `$exists`, the logical operators, bounded `$regex`, and the array and
/// type tests that read one field. Not `$expr` (aggregation expressions
/// over whole documents), `$text` or `$jsonSchema`.
pub const DEFAULT_OPERATORS: [&str; 19] = [
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$and",
    "$or",
    "$nor",
    "$not",
    "$regex",
    "$options",
    "$type",
    "$size",
    "$all",
    "$elemMatch",
];

/// Default largest filter, in bytes of BSON.
pub const DEFAULT_MAX_FILTER_BYTES: usize = 16 * 1024;
/// Default deepest nesting of documents and arrays in a filter.
pub const DEFAULT_MAX_FILTER_DEPTH: usize = 8;
/// Default longest regular expression pattern, in bytes.
pub const DEFAULT_MAX_REGEX_BYTES: usize = 128;

/// The bounds a filter must keep (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPolicy {
    /// Operators allowed; `None`: any operator but [`FORBIDDEN_OPERATORS`]
    /// (what a producer checks, leaving the allow-list to the worker).
    pub operators: Option<BTreeSet<String>>,
    /// Largest filter, in bytes of BSON.
    pub max_bytes: usize,
    /// Deepest nesting of documents and arrays (the filter itself is 1).
    pub max_depth: usize,
    /// Longest regular expression pattern, in bytes.
    pub max_regex_bytes: usize,
}

impl Default for FilterPolicy {
    /// The defaults of the worker's settings.
    fn default() -> Self {
        Self {
            operators: Some(
                DEFAULT_OPERATORS
                    .iter()
                    .map(|op| (*op).to_owned())
                    .collect(),
            ),
            max_bytes: DEFAULT_MAX_FILTER_BYTES,
            max_depth: DEFAULT_MAX_FILTER_DEPTH,
            max_regex_bytes: DEFAULT_MAX_REGEX_BYTES,
        }
    }
}

impl FilterPolicy {
    /// Any operator but the JavaScript ones, with the default size bounds:
    /// what a producer checks before enqueueing (the worker applies its
    /// own allow-list).
    pub fn any_operator() -> Self {
        Self {
            operators: None,
            ..Self::default()
        }
    }

    /// Checks `filter` against every bound; the first one broken is the
    /// error, naming the setting that sets it.
    pub fn check(&self, filter: &Document) -> Result<(), ValidationError> {
        // JavaScript is named first, wherever it hides: that refusal holds
        // whatever the settings.
        if let Some(what) = javascript_in(&Bson::Document(filter.clone())) {
            return Err(refused(format!(
                "uses {what}, which runs JavaScript on the server and is refused"
            )));
        }
        let bytes = match bson::to_vec(filter) {
            Ok(encoded) => encoded.len(),
            Err(e) => return Err(refused(format!("cannot be encoded as BSON: {e}"))),
        };
        if bytes > self.max_bytes {
            return Err(refused(format!(
                "is {bytes} bytes of BSON, over the limit of {} bytes (export.max_filter_bytes)",
                self.max_bytes
            )));
        }
        self.check_document(filter, 1)
    }

    fn check_document(&self, document: &Document, depth: usize) -> Result<(), ValidationError> {
        self.check_depth(depth)?;
        for (key, value) in document {
            if key.starts_with('$') {
                self.check_operator(key)?;
                if key == "$regex" {
                    self.check_regex(value)?;
                }
            }
            self.check_value(value, depth)?;
        }
        Ok(())
    }

    fn check_value(&self, value: &Bson, depth: usize) -> Result<(), ValidationError> {
        match value {
            Bson::Document(inner) => self.check_document(inner, depth + 1),
            Bson::Array(items) => {
                self.check_depth(depth + 1)?;
                items
                    .iter()
                    .try_for_each(|item| self.check_value(item, depth + 1))
            }
            Bson::RegularExpression(_) => self.check_regex(value),
            _ => Ok(()),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), ValidationError> {
        if depth > self.max_depth {
            return Err(refused(format!(
                "nests deeper than {} levels (export.max_filter_depth)",
                self.max_depth
            )));
        }
        Ok(())
    }

    fn check_operator(&self, operator: &str) -> Result<(), ValidationError> {
        match &self.operators {
            Some(allowed) if !allowed.contains(operator) => Err(refused(format!(
                "uses {operator}, which is not on the allowed operators (export.filter_operators: {})",
                allowed.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))),
            _ => Ok(()),
        }
    }

    fn check_regex(&self, value: &Bson) -> Result<(), ValidationError> {
        let pattern = match value {
            Bson::String(pattern) => pattern.as_str(),
            Bson::RegularExpression(regex) => regex.pattern.as_str(),
            _ => return Ok(()),
        };
        if pattern.len() > self.max_regex_bytes {
            return Err(refused(format!(
                "has a regular expression of {} bytes, over the limit of {} bytes (export.max_regex_bytes)",
                pattern.len(),
                self.max_regex_bytes
            )));
        }
        Ok(())
    }
}

/// The first operator or value anywhere in `value` that runs JavaScript.
fn javascript_in(value: &Bson) -> Option<&'static str> {
    match value {
        Bson::Document(doc) => doc.iter().find_map(|(key, inner)| {
            FORBIDDEN_OPERATORS
                .iter()
                .find(|op| key == *op)
                .copied()
                .or_else(|| javascript_in(inner))
        }),
        Bson::Array(items) => items.iter().find_map(javascript_in),
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => Some("JavaScript code"),
        _ => None,
    }
}

fn refused(reason: impl Into<String>) -> ValidationError {
    ValidationError::new("filter", reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn refusal(policy: &FilterPolicy, filter: Document) -> String {
        policy.check(&filter).unwrap_err().reason
    }

    #[test]
    fn ordinary_filters_pass_the_defaults() {
        let policy = FilterPolicy::default();
        for filter in [
            doc! {},
            doc! { "status": "active", "age": { "$gte": 18, "$lt": 65 } },
            doc! { "$or": [ { "vip": true }, { "tags": { "$in": ["a", "b"] } } ] },
            doc! { "name": { "$regex": "^Li", "$options": "i" } },
            doc! { "email": { "$exists": true }, "city": { "$not": { "$eq": "x" } } },
            doc! { "items": { "$elemMatch": { "qty": { "$gt": 1 } } } },
        ] {
            assert_eq!(policy.check(&filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn expressions_and_unknown_operators_are_refused_naming_the_setting() {
        let policy = FilterPolicy::default();
        let reason = refusal(
            &policy,
            doc! { "$expr": { "$gt": [ { "$size": { "$range": [0, 1_000_000] } }, 0 ] } },
        );
        assert!(reason.contains("$expr"), "{reason}");
        assert!(reason.contains("export.filter_operators"), "{reason}");
        let reason = refusal(&policy, doc! { "a": { "$mod": [2, 0] } });
        assert!(reason.contains("$mod"), "{reason}");
    }

    #[test]
    fn javascript_is_refused_even_when_allowed_or_unrestricted() {
        let mut allowing = FilterPolicy::default();
        allowing
            .operators
            .as_mut()
            .unwrap()
            .insert("$where".to_owned());
        for policy in [allowing, FilterPolicy::any_operator()] {
            let reason = refusal(&policy, doc! { "$where": "this.a > 1" });
            assert!(reason.contains("JavaScript"), "{reason}");
            let code = doc! { "a": Bson::JavaScriptCode("1".into()) };
            assert!(refusal(&policy, code).contains("JavaScript"));
        }
        assert_eq!(
            FilterPolicy::any_operator().check(&doc! { "$expr": { "$eq": ["$a", 1] } }),
            Ok(())
        );
    }

    #[test]
    fn a_filter_that_cannot_be_bson_is_refused_saying_so() {
        let mut filter = Document::new();
        filter.insert("a\u{0}b", 1);
        let reason = refusal(&FilterPolicy::default(), filter);
        assert!(reason.contains("cannot be encoded as BSON"), "{reason}");
        assert!(!reason.contains(&usize::MAX.to_string()), "{reason}");
    }

    #[test]
    fn size_depth_and_regex_bounds_name_their_settings() {
        let policy = FilterPolicy {
            max_bytes: 100,
            max_depth: 3,
            max_regex_bytes: 5,
            ..FilterPolicy::default()
        };
        let big: Vec<Bson> = (0..50).map(Bson::Int32).collect();
        assert!(refusal(&policy, doc! { "a": { "$in": big } }).contains("export.max_filter_bytes"));
        let deep = doc! { "$and": [ { "$or": [ { "a": { "$not": { "$eq": 1 } } } ] } ] };
        assert!(refusal(&policy, deep).contains("export.max_filter_depth"));
        assert_eq!(policy.check(&doc! { "a": { "$eq": 1 } }), Ok(()));
        assert!(refusal(&policy, doc! { "a": { "$regex": "(a+)+$" } })
            .contains("export.max_regex_bytes"));
        let literal = Bson::RegularExpression(bson::Regex {
            pattern: "(a+)+$".into(),
            options: String::new(),
        });
        assert!(refusal(&policy, doc! { "a": literal }).contains("export.max_regex_bytes"));
        assert_eq!(policy.check(&doc! { "a": { "$regex": "^ab" } }), Ok(()));
    }
}
