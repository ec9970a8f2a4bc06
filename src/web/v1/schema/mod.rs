//! The rules of the producers' API as JSON Schema, built from what the
//! server checks: the ObjectId pattern, key and path rules and the export
//! keys of `herald_jobs`, the enums' lists of values, and the settings
//! (`message.max_*_bytes`, `export.collections`). [`Rules`] writes them
//! into the OpenAPI document at start-up, so the document states exactly
//! the rules the running server enforces.
//!
//! The rules JSON Schema cannot state are in descriptions (and, for the
//! fuzz test, in `tests/integration/openapi_fuzz/hooks.py`):
//!
//! - byte limits: `maxLength` counts characters, so it is the byte limit
//!   (no longer string fits), and the limit in bytes is in the description
//!   and in `x-maxUtf8Bytes`;
//! - `to.id` equal to `accountId` (or, without it, to the token's account)
//!   when `to.target` is `account`: a relation between two values;
//! - `accountId` required with a token not bound to an account only: the
//!   schema cannot see the token, so the property is optional there;
//!
//! Optional body properties are typed as their value alone, never
//! nullable, and the server refuses `null` ([`super::fields::not_null`]).
//!
//! The bodies' schemas are in [`message`] and [`export`]; here are the
//! pieces they share, the parameters' rules and [`Rules`].

mod export;
mod message;
mod selection;

use herald_jobs::{
    export::{key_pattern, KEY_MAX_LEN},
    ids::OBJECT_ID_PATTERN,
    ExportLimits, MessageLimits, MessageStatus,
};
use utoipa::openapi::{
    path::{Operation, Parameter},
    response::ResponseBuilder,
    schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type},
    ContentBuilder, OpenApi, Ref, RefOr, Schema,
};

use export::{export_request, filter_schemas};
use message::message_request;
use selection::selection_request;

use crate::store::inbox::MAX_PAGE_SIZE;

/// The extension stating a string's limit in bytes of UTF-8, which no
/// JSON Schema keyword counts (`maxLength` counts characters).
pub const MAX_UTF8_BYTES_EXTENSION: &str = "x-maxUtf8Bytes";

/// The extension naming how far ahead of the server's clock a date-time
/// may be, in seconds (`sendAt`): a rule relative to now, which JSON
/// Schema cannot state. The fuzz test's hooks read it.
pub const MAX_SECONDS_AHEAD_EXTENSION: &str = "x-maxSecondsAhead";

/// The extension stating a value's limit in bytes of its JSON (`data`),
/// which no JSON Schema keyword counts. The fuzz test's hooks read it.
pub const MAX_JSON_BYTES_EXTENSION: &str = "x-maxJsonBytes";

/// A string with at least one character that is not white space: what
/// "must not be blank" means (`str::trim` leaves something).
const NOT_BLANK_PATTERN: &str = r"\S";

/// The settings-dependent rules of the API.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// Message size limits.
    pub message: &'a MessageLimits,
    /// Export allow-list.
    pub export: &'a ExportLimits,
    /// Each user's channel (`push.user_channel`).
    pub users: &'a crate::push::UserChannels,
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

/// A string of at most `max_bytes` bytes of UTF-8. `maxLength` is
/// `max_bytes` characters, as many as `max_bytes` bytes hold at most: every
/// longer string is refused, as the document says, and within it a string
/// of ASCII always passes while other text may take more bytes than
/// characters, which the description and [`MAX_UTF8_BYTES_EXTENSION`]
/// state (the fuzz test's hooks keep to it).
fn bytes_limited(builder: ObjectBuilder, max_bytes: usize) -> Schema {
    builder
        .max_length(Some(max_bytes))
        .extensions(Some(
            [(MAX_UTF8_BYTES_EXTENSION, serde_json::Value::from(max_bytes))]
                .into_iter()
                .collect(),
        ))
        .into()
}

/// Exactly one of `options`.
fn choice(options: impl Iterator<Item = ObjectBuilder>, description: &str) -> Schema {
    options
        .fold(OneOfBuilder::new(), OneOfBuilder::item)
        .description(Some(description))
        .into()
}

/// `accountId` in a body. Not in `required`: a token bound to an account
/// may leave it out (the usual producer), and whether a request needs it
/// depends on its token, which no schema can see; the description says so.
fn account_in_body() -> Schema {
    object_id(
        "The account, 24-hex. Required with a token that is not bound to an account \
         (400 naming `accountId` without it); with a bound token it may be left out and, \
         when given, must be the token's account (403 otherwise).",
    )
}

// Every cursor, and the empty string (the first page): exactly what
// `PageCursor` decodes.
use crate::store::inbox::CURSOR_PATTERN;

