//! The `export` job: one account's documents of a collection, as a CSV file.
//!
//! ```json
//! {
//!   "accountId": "5f0c8a3e2b1d4c0012345678",
//!   "key": "65a1f0c2e4b0a1b2c3d4e5f6",
//!   "collection": "customer",
//!   "filter": { "createdAt": { "$gte": { "$date": "2026-01-01T00:00:00Z" } } },
//!   "fields": [
//!     { "path": "name", "title": "Name" },
//!     { "path": "profile.city", "title": "City" }
//!   ],
//!   "sort": [ { "path": "createdAt", "order": "desc" } ],
//!   "timeZone": "Asia/Shanghai"
//! }
//! ```
//!
//! `filter` is MongoDB extended JSON. Herald always narrows it to the job's
//! account, bounds what it may ask of the server ([`filter`]), and only
//! reads collections on its configured allow-list. An export is addressed
//! by its account and its key together ([`ExportKey`]): two accounts may
//! use the same key.

pub mod filter;

use std::{collections::BTreeSet, fmt};

use bson::{Bson, Document};
use serde::{Deserialize, Serialize};

use crate::{
    error::keep,
    error::ValidationError,
    ids::{parse_object_id, unpredictable_object_id, AccountId},
    string_enum::string_enum,
};

pub use filter::{FilterPolicy, FORBIDDEN_OPERATORS};

/// Keys that MongoDB extended JSON reads as one typed value (`{"$date":
/// ...}`, `{"$oid": ...}`): an object in a filter holding one of them must
/// be that value's exact form, and `$code` (JavaScript) is refused.
pub const EXTENDED_JSON_KEYS: [&str; 16] = [
    "$oid",
    "$symbol",
    "$regularExpression",
    "$numberInt",
    "$numberLong",
    "$numberDouble",
    "$numberDecimal",
    "$binary",
    "$uuid",
    "$code",
    "$timestamp",
    "$date",
    "$minKey",
    "$maxKey",
    "$dbPointer",
    "$undefined",
];

/// Longest export key, in characters (all ASCII).
pub const KEY_MAX_LEN: usize = 64;

/// Longest document path (`fields.path`, `sort.path`), in bytes of UTF-8.
pub const PATH_MAX_BYTES: usize = 256;

/// Longest column title (`fields.title`), in bytes of UTF-8.
pub const TITLE_MAX_BYTES: usize = 256;

/// Default most columns an export may have.
pub const DEFAULT_MAX_FIELDS: usize = 100;

/// Whether `c` may appear in an export key: an ASCII letter or digit, `-`
/// or `_` (the key names a file).
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// What a key may be, as a regular expression: [`is_key_char`] characters,
/// 1 to [`KEY_MAX_LEN`] of them.
pub fn key_pattern() -> String {
    format!("^[A-Za-z0-9_-]{{1,{KEY_MAX_LEN}}}$")
}

/// An export's key, checked: 1 to [`KEY_MAX_LEN`] letters, digits, `-` or
/// `_` (it names a file). Unique within its account only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportKey(String);

impl ExportKey {
    /// Parses a key.
    pub fn parse(key: &str) -> Result<Self, ValidationError> {
        check_key(key).map(|()| Self(key.to_owned()))
    }

