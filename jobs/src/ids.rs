//! ObjectId newtypes.
//!
//! MongoDB ObjectIds travel as 24-character hex strings in job payloads. Each
//! kind of id gets its own type so an account id can never be passed where a
//! user id is expected; all of them are parsed once, at the edge.

use std::{fmt, str::FromStr};

use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// What [`parse_object_id`] accepts, as a regular expression: 24 hex
/// digits in either case. The OpenAPI document states it on every id.
pub const OBJECT_ID_PATTERN: &str = "^[0-9a-fA-F]{24}$";

/// Parses a 24-character hex ObjectId, naming `field` in the error.
pub fn parse_object_id(field: &'static str, hex: &str) -> Result<ObjectId, ValidationError> {
    ObjectId::parse_str(hex).map_err(|_| {
        ValidationError::new(field, format!("'{hex}' is not a 24-character hex ObjectId"))
    })
}

macro_rules! object_id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(ObjectId);

        impl $name {
            /// Parses a 24-character hex string.
            pub fn parse(hex: &str) -> Result<Self, ValidationError> {
                parse_object_id($field, hex).map(Self)
            }

            /// The underlying BSON ObjectId.
            pub fn object_id(&self) -> ObjectId {
                self.0
            }

            /// The 24-character lowercase hex form.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
        }

        impl From<ObjectId> for $name {
            fn from(oid: ObjectId) -> Self {
                Self(oid)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_hex()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.to_hex())
            }
        }
    };
}

object_id_type!(
    /// The id of an SCRM account (a tenant). Every message and export belongs to one.
    AccountId,
    "accountId"
);
object_id_type!(
    /// The id of a user inside an account.
    UserId,
    "userId"
);
object_id_type!(
    /// The `_id` of a message document. Fixed when the job is created, so every
    /// retry of the job refers to the same document.
    MessageId,
    "messageId"
);

impl MessageId {
    /// A fresh id, as a producer makes one when it creates a job.
    pub fn generate() -> Self {
        Self(ObjectId::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_hex_in_any_case() {
        let id = AccountId::parse("5F0C8A3E2B1D4C0012345678").unwrap();
        assert_eq!(id.to_hex(), "5f0c8a3e2b1d4c0012345678");
    }

    #[test]
    fn rejects_short_and_non_hex_strings_naming_the_field() {
        for bad in [
            "",
            "abc",
            "5f0c8a3e2b1d4c001234567g",
            "5f0c8a3e2b1d4c00123456780",
        ] {
            let err = AccountId::parse(bad).unwrap_err();
            assert_eq!(err.field, "accountId");
            assert!(err.reason.contains("24-character hex"), "{err}");
        }
    }

    #[test]
    fn generated_message_ids_are_distinct() {
        assert_ne!(MessageId::generate(), MessageId::generate());
    }
}
