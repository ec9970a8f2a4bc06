//! The schema of `POST /v1/exports`' body, and of its extended-JSON filter.

use herald_jobs::{
    export::{
        key_pattern, EXTENDED_JSON_KEYS, FORBIDDEN_OPERATORS, KEY_MAX_LEN, PATH_MAX_BYTES,
        PATH_PATTERN, TITLE_MAX_BYTES,
    },
    ExportLimits, FilterPolicy, SortOrder,
};
use utoipa::openapi::{
    schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Type},
    Ref, RefOr, Schema,
};

use super::{account_in_body, bytes_limited, not_blank, object, one_of, string};

fn document_path(description: &str) -> Schema {
    bytes_limited(
        string(&format!(
            "{description}: dot-separated segments, none empty or starting with `$`; \
             at most {PATH_MAX_BYTES} bytes of UTF-8"
        ))
        .pattern(Some(PATH_PATTERN)),
        PATH_MAX_BYTES,
    )
}

/// What a filter's keys may be: a field name, or an operator `policy`
/// allows (the extended-JSON type keys are read as values before the
/// operators are checked, so they are not keys here). A field name is any
/// text, the empty one too (MongoDB takes it), but one starting with `$`,
/// without NUL: BSON writes keys as NUL-terminated strings, so a key
/// holding one cannot be sent to MongoDB and is refused.
pub(super) fn filter_key_pattern(policy: &FilterPolicy) -> String {
    const FIELD: &str = r"[^$\x00][^\x00]*";
    let operators: Vec<&str> = policy
        .operators
        .iter()
        .flatten()
        .map(|op| op.trim_start_matches('$'))
        .collect();
    if operators.is_empty() {
        format!("^({FIELD})?$")
    } else {
        format!("^({FIELD}|\\$({}))?$", operators.join("|"))
    }
}

/// `Filter` (an object) and `FilterValue` (what its keys hold), which
/// refer to each other, under `policy`.
pub(super) fn filter_schemas(policy: &FilterPolicy) -> [(&'static str, Schema); 2] {
    let filter = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "MongoDB extended JSON, narrowed to the account. Operators allowed \
             (`export.filter_operators`): {}; refused whatever the settings: {}. At most {} \
             bytes of BSON (`export.max_filter_bytes`), {} levels deep \
             (`export.max_filter_depth`), regular expressions of at most {} bytes \
             (`export.max_regex_bytes`). The keys {} are read as typed values and must be in \
             their exact form.",
            policy
                .operators
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            FORBIDDEN_OPERATORS.join(", "),
            policy.max_bytes,
            policy.max_depth,
            policy.max_regex_bytes,
            EXTENDED_JSON_KEYS.join(", ")
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(filter_key_pattern(policy))),
        ))
        .additional_properties(Some(RefOr::Ref(Ref::from_schema_name("FilterValue"))));
    let value = AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(ArrayBuilder::new().items(RefOr::Ref(Ref::from_schema_name("FilterValue"))))
        .item(RefOr::Ref(Ref::from_schema_name("Filter")));
    [("Filter", filter.into()), ("FilterValue", value.into())]
}

pub(super) fn export_request(limits: &ExportLimits) -> Schema {
    let field = object()
        .property("path", document_path("Document path"))
        .property(
            "title",
            bytes_limited(
                not_blank(&format!(
                    "Column title; not blank, at most {TITLE_MAX_BYTES} bytes of UTF-8"
                )),
                TITLE_MAX_BYTES,
            ),
        )
        .required("path")
        .required("title");
    let sort = object()
        .property("path", document_path("Document path"))
        .property(
            "order",
            one_of(
                SortOrder::ALL.iter().map(|o| o.as_str()),
                "Direction (default `asc`)",
            ),
        )
        .required("path");
    let collections: Vec<String> = limits.collections.iter().cloned().collect();
    object()
        .description(Some(
            "An export to run. An optional property is left out for its default: `null` is \
             refused with 400 naming it.",
        ))
        .property(
            "key",
            string(&format!(
                "The export's id: 1 to {KEY_MAX_LEN} letters, digits, `-` or `_`; generated when absent"
            ))
            .pattern(Some(key_pattern()))
            .max_length(Some(KEY_MAX_LEN)),
        )
        .property("accountId", account_in_body())
        .property(
            "collection",
            string("Source collection, on the allow-list `export.collections`")
                .enum_values(Some(collections)),
        )
        .property(
            "filter",
            RefOr::Ref(Ref::from_schema_name("Filter")),
        )
        .property(
            "fields",
            ArrayBuilder::new()
                .items(field)
                .min_items(Some(1))
                .max_items(Some(limits.max_fields))
                .description(Some(format!(
                    "Columns in order; 1 to {} (`export.max_fields`)",
                    limits.max_fields
                ))),
        )
        .property(
            "sort",
            ArrayBuilder::new()
                .items(sort)
                .description(Some("Sort keys, most significant first")),
        )
        .property(
            "timeZone",
            string("IANA time zone for dates (default `export.time_zone`)")
                .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))),
        )
        .required("collection")
        .required("fields")
        .into()
}
