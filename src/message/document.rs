//! A message as it is stored: the `message` document, the product's
//! contract (DESIGN.md 2.1: camelCase names, ObjectIds for ids, BSON dates
//! for times), and the time format the API and the events show.

use herald_jobs::{ValidMessage, ValidSender};
use mongodb::bson::{doc, Bson, DateTime, Document};

/// Name of the collection.
pub const MESSAGE_COLLECTION: &str = "message";

/// A message as it is in the database after [`crate::store::MessageBatcher::insert`].
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The message the job described.
    pub message: ValidMessage,
    /// `createdAt` of the stored document (the first run's, on a re-run).
    pub created_at: DateTime,
    /// False when the document was already there (a re-run of the job).
    pub newly_inserted: bool,
}

/// The document for `message`, created at `created_at`, removed at
/// `expires_at` if that is set (the message's own `expiresAt`, or the
/// worker's `message.keep_days` after `created_at`: [`expiry_of`]).
pub fn to_document(
    message: &ValidMessage,
    created_at: DateTime,
    expires_at: Option<DateTime>,
) -> Document {
    let sender_id = match message.sender {
        ValidSender::System => Bson::String("system".to_owned()),
        ValidSender::SystemWithId(oid) => Bson::ObjectId(oid),
        ValidSender::User(user) => Bson::ObjectId(user.object_id()),
    };
    let mut document = doc! {
        "_id": message.id.object_id(),
        "accountId": message.account.object_id(),
        "title": &message.title,
        "content": &message.content,
        "sender": { "id": sender_id, "from": message.sender.from_kind().as_str() },
        "to": { "id": message.to.object_id(), "target": message.to.target().as_str() },
        "status": message.status.as_str(),
        "isRead": false,
        "createdAt": created_at,
        "readAt": Bson::Null,
    };
    if let Some(at) = expires_at {
        document.insert("expiresAt", at);
    }
    if let Some(category) = &message.category {
        document.insert("category", category);
    }
    if let Some(url) = &message.action_url {
        document.insert("actionUrl", url);
    }
    if let Some(data) = &message.data {
        // A JSON object always has a BSON form (numbers beyond i64 become
        // doubles); `Null` would only stand for a failure that cannot come.
        let data = Bson::try_from(serde_json::Value::Object(data.clone())).unwrap_or(Bson::Null);
        document.insert("data", data);
    }
    document
}

/// When a message stored at `created_at` is removed: its own `expiresAt`,
/// else `keep` after `created_at`; `None`: it is kept.
pub fn expiry_of(
    message: &ValidMessage,
    created_at: DateTime,
    keep: Option<std::time::Duration>,
) -> Option<DateTime> {
    match (message.expires_at, keep) {
        (Some(at), _) => Some(DateTime::from_millis(at.timestamp_millis())),
        (None, Some(keep)) => {
            let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            Some(DateTime::from_millis(
                created_at.timestamp_millis().saturating_add(keep),
            ))
        }
        (None, None) => None,
    }
}

/// `time` as RFC 3339 in UTC with exactly three fractional digits, so that
/// times compare correctly as strings (the read API and the events).
pub fn rfc3339(time: DateTime) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(time.timestamp_millis())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_jobs::{AccountId, SendMessage, UserId};

    #[test]
    fn the_document_has_the_contract_fields_and_types() {
        let account = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let user = UserId::parse("5f0c8a3e2b1d4c00aaaaaaaa").unwrap();
        let message = SendMessage::new(account, "Hi", "<b>x</b>")
            .sent_by_user(user)
            .validate(&Default::default())
            .unwrap();
        let now = DateTime::now();
        let doc = to_document(&message, now, None);
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "_id",
                "accountId",
                "title",
                "content",
                "sender",
                "to",
                "status",
                "isRead",
                "createdAt",
                "readAt"
            ]
        );
        assert_eq!(doc.get_object_id("accountId").unwrap(), account.object_id());
        assert_eq!(
            doc.get_document("sender")
                .unwrap()
                .get_object_id("id")
                .unwrap(),
            user.object_id()
        );
        assert_eq!(
            doc.get_document("to").unwrap().get_str("target").unwrap(),
            "account"
        );
        assert!(!doc.get_bool("isRead").unwrap());
        assert_eq!(doc.get_datetime("createdAt").unwrap(), &now);
        assert_eq!(doc.get("readAt"), Some(&Bson::Null));
    }

    #[test]
    fn a_message_expires_at_its_own_time_else_keep_after_it_was_stored() {
        let account = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let created = DateTime::from_millis(1_700_000_000_000);
        let keep = Some(std::time::Duration::from_secs(86_400));
        let plain = SendMessage::new(account, "Hi", "x")
            .validate(&Default::default())
            .unwrap();
        assert_eq!(expiry_of(&plain, created, None), None);
        assert_eq!(
            expiry_of(&plain, created, keep),
            Some(DateTime::from_millis(1_700_000_000_000 + 86_400_000))
        );
        let own = chrono::DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let expiring = SendMessage::new(account, "Hi", "x")
            .expires_at(own)
            .validate(&Default::default())
            .unwrap();
        let at = expiry_of(&expiring, created, keep);
        assert_eq!(at, Some(DateTime::from_millis(1_800_000_000_000)));
        let doc = to_document(&expiring, created, at);
        assert_eq!(doc.get_datetime("expiresAt").unwrap(), &at.unwrap());
        assert!(to_document(&plain, created, None)
            .get("expiresAt")
            .is_none());
    }
}
