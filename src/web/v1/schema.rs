//! The rules of the producers' API as JSON Schema, built from what the
//! server checks: the ObjectId pattern, key and path rules and the export
//! keys of `herald_jobs`, the enums' lists of values, and the settings
//! (`message.max_*_bytes`, `export.collections`). [`Rules`] writes them
//! into the OpenAPI document at start-up, so the document states exactly
//! the rules the running server enforces.
//!
//! Two rules JSON Schema cannot state are in descriptions only: byte limits
//! (a `maxLength` counts characters, so it is set to the byte limit over 4,
//! which no UTF-8 string of that many characters exceeds), and `to.id`
//! equal to `accountId` when `to.target` is `account`.

use herald_jobs::{
    export::{
        key_pattern, EXTENDED_JSON_KEYS, FORBIDDEN_OPERATORS, KEY_MAX_LEN, PATH_MAX_BYTES,
        PATH_PATTERN,
    },
    ids::OBJECT_ID_PATTERN,
    message::SYSTEM_SENDER_ID,
    ExportLimits, MessageLimits, MessageStatus, RecipientTarget, SenderFrom, SortOrder,
};
use utoipa::openapi::{
    path::{Operation, Parameter},
    response::ResponseBuilder,
    schema::{AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type},
    ContentBuilder, OpenApi, Ref, RefOr, Schema,
};

use crate::store::inbox::MAX_PAGE_SIZE;

/// Bytes of UTF-8 one character may take: a byte limit over this is a
/// character limit no string under it can break.
const MAX_UTF8_BYTES: usize = 4;

/// A string with at least one character that is not white space: what
/// "must not be blank" means (`str::trim` leaves something).
const NOT_BLANK_PATTERN: &str = r"\S";

/// Query operators a filter may name; any other key starting with `$` is
/// left out of the document (extended-JSON type keys and the JavaScript
/// operators are refused or read as typed values, see [`EXTENDED_JSON_KEYS`]
/// and [`FORBIDDEN_OPERATORS`]).
const FILTER_OPERATORS: [&str; 22] = [
    "and",
    "or",
    "nor",
    "not",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "exists",
    "type",
    "regex",
    "options",
    "elemMatch",
    "size",
    "all",
    "mod",
    "expr",
    "comment",
];

/// The settings-dependent rules of the API.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// Message size limits.
    pub message: &'a MessageLimits,
    /// Export allow-list.
    pub export: &'a ExportLimits,
}

fn object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn object_id(description: &str) -> Schema {
    string(description)
        .pattern(Some(OBJECT_ID_PATTERN))
        .examples(["5f0c8a3e2b1d4c0012345678"])
        .into()
}

fn one_of(values: impl IntoIterator<Item = &'static str>, description: &str) -> Schema {
    string(description).enum_values(Some(values)).into()
}

fn not_blank(description: &str) -> ObjectBuilder {
    string(description)
        .min_length(Some(1))
        .pattern(Some(NOT_BLANK_PATTERN))
}

/// A string of at most `max_bytes` bytes of UTF-8, stated as characters.
fn bytes_limited(builder: ObjectBuilder, max_bytes: usize) -> Schema {
    builder.max_length(Some(max_bytes / MAX_UTF8_BYTES)).into()
}

/// Exactly one of `options`.
fn choice(options: impl Iterator<Item = ObjectBuilder>, description: &str) -> Schema {
    options
        .fold(OneOfBuilder::new(), OneOfBuilder::item)
        .description(Some(description))
        .into()
}

fn account_in_body() -> Schema {
    object_id(
        "The account, 24-hex. Required with a token that is not bound to an account; \
         with a bound token it may be left out and, when given, must be the token's account.",
    )
}