/// The schema of a path or query parameter named `name`, or `None` for a
/// parameter without a rule of its own.
fn parameter_schema(name: &str) -> Option<Schema> {
    Some(match name {
        // Every string of the pattern is a position (one no page made
        // just starts a page somewhere), so the pattern is the whole rule.
        "cursor" => string(
            "`nextCursor` of the previous page, unchanged (the page after it). Empty or left \
             out: the first page.",
        )
        .pattern(Some(CURSOR_PATTERN))
        .into(),
        "accountId" => object_id("The account, 24-hex"),
        "messageId" => object_id("The message, 24-hex"),
        "to" => object_id("Only messages whose `to.id` is this id"),
        "userId" => object_id("The user, 24-hex"),
        "key" => string("The export key")
            .pattern(Some(key_pattern()))
            .max_length(Some(KEY_MAX_LEN))
            .into(),
        "isRead" => one_of(
            ["true", "false"],
            "`true` for read messages only, `false` for unread only",
        ),
        "archived" => one_of(
            ["true", "false"],
            "`true` for the user's archive instead of their inbox (default `false`)",
        ),
        "status" => one_of(
            MessageStatus::ALL.iter().map(|s| s.as_str()),
            "Only messages with this status",
        ),
        "category" => string("Only messages of this category: 1 to 32 letters, digits or `_ . -`")
            .pattern(Some(herald_jobs::message::CATEGORY_PATTERN))
            .into(),
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

/// Sets `pattern` on the string property `property` of the component
/// schema `schema` (on its items, for an array with `items` given).
fn set_pattern(
    components: &mut utoipa::openapi::Components,
    schema: &str,
    property: &str,
    items: Option<()>,
    pattern: String,
) {
    use utoipa::openapi::schema::{ArrayItems, Schema as S};
    let Some(RefOr::T(S::Object(object))) = components.schemas.get_mut(schema) else {
        return;
    };
    match (object.properties.get_mut(property), items) {
        (Some(RefOr::T(S::Object(string))), None) => string.pattern = Some(pattern),
        (Some(RefOr::T(S::Array(array))), Some(())) => {
            if let ArrayItems::RefOrSchema(item) = &mut array.items {
                if let RefOr::T(S::Object(string)) = item.as_mut() {
                    string.pattern = Some(pattern);
                }
            }
        }
        _ => {}
    }
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
        .chain(filter_schemas(&self.export.filter));
        for (name, schema) in schemas {
            components.schemas.insert(name.to_owned(), RefOr::T(schema));
        }
        let channels = format!(
            "^(presence-message-wm-global[0-9a-f]{{24}}|{})$",
            self.users
                .pattern()
                .trim_start_matches('^')
                .trim_end_matches('$')
        );
        set_pattern(components, "PushAuthRequest", "channelName", None, channels);
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
                    filter_schemas(&herald_jobs::FilterPolicy::default())
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
request_schema!(super::inbox_actions::SelectionRequest, selection_request());
request_schema!(
    super::exports::ExportRequest,
    export_request(&ExportLimits::new(Default::default(), chrono_tz::UTC))
);

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        let message = MessageLimits::default();
        let export = ExportLimits::new(
            ["message".to_owned(), "customer".to_owned()]
                .into_iter()
                .collect(),
            chrono_tz::UTC,
        );
        let users = crate::push::UserChannels::default();
        let api = super::super::document(&Rules {
            message: &message,
            export: &export,
            users: &users,
        });
        serde_json::to_value(api).expect("the document is JSON")
    }

    #[test]
    fn every_parameter_states_its_rule() {
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
                    assert!(stated, "{method} {path}: {name} has no rule: {schema}");
                }
            }
        }
    }

    /// The names of the parameters of `method` `path`.
    fn parameters(document: &Value, path: &str, method: &str) -> Vec<String> {
        document["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].as_str().expect("a name").to_owned())
            .collect()
    }

    #[test]
    fn the_document_lists_only_the_parameters_a_route_takes() {
        let document = document();
        let user = "/v1/accounts/{accountId}/users/{userId}/messages";
        assert_eq!(
            parameters(&document, &format!("{user}/unread-count"), "get"),
            ["accountId", "userId", "status", "category"]
        );
        assert_eq!(
            parameters(&document, &format!("{user}/unread-counts"), "get"),
            ["accountId", "userId"]
        );
        assert_eq!(
            parameters(&document, &format!("{user}/read-all"), "post"),
            ["accountId", "userId", "status"]
        );
        assert_eq!(
            parameters(&document, user, "get"),
            [
                "accountId",
                "userId",
                "isRead",
                "status",
                "category",
                "limit",
                "cursor",
                "archived"
            ]
        );
    }

    #[test]
    fn the_cursor_rule_is_exactly_what_decodes_and_allows_empty() {
        let document = document();
        assert_eq!(CURSOR_PATTERN, "^([0-9a-f]{40})?$");
        let real =
            crate::store::inbox::PageCursor::decode("0000018bcfe568005f0c8a3e2b1d4c0012345678")
                .expect("a cursor")
                .encode();
        assert_eq!(real, "0000018bcfe568005f0c8a3e2b1d4c0012345678");
        for path in [
            "/v1/accounts/{accountId}/messages",
            "/v1/accounts/{accountId}/users/{userId}/messages",
        ] {
            let cursor = document["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == "cursor")
                .expect("a cursor parameter");
            assert_eq!(cursor["schema"]["pattern"], CURSOR_PATTERN, "{path}");
            // The empty cursor is the first page: no minimum length.
            assert!(cursor["schema"]["minLength"].is_null(), "{path}");
        }
    }

    #[test]
    fn optional_properties_are_not_nullable_and_the_token_decides_on_the_account() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let bodies = schemas["MessageRequest"]["anyOf"]
            .as_array()
            .expect("alternatives")
            .iter()
            .chain([&schemas["ExportRequest"]]);
        for body in bodies {
            let required = body["required"].as_array().expect("required");
            assert!(!required.contains(&Value::from("accountId")), "{body}");
            let account = body["properties"]["accountId"]["description"]
                .as_str()
                .expect("a description");
            assert!(account.contains("not bound to an account"), "{account}");
            for (name, property) in body["properties"].as_object().expect("properties") {
                // `data` may hold nulls: they are values inside it, not it.
                if name == "data" {
                    continue;
                }
                assert!(
                    !property.to_string().contains("\"null\""),
                    "{name} may be null: {property}"
                );
            }
        }
        let message = &schemas["MessageRequest"];
        assert!(message["description"]
            .as_str()
            .is_some_and(|d| d.contains("`to.id` must equal `accountId`")));
        let to = &message["anyOf"][0]["properties"]["to"];
        let account = to["oneOf"]
            .as_array()
            .expect("recipients")
            .iter()
            .find(|r| r["properties"]["target"]["enum"] == serde_json::json!(["account"]))
            .expect("the account recipient");
        assert!(account["properties"]["id"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("must equal `accountId`")));
    }

    #[test]
    fn a_filter_key_holds_no_nul() {
        let pattern = export::filter_key_pattern(&herald_jobs::FilterPolicy::default());
        // A field name (or none): not starting with `$`, no NUL anywhere.
        assert!(
            pattern.starts_with(r"^([^$\x00][^\x00]*|\$(") && pattern.ends_with("))?$"),
            "{pattern}"
        );
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
        let alternatives = &schemas["MessageRequest"]["anyOf"];
        let message = &alternatives[0]["properties"];
        assert_eq!(
            message["content"]["maxLength"],
            herald_jobs::message::DEFAULT_MAX_CONTENT_BYTES
        );
        assert_eq!(
            message["content"][MAX_UTF8_BYTES_EXTENSION],
            herald_jobs::message::DEFAULT_MAX_CONTENT_BYTES
        );
        let field = &export["fields"]["items"]["properties"];
        for limited in [&field["title"], &field["path"]] {
            assert_eq!(limited["maxLength"], limited[MAX_UTF8_BYTES_EXTENSION]);
        }
        assert_eq!(
            message["status"]["enum"],
            serde_json::json!(["warning", "error", "success"])
        );
        for name in ["SenderBody", "RecipientBody", "FieldBody", "SortBody"] {
            assert!(schemas[name].is_null(), "{name} is inlined");
        }
        // The id one way or the other, never both.
        let keyed = &alternatives[1]["properties"];
        assert_eq!(
            keyed["idempotencyKey"]["pattern"],
            herald_jobs::ids::IDEMPOTENCY_KEY_PATTERN
        );
        assert!(message["idempotencyKey"].is_null() && keyed["messageId"].is_null());
        assert!(!message["messageId"].is_null());
        for alternative in alternatives.as_array().unwrap() {
            assert_eq!(alternative["additionalProperties"], false);
        }
        assert_eq!(
            export["fields"]["maxItems"],
            herald_jobs::export::DEFAULT_MAX_FIELDS
        );
        let channel = schemas["PushAuthRequest"]["properties"]["channelName"]["pattern"]
            .as_str()
            .expect("a channel pattern");
        assert!(channel.contains("presence-message-wm-global"), "{channel}");
        assert!(channel.contains("private-message-wm-user-"), "{channel}");
        let selection = &schemas["SelectionRequest"]["oneOf"];
        assert_eq!(
            selection[0]["properties"]["ids"]["items"]["pattern"],
            OBJECT_ID_PATTERN
        );
        assert_eq!(selection[0]["required"], serde_json::json!(["ids"]));
        assert_eq!(selection[1]["required"], serde_json::json!(["filter"]));
        assert_eq!(
            selection[1]["properties"]["filter"]["additionalProperties"],
            false
        );
        // The filter's keys are the allowed operators: $expr is not one.
        let keys = schemas["Filter"]["propertyNames"]["pattern"]
            .as_str()
            .expect("a key pattern");
        assert!(
            keys.contains("elemMatch") && !keys.contains("expr"),
            "{keys}"
        );
    }
}
