//! Page cursors: where a page of messages ends.
//!
//! A cursor names the last message shown (its `createdAt` and `_id`), and
//! the next page starts after it in newest-first order, so messages that
//! arrive meanwhile never shift a page or show twice.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

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
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.created_at.timestamp_millis(),
            self.id.to_hex()
        ))
    }

    /// Reads a string made by [`PageCursor::encode`].
    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(text.to_owned());
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let (millis, id) = plain.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            created_at: DateTime::from_millis(millis.parse().map_err(|_| bad())?),
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
        for text in ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("12:nothex")] {
            assert!(PageCursor::decode(text).is_err(), "{text:?} was accepted");
        }
    }
}
