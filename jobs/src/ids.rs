//! ObjectId newtypes, and the ids Herald makes.
//!
//! MongoDB ObjectIds travel as 24-character hex strings in job payloads. Each
//! kind of id gets its own type so an account id can never be passed where a
//! user id is expected; all of them are parsed once, at the edge.
//!
//! Ids Herald makes must not be guessable: a message's id is its document's
//! `_id`, unique across every account, so an id another tenant could predict
//! is one it could take first. The driver's `ObjectId::new()` is a time, a
//! random value fixed for the whole process and a counter: one id seen gives
//! the next ones away. [`unpredictable_object_id`] keeps the time prefix (ids
//! still sort roughly by creation, as ObjectIds do) and fills the other 8
//! bytes from a cryptographically secure generator for every id.

use std::{fmt, str::FromStr};

use bson::oid::ObjectId;
use rand::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// A new ObjectId that cannot be predicted from any other: the current Unix
/// time in seconds (4 bytes, big-endian, as in every ObjectId) and 8 bytes
/// from the thread's cryptographically secure generator (`rand::rng()`,
/// seeded from the operating system).
pub fn unpredictable_object_id() -> ObjectId {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut bytes = [0u8; 12];
    // ObjectIds carry the time as 32 bits; it wraps in 2106, as theirs does.
    bytes[..4].copy_from_slice(&(seconds as u32).to_be_bytes());
    fill_secure(&mut rand::rng(), &mut bytes[4..]);
    ObjectId::from_bytes(bytes)
}

/// Fills `bytes` from `rng`, which the bound requires to be a
/// cryptographically secure generator.
fn fill_secure<R: Rng + CryptoRng>(rng: &mut R, bytes: &mut [u8]) {
    rng.fill_bytes(bytes);
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
    /// A fresh, unpredictable id ([`unpredictable_object_id`]), as a
    /// producer makes one when it creates a job.
    pub fn generate() -> Self {
        Self(unpredictable_object_id())
    }

    /// The id of `account`'s message whose producer named it `key`: the
    /// first 12 bytes of SHA-256 over a label, the account's 12 bytes and
    /// the key. The same account and key always give the same id (a
    /// retried request stores one message), and two accounts using one key
    /// get two different ids, so no account can choose the id of another
    /// account's message. Its first 4 bytes are not a time: the
    /// document's `createdAt` is.
    pub fn from_idempotency_key(account: AccountId, key: &IdempotencyKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"herald message id v1\0")
            .chain_update(account.object_id().bytes())
            .chain_update(key.as_str().as_bytes())
            .finalize();
        let mut bytes = [0u8; 12];
        bytes.copy_from_slice(&digest[..12]);
        Self(ObjectId::from_bytes(bytes))
    }

    /// The id of this message's job when it is scheduled (`sendAt`): a
    /// ULID holding the message id's 12 bytes, so the job can be found
    /// from the message id alone to recall it
    /// ([`crate::Producer::recall_message`]), and a message scheduled
    /// twice is one job. A message due at once has a fresh id instead
    /// ([`crate::task_order`]), which keeps the order of its queue's
    /// listings.
    pub fn scheduled_job_id(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..12].copy_from_slice(&self.0.bytes());
        ulid::Ulid::from_bytes(bytes).to_string()
    }
}

/// Longest [`IdempotencyKey`], in characters (all ASCII).
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 128;

/// What an [`IdempotencyKey`] may be, as a regular expression.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[A-Za-z0-9_.:@=-]{1,128}$";

/// A producer's name for one message, unique within its account: a retried
/// request with the same key stores and pushes the message once
/// ([`MessageId::from_idempotency_key`]). 1 to 128 ASCII letters, digits
/// and `_ . : @ = -` (a UUID, `order-42:shipped`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a key, naming `field` in the error.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:@=-".contains(c);
        if text.is_empty() || text.len() > IDEMPOTENCY_KEY_MAX_LEN || !text.chars().all(allowed) {
            return Err(ValidationError::new(
                field,
                format!(
                    "'{text}' must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} letters, digits or _ . : @ = -"
                ),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
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
    fn a_scheduled_job_id_is_a_ulid_holding_the_message_id() {
        let a = MessageId::generate();
        let b = MessageId::generate();
        let id = a.scheduled_job_id();
        let parsed = ulid::Ulid::from_string(&id).expect("a ULID");
        assert_eq!(&parsed.to_bytes()[..12], &a.object_id().bytes());
        assert_eq!(id, a.scheduled_job_id(), "the same message, the same job");
        assert_ne!(id, b.scheduled_job_id());
    }

    #[test]
    fn generated_message_ids_are_distinct() {
        assert_ne!(MessageId::generate(), MessageId::generate());
    }

    #[test]
    fn generated_ids_carry_the_time_and_share_no_counter() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ids: Vec<[u8; 12]> = (0..1000)
            .map(|_| MessageId::generate().object_id().bytes())
            .collect();
        for id in &ids {
            let seconds = i64::from(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
            assert!((seconds - now).abs() <= 2, "time prefix {seconds} vs {now}");
        }
        // ObjectId::new() repeats its 5-byte process value in every id and
        // counts up in the last 3; here no two ids share their random part,
        // and consecutive ids are not one apart.
        let randoms: std::collections::HashSet<[u8; 8]> =
            ids.iter().map(|id| id[4..].try_into().unwrap()).collect();
        assert_eq!(randoms.len(), ids.len());
        let process_parts: std::collections::HashSet<[u8; 5]> =
            ids.iter().map(|id| id[4..9].try_into().unwrap()).collect();
        assert!(process_parts.len() > 990, "{}", process_parts.len());
        let counter = |id: &[u8; 12]| u32::from_be_bytes([0, id[9], id[10], id[11]]);
        let sequential = ids
            .windows(2)
            .filter(|pair| counter(&pair[1]) == counter(&pair[0]).wrapping_add(1))
            .count();
        assert!(sequential < 5, "{sequential} consecutive counters");
    }

    #[test]
    fn derived_ids_are_stable_per_account_and_differ_across_accounts() {
        let a = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let b = AccountId::parse("5f0c8a3e2b1d4c0087654321").unwrap();
        let key = IdempotencyKey::parse("idempotencyKey", "order-42:shipped").unwrap();
        let other = IdempotencyKey::parse("idempotencyKey", "order-43:shipped").unwrap();
        assert_eq!(
            MessageId::from_idempotency_key(a, &key),
            MessageId::from_idempotency_key(a, &key)
        );
        assert_ne!(
            MessageId::from_idempotency_key(a, &key),
            MessageId::from_idempotency_key(b, &key)
        );
        assert_ne!(
            MessageId::from_idempotency_key(a, &key),
            MessageId::from_idempotency_key(a, &other)
        );
    }

    #[test]
    fn idempotency_keys_are_short_and_plain() {
        for good in [
            "a",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "order-42:shipped@v=2",
        ] {
            assert!(IdempotencyKey::parse("k", good).is_ok(), "{good}");
        }
        let long = "k".repeat(IDEMPOTENCY_KEY_MAX_LEN + 1);
        for bad in ["", "a b", "a/b", "über", long.as_str()] {
            let err = IdempotencyKey::parse("idempotencyKey", bad).unwrap_err();
            assert_eq!(err.field, "idempotencyKey");
        }
    }
}