    /// A new key no one can predict (24 hex digits, an
    /// [`unpredictable_object_id`]), for an export whose producer named none.
    pub fn generate() -> Self {
        Self(unpredictable_object_id().to_hex())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ExportKey {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a document path may be, as a regular expression: dot-separated
/// segments, none empty and none starting with `$` (at most
/// [`PATH_MAX_BYTES`] bytes, which the pattern does not count).
pub const PATH_PATTERN: &str = r"^[^.$][^.]*(\.[^.$][^.]*)*$";

string_enum!(
    /// The direction of a sort key.
    SortOrder {
        /// Smallest first.
        Asc => "asc",
        /// Largest first.
        Desc => "desc",
    }
);

/// The `export` payload (camelCase JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Export {
    /// The account whose documents are exported, 24-hex.
    pub account_id: String,
    /// The export's id: what `export_finish` carries and the file is named
    /// by. 1 to 64 letters, digits, `-` or `_`.
    pub key: String,
    /// Source collection; must be on the worker's allow-list.
    pub collection: String,
    /// Extended-JSON filter (an object); `{}` for all the account's documents.
    #[serde(default = "empty_object")]
    pub filter: serde_json::Value,
    /// Columns, in order.
    pub fields: Vec<ExportField>,
    /// Sort, most significant first.
    #[serde(default)]
    pub sort: Vec<ExportSort>,
    /// IANA time zone for dates (default: the worker's `export.time_zone`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The W3C `traceparent` of the code that enqueued it
    /// ([`crate::TraceParent`]): the worker's spans continue that trace; one
    /// not of the W3C form is ignored, never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

crate::object_only!(Export, "an export job (a JSON object)");
crate::object_only!(ExportField, "a field object {\"path\", \"title\"}");
crate::object_only!(ExportSort, "a sort object {\"path\", \"order\"}");

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// One column: a document path and its title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExportField {
    /// Dotted path, e.g. `profile.name`.
    pub path: String,
    /// Column title in the header row.
    pub title: String,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ExportSort {
    /// Dotted path.
    pub path: String,
    /// `asc` or `desc`.
    #[serde(default = "ascending")]
    pub order: String,
}

fn ascending() -> String {
    SortOrder::Asc.as_str().to_owned()
}

/// What the worker allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLimits {
    /// Collections that may be exported.
    pub collections: BTreeSet<String>,
    /// Time zone when the job names none.
    pub default_time_zone: chrono_tz::Tz,
    /// What a filter may ask of the server.
    pub filter: FilterPolicy,
    /// Most columns (`export.max_fields`).
    pub max_fields: usize,
}

impl ExportLimits {
    /// Exports of `collections`, dates in `default_time_zone`, with the
    /// default filter policy and column cap.
    pub fn new(collections: BTreeSet<String>, default_time_zone: chrono_tz::Tz) -> Self {
        Self {
            collections,
            default_time_zone,
            filter: FilterPolicy::default(),
            max_fields: DEFAULT_MAX_FIELDS,
        }
    }
}

/// An `export` payload that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidExport {
    /// The account.
    pub account: AccountId,
    /// The export's key (unique within the account).
    pub key: ExportKey,
    /// Source collection.
    pub collection: String,
    /// The producer's filter, as BSON (not yet narrowed to the account).
    pub filter: Document,
    /// Columns.
    pub fields: Vec<ExportField>,
    /// Sort document, in order (`{path: 1 | -1}`).
    pub sort: Document,
    /// Time zone for dates.
    pub time_zone: chrono_tz::Tz,
}

/// An export job that passed [`Export::check_all`]: the job as it is
/// enqueued, with its typed parts. Only validation makes one (its fields
/// are private), so whoever holds one may enqueue it without checking it
/// again ([`crate::Producer::enqueue_checked_export`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedExport {
    job: Export,
    valid: ValidExport,
}

impl CheckedExport {
    /// The job, as it is enqueued.
    pub fn job(&self) -> &Export {
        &self.job
    }

    /// Its typed parts.
    pub fn valid(&self) -> &ValidExport {
        &self.valid
    }

    /// The typed parts alone.
    pub fn into_valid(self) -> ValidExport {
        self.valid
    }
}

fn check_path(field: &'static str, path: &str) -> Result<(), ValidationError> {
    let ok = !path.is_empty()
        && path.len() <= PATH_MAX_BYTES
        && path
            .split('.')
            .all(|segment| !segment.is_empty() && !segment.starts_with('$'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("'{path}' is not a document path like 'name' or 'profile.city'"),
        ))
    }
}

impl Export {
    /// Checks every field; returns the typed export or the first error,
    /// naming its field.
    pub fn validate(&self, limits: &ExportLimits) -> Result<ValidExport, ValidationError> {
        self.validate_all(limits)
            .map_err(|mut errors| errors.remove(0))
    }

    /// [`Export::validate_all`], keeping the job with its typed parts:
    /// what an API that validated a job hands on to be enqueued.
    pub fn check_all(self, limits: &ExportLimits) -> Result<CheckedExport, Vec<ValidationError>> {
        let valid = self.validate_all(limits)?;
        Ok(CheckedExport { job: self, valid })
    }