fn message_request(limits: &MessageLimits) -> Schema {
    let senders = SenderFrom::ALL.iter().map(|from| {
        let id = match from {
            SenderFrom::System => string("`system`, or an ObjectId some producers use for it")
                .pattern(Some(format!(
                    "^({SYSTEM_SENDER_ID}|{})$",
                    OBJECT_ID_PATTERN
                        .trim_start_matches('^')
                        .trim_end_matches('$')
                )))
                .into(),
            SenderFrom::User => object_id("The user, 24-hex"),
        };
        object()
            .property("id", id)
            .property("from", one_of([from.as_str()], "Who sent it"))
            .required("id")
            .required("from")
    });
    let recipients = RecipientTarget::ALL.iter().map(|target| {
        let id = match target {
            RecipientTarget::Account => object_id("The account: must equal `accountId`"),
            RecipientTarget::User => object_id("The user, 24-hex"),
        };
        object()
            .property("id", id)
            .property("target", one_of([target.as_str()], "Who receives it"))
            .required("id")
            .required("target")
    });
    object()
        .description(Some("A message to store and push."))
        .property(
            "messageId",
            object_id("`_id` of the document, 24-hex; generated when absent"),
        )
        .property("accountId", account_in_body())
        .property(
            "title",
            bytes_limited(
                not_blank(&format!(
                    "Headline; not blank, at most {} bytes of UTF-8",
                    limits.max_title_bytes
                )),
                limits.max_title_bytes,
            ),
        )
        .property(
            "content",
            bytes_limited(
                string(&format!(
                    "Body, may hold HTML; at most {} bytes of UTF-8",
                    limits.max_content_bytes
                )),
                limits.max_content_bytes,
            ),
        )
        .property(
            "sender",
            choice(senders, "Who sent it (default: the system)"),
        )
        .property(
            "to",
            choice(
                recipients,
                "Who receives it (default: the whole account); `to.id` must equal \
                 `accountId` when `to.target` is `account`",
            ),
        )
        .property(
            "status",
            one_of(
                MessageStatus::ALL.iter().map(|s| s.as_str()),
                "Shown with the message (default `success`)",
            ),
        )
        .required("accountId")
        .required("title")
        .required("content")
        .into()
}

fn document_path(description: &str) -> Schema {
    string(&format!(
        "{description}: dot-separated segments, none empty or starting with `$`; \
         at most {PATH_MAX_BYTES} bytes of UTF-8"
    ))
    .pattern(Some(PATH_PATTERN))
    .max_length(Some(PATH_MAX_BYTES / MAX_UTF8_BYTES))
    .into()
}

fn filter_key_pattern() -> String {
    format!("^([^$].*|\\$({}))$", FILTER_OPERATORS.join("|"))
}

/// `Filter` (an object) and `FilterValue` (what its keys hold), which
/// refer to each other.
fn filter_schemas() -> [(&'static str, Schema); 2] {
    let filter = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "MongoDB extended JSON, narrowed to the account. Refused anywhere in it: {}; \
             the keys {} are read as typed values and must be in their exact form.",
            FORBIDDEN_OPERATORS.join(", "),
            EXTENDED_JSON_KEYS.join(", ")
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(filter_key_pattern())),
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

fn export_request(limits: &ExportLimits) -> Schema {
    let field = object()
        .property("path", document_path("Document path"))
        .property("title", not_blank("Column title; not blank"))
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
        .description(Some("An export to run."))
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
                .description(Some("Columns in order; at least one")),
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
        .required("accountId")
        .required("collection")
        .required("fields")
        .into()
}

/// The schema of a path or query parameter named `name`, or `None` for a
/// parameter without a rule of its own (`cursor`: whatever a page returned).
fn parameter_schema(name: &str) -> Option<Schema> {
    Some(match name {
        "accountId" => object_id("The account, 24-hex"),
        "messageId" => object_id("The message, 24-hex"),
        "to" => object_id("Only messages whose `to.id` is this id"),
        "forUser" => object_id("Only what this user sees: messages to the account and to them"),
        "key" => string("The export key")
            .pattern(Some(key_pattern()))
            .max_length(Some(KEY_MAX_LEN))
            .into(),
        "isRead" => one_of(
            ["true", "false"],
            "`true` for read messages only, `false` for unread only",
        ),
        "status" => one_of(
            MessageStatus::ALL.iter().map(|s| s.as_str()),
            "Only messages with this status",
        ),
        "limit" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_PAGE_SIZE))
            .description(Some("Messages per page (default 20)"))
            .into(),
        _ => return None,
    })
}

