//! Page cursors: where a page of messages ends.
//!
//! A cursor names the last message shown (its `createdAt` and `_id`), and
//! the next page starts after it in newest-first order, so messages that
//! arrive meanwhile never shift a page or show twice.
//!
//! Written as 40 lowercase hex digits: the time in milliseconds (16) and
//! the id (24). Every such string is a position, so the API's document can
//! state exactly which cursors it takes ([`CURSOR_PATTERN`]): a string made
//! up by a caller just starts a page somewhere (maybe past the end).

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

/// Every cursor, and the empty string (the first page), as a regular
/// expression; nothing else decodes.
pub const CURSOR_PATTERN: &str = "^([0-9a-f]{40})?$";

/// Where a page ends: the last message shown. Opaque to callers, who get it
/// as a string from a page's `next_cursor` and hand it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub(super) created_at: DateTime,
    pub(super) id: ObjectId,
}

/// A cursor string that was not made by Herald.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a cursor returned by this API")]
pub struct BadCursor(pub String);

impl PageCursor {
    /// The cursor just after `document` (a message with `createdAt` and `_id`).
    pub(super) fn after_document(document: &Document) -> Self {
        Self {
            created_at: document
                .get_datetime("createdAt")
                .copied()
                .unwrap_or(DateTime::MIN),
            id: document.get_object_id("_id").unwrap_or_default(),
        }
    }

    /// The cursor as the string callers pass back.
    pub fn encode(&self) -> String {
        // Times before 1970 (never written by Herald) wrap to their two's
        // complement, which decodes back to the same time.
        format!(
            "{:016x}{}",
            self.created_at.timestamp_millis() as u64,
            self.id.to_hex()
        )
    }

    /// Reads a string made by [`PageCursor::encode`]: any 40 lowercase hex
    /// digits.
    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(text.to_owned());
        let well_formed =
            text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(bad());
        }
        let (millis, id) = text.split_at(16);
        let millis = u64::from_str_radix(millis, 16).map_err(|_| bad())?;
        Ok(Self {
            created_at: DateTime::from_millis(millis as i64),
            id: ObjectId::parse_str(id).map_err(|_| bad())?,
        })
    }

    /// The condition for messages after this one in newest-first order.
    pub(super) fn after(&self) -> Document {
        doc! { "$or": [
            { "createdAt": { "$lt": self.created_at } },
            { "createdAt": self.created_at, "_id": { "$lt": self.id } },
        ] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_and_strangers_are_refused() {
        let cursor = PageCursor {
            created_at: DateTime::from_millis(1_767_225_600_123),
            id: ObjectId::parse_str("65a1f0c2e4b0a1b2c3d4e5f6").unwrap(),
        };
        assert_eq!(PageCursor::decode(&cursor.encode()), Ok(cursor));
        assert_eq!(CURSOR_PATTERN, "^([0-9a-f]{40})?$");
        assert_eq!(cursor.encode().len(), 40);
        // Any string of the pattern is a position, even one no page made.
        let made_up = "ffffffffffffffff000000000000000000000000";
        assert!(PageCursor::decode(made_up).is_ok());
        for text in [
            "",
            "abc",
            "!!!",
            "MTcwMDAwMDAwMDAwMDo1ZjBjOGEzZTJiMWQ0YzAwMTIzNDU2Nzg",
            "FFFFFFFFFFFFFFFF000000000000000000000000",
            "0000000000000000000000000000000000000000a",
        ] {
            assert!(PageCursor::decode(text).is_err(), "{text:?} was accepted");
        }
    }
}