    /// Checks every field; returns the typed export or every error found
    /// (at least one), each naming its field.
    pub fn validate_all(&self, limits: &ExportLimits) -> Result<ValidExport, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let account = keep(
            &mut errors,
            parse_object_id("accountId", &self.account_id).map(AccountId::from),
        );
        let key = keep(&mut errors, ExportKey::parse(&self.key));
        keep(&mut errors, check_collection(&self.collection, limits));
        let filter = keep(&mut errors, check_filter(&self.filter, &limits.filter));
        keep(&mut errors, check_fields(&self.fields, limits.max_fields));
        let sort = keep(&mut errors, sort_document(&self.sort));
        let time_zone = keep(
            &mut errors,
            match &self.time_zone {
                None => Ok(limits.default_time_zone),
                Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                    ValidationError::new(
                        "timeZone",
                        format!("'{name}' is not an IANA time zone like 'Asia/Shanghai'"),
                    )
                }),
            },
        );
        match (account, key, filter, sort, time_zone) {
            (Some(account), Some(key), Some(filter), Some(sort), Some(time_zone))
                if errors.is_empty() =>
            {
                Ok(ValidExport {
                    account,
                    key,
                    collection: self.collection.clone(),
                    filter,
                    fields: self.fields.clone(),
                    sort,
                    time_zone,
                })
            }
            _ => Err(errors),
        }
    }
}

fn check_key(key: &str) -> Result<(), ValidationError> {
    let ok = !key.is_empty() && key.len() <= KEY_MAX_LEN && key.chars().all(is_key_char);
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "key",
            format!("'{key}' must be 1-64 letters, digits, '-' or '_'"),
        ))
    }
}

fn check_collection(collection: &str, limits: &ExportLimits) -> Result<(), ValidationError> {
    if limits.collections.contains(collection) {
        return Ok(());
    }
    let allowed: Vec<&str> = limits.collections.iter().map(String::as_str).collect();
    Err(ValidationError::new(
        "collection",
        format!(
            "'{collection}' is not on the export allow-list ({})",
            if allowed.is_empty() {
                "empty".to_owned()
            } else {
                allowed.join(", ")
            }
        ),
    ))
}

fn check_filter(
    filter: &serde_json::Value,
    policy: &FilterPolicy,
) -> Result<Document, ValidationError> {
    let filter = match Bson::try_from(filter.clone()) {
        Ok(Bson::Document(doc)) => doc,
        Ok(_) => return Err(ValidationError::new("filter", "must be a JSON object")),
        Err(e) => {
            return Err(ValidationError::new(
                "filter",
                format!("is not valid extended JSON: {e}"),
            ))
        }
    };
    policy.check(&filter)?;
    Ok(filter)
}

fn check_fields(fields: &[ExportField], max_fields: usize) -> Result<(), ValidationError> {
    if fields.is_empty() {
        return Err(ValidationError::new(
            "fields",
            "must name at least one field",
        ));
    }
    if fields.len() > max_fields {
        return Err(ValidationError::new(
            "fields",
            format!(
                "names {} columns, over the limit of {max_fields} (export.max_fields)",
                fields.len()
            ),
        ));
    }
    for field in fields {
        check_path("fields.path", &field.path)?;
        if field.title.trim().is_empty() {
            return Err(ValidationError::new(
                "fields.title",
                format!("the column for '{}' needs a title", field.path),
            ));
        }
        if field.title.len() > TITLE_MAX_BYTES {
            return Err(ValidationError::new(
                "fields.title",
                format!(
                    "the title of '{}' is {} bytes, over the limit of {TITLE_MAX_BYTES}",
                    field.path,
                    field.title.len()
                ),
            ));
        }
    }
    Ok(())
}