fn apply_to_operation(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        apply_to_parameter(parameter);
    }
    // Every route answers 503 when Redis or MongoDB fails (Problem::unavailable).
    operation.responses.responses.insert(
        "503".to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description("A service Herald needs (Redis, MongoDB) failed; try again")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemBody")))
                        .build(),
                )
                .build(),
        ),
    );
}

fn apply_to_parameter(parameter: &mut Parameter) {
    if let Some(schema) = parameter_schema(&parameter.name) {
        parameter.schema = Some(RefOr::T(schema));
    }
}

impl Rules<'_> {
    /// Writes the rules into `openapi`: the request bodies' schemas and
    /// every parameter's.
    pub fn apply(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemas = [
            ("MessageRequest", message_request(self.message)),
            ("ExportRequest", export_request(self.export)),
        ]
        .into_iter()
        .chain(filter_schemas());
        for (name, schema) in schemas {
            components.schemas.insert(name.to_owned(), RefOr::T(schema));
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                apply_to_operation(operation);
            }
        }
    }
}

/// Schema of the request types with the default settings, for the paths
/// that name them; [`Rules::apply`] puts the running settings' in.
macro_rules! request_schema {
    ($type:ty, $schema:expr) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                RefOr::T($schema)
            }
        }

        impl utoipa::ToSchema for $type {
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                schemas.extend(
                    filter_schemas()
                        .into_iter()
                        .map(|(name, schema)| (name.to_owned(), RefOr::T(schema))),
                );
            }
        }
    };
}

request_schema!(
    super::messages::MessageRequest,
    message_request(&MessageLimits::default())
);
request_schema!(
    super::exports::ExportRequest,
    export_request(&ExportLimits {
        collections: Default::default(),
        default_time_zone: chrono_tz::UTC,
    })
);

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        let message = MessageLimits::default();
        let export = ExportLimits {
            collections: ["message".to_owned(), "customer".to_owned()]
                .into_iter()
                .collect(),
            default_time_zone: chrono_tz::UTC,
        };
        let api = super::super::document(&Rules {
            message: &message,
            export: &export,
        });
        serde_json::to_value(api).expect("the document is JSON")
    }

    #[test]
    fn every_parameter_but_the_cursor_states_its_rule() {
        let document = document();
        if std::env::var_os("HERALD_PRINT_OPENAPI").is_some() {
            println!("{document:#}");
        }
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let name = parameter["name"].as_str().expect("a name");
                    let schema = &parameter["schema"];
                    let stated = ["pattern", "enum", "maximum"]
                        .iter()
                        .any(|rule| !schema[rule].is_null());
                    assert!(
                        stated || name == "cursor",
                        "{method} {path}: {name} has no rule: {schema}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_settings_are_in_the_request_schemas() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let export = &schemas["ExportRequest"]["properties"];
        assert_eq!(
            export["collection"]["enum"],
            serde_json::json!(["customer", "message"])
        );
        assert_eq!(export["fields"]["minItems"], 1);
        assert_eq!(export["key"]["maxLength"], KEY_MAX_LEN);
        let message = &schemas["MessageRequest"]["properties"];
        assert_eq!(
            message["content"]["maxLength"],
            herald_jobs::message::DEFAULT_MAX_CONTENT_BYTES / MAX_UTF8_BYTES
        );
        assert_eq!(
            message["status"]["enum"],
            serde_json::json!(["warning", "error", "success"])
        );
        for name in ["SenderBody", "RecipientBody", "FieldBody", "SortBody"] {
            assert!(schemas[name].is_null(), "{name} is inlined");
        }
    }
}
