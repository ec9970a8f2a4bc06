//! The body of a user's inbox actions ([`crate::web::v1::inbox_actions`]):
//! message ids, or a filter; exactly one of the two.

use herald_jobs::{ids::OBJECT_ID_PATTERN, message::CATEGORY_PATTERN, MessageStatus};
use utoipa::openapi::{
    schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type},
    Schema,
};

use super::{choice, object, one_of, string};
use crate::store::inbox::MAX_ACTION_IDS;

fn boolean(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .description(Some(description))
}

/// `{"ids": [...]}` or `{"filter": {...}}`.
pub(super) fn selection_request() -> Schema {
    let ids = ArrayBuilder::new()
        .items(
            string("A message, 24-hex")
                .pattern(Some(OBJECT_ID_PATTERN))
                .examples(["5f0c8a3e2b1d4c0012345678"]),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_ACTION_IDS))
        .description(Some(
            "1 to 100 messages. Those the user does not see (another user's, another \
             account's, or deleted) are left out as if they did not exist.",
        ));
    let filter = object()
        .description(Some(
            "Every message of the user's inbox (and archive) matching all the fields given; \
             `{}` matches every one.",
        ))
        .property(
            "status",
            one_of(
                MessageStatus::ALL.iter().map(|s| s.as_str()),
                "Only messages with this status",
            ),
        )
        .property(
            "category",
            string("Only messages of this category: 1 to 32 letters, digits or `_ . -`")
                .pattern(Some(CATEGORY_PATTERN)),
        )
        .property(
            "isRead",
            boolean("Only messages the user read (`true`) or has not (`false`)"),
        )
        .property(
            "archived",
            boolean("Only archived messages (`true`) or those in the inbox (`false`)"),
        )
        .property(
            "olderThan",
            string("Only messages created before this time, RFC 3339")
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        );
    choice(
        [
            object().property("ids", ids).required("ids"),
            object().property("filter", filter).required("filter"),
        ]
        .into_iter(),
        "The messages to act on: `ids`, or every one matching `filter`; exactly one of the two.",
    )
}