fn sort_document(keys: &[ExportSort]) -> Result<Document, ValidationError> {
    let mut sort = Document::new();
    for key in keys {
        check_path("sort.path", &key.path)?;
        let direction = match key.order.parse::<SortOrder>() {
            Ok(SortOrder::Asc) => 1,
            Ok(SortOrder::Desc) => -1,
            Err(reason) => return Err(ValidationError::new("sort.order", reason)),
        };
        sort.insert(key.path.clone(), direction);
    }
    Ok(sort)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> ExportLimits {
        ExportLimits::new(
            ["customer".to_owned()].into_iter().collect(),
            chrono_tz::Asia::Shanghai,
        )
    }

    fn export() -> Export {
        serde_json::from_value(json!({
            "accountId": "5f0c8a3e2b1d4c0012345678",
            "key": "exp-1",
            "collection": "customer",
            "filter": { "createdAt": { "$gte": { "$date": "2026-01-01T00:00:00Z" } } },
            "fields": [ { "path": "name", "title": "Name" }, { "path": "profile.city", "title": "City" } ],
            "sort": [ { "path": "createdAt", "order": "desc" }, { "path": "name" } ]
        }))
        .unwrap()
    }

    fn field_of(job: Export) -> &'static str {
        job.validate(&limits()).unwrap_err().field
    }

    #[test]
    fn a_good_export_validates_with_extended_json_and_ordered_sort() {
        let valid = export().validate(&limits()).unwrap();
        assert!(matches!(
            valid.filter.get_document("createdAt").unwrap().get("$gte"),
            Some(Bson::DateTime(_))
        ));
        let sort: Vec<(&String, &Bson)> = valid.sort.iter().collect();
        assert_eq!(sort[0], (&"createdAt".to_owned(), &Bson::Int32(-1)));
        assert_eq!(sort[1], (&"name".to_owned(), &Bson::Int32(1)));
        assert_eq!(valid.time_zone, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn a_checked_export_keeps_the_job_and_its_typed_parts_or_every_error() {
        let checked = export().check_all(&limits()).unwrap();
        assert_eq!(checked.job(), &export());
        assert_eq!(checked.valid(), &export().validate(&limits()).unwrap());
        let mut bad = export();
        bad.collection = "user".into();
        bad.key = String::new();
        assert_eq!(bad.check_all(&limits()).unwrap_err().len(), 2);
    }

    #[test]
    fn collections_off_the_allow_list_are_refused() {
        let mut job = export();
        job.collection = "user".into();
        let err = job.validate(&limits()).unwrap_err();
        assert_eq!(err.field, "collection");
        assert!(err.reason.contains("allow-list"), "{err}");
    }

    #[test]
    fn javascript_operators_are_refused_at_any_depth() {
        for filter in [
            json!({ "$where": "this.a > 1" }),
            json!({ "$expr": { "$function": { "body": "x", "args": [], "lang": "js" } } }),
            json!({ "$or": [ { "a": 1 }, { "$where": "1" } ] }),
            json!({ "g": { "$accumulator": {} } }),
        ] {
            let mut job = export();
            job.filter = filter.clone();
            let err = job.validate(&limits()).unwrap_err();
            assert_eq!(err.field, "filter", "{filter}");
            assert!(err.reason.contains("JavaScript"), "{err}");
        }
    }

    #[test]
    fn too_many_columns_or_long_titles_are_refused() {
        let mut job = export();
        job.fields = (0..=DEFAULT_MAX_FIELDS)
            .map(|i| ExportField {
                path: format!("f{i}"),
                title: format!("F{i}"),
            })
            .collect();
        let err = job.validate(&limits()).unwrap_err();
        assert_eq!(err.field, "fields");
        assert!(err.reason.contains("export.max_fields"), "{err}");
        let mut job = export();
        job.fields[0].title = "t".repeat(TITLE_MAX_BYTES + 1);
        assert_eq!(field_of(job), "fields.title");
    }

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let a = ExportKey::generate();
        assert_eq!(ExportKey::parse(a.as_str()), Ok(a.clone()));
        assert_ne!(a, ExportKey::generate());
    }

    #[test]
    fn bad_fields_sorts_keys_and_zones_name_their_field() {
        let mut job = export();
        job.fields.clear();
        assert_eq!(field_of(job), "fields");
        let mut job = export();
        job.fields[0].path = "a..b".into();
        assert_eq!(field_of(job), "fields.path");
        let mut job = export();
        job.fields[0].title = " ".into();
        assert_eq!(field_of(job), "fields.title");
        let mut job = export();
        job.sort[0].order = "up".into();
        assert_eq!(field_of(job), "sort.order");
        let mut job = export();
        job.key = "../etc".into();
        assert_eq!(field_of(job), "key");
        let mut job = export();
        job.time_zone = Some("Mars/Olympus".into());
        assert_eq!(field_of(job), "timeZone");
        let mut job = export();
        job.filter = json!([1, 2]);
        assert_eq!(field_of(job), "filter");
        let mut job = export();
        job.account_id = "x".into();
        assert_eq!(field_of(job), "accountId");
    }
}
