//! The `push` queue's payload.
//!
//! Pushing runs as its own job so that a provider outage never re-runs the
//! step before it (storing a message): the send_message job ends once the
//! document is stored and the push is scheduled. Each push job carries an
//! idempotency key (`EVENT:ID`), used when it is enqueued so that a re-run of
//! the job that scheduled it does not schedule it twice.

use serde::{Deserialize, Serialize};

use super::{account_channel, Event, NEW_MESSAGE_EVENT};
use crate::store::{inbox::rfc3339, StoredMessage};

/// One event to deliver, as stored on the `push` queue (camelCase JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct PushJob {
    /// `EVENT:ID`, e.g. `new_message:65a1f0c2e4b0a1b2c3d4e5f6`.
    pub idempotency_key: String,
    /// The account the event concerns (for logs and the dashboard).
    pub account_id: String,
    /// What to send.
    pub event: Event,
}

herald_jobs::object_only!(PushJob, "a push job (a JSON object)");

impl PushJob {
    /// An event on `account`'s channel (used by exports:
    /// `export_progress`, `export_finish`, `export_failed`).
    pub fn account_event(
        account: herald_jobs::AccountId,
        name: &str,
        data: serde_json::Value,
        idempotency_key: String,
    ) -> Self {
        Self {
            idempotency_key,
            account_id: account.to_hex(),
            event: Event {
                name: name.to_owned(),
                data,
                channels: vec![account_channel(account)],
            },
        }
    }

    /// The `new_message` push for a stored message. Its data carries the
    /// message id, the sender (which the frontend reads), the recipient,
    /// title, status and creation time.
    pub fn new_message(stored: &StoredMessage) -> Self {
        let message = &stored.message;
        let data = serde_json::json!({
            "id": message.id.to_hex(),
            "messageId": message.id.to_hex(),
            "accountId": message.account.to_hex(),
            "title": message.title,
            "status": message.status.as_str(),
            "sender": {
                "id": message.sender.id_string(),
                "from": message.sender.from_kind().as_str(),
            },
            "to": {
                "id": message.to.object_id().to_hex(),
                "target": message.to.target().as_str(),
            },
            // Exactly three fractional digits, as the read API shows it.
            "createdAt": rfc3339(stored.created_at).unwrap_or_default(),
        });
        Self {
            idempotency_key: format!("{NEW_MESSAGE_EVENT}:{}", message.id),
            account_id: message.account.to_hex(),
            event: Event {
                name: NEW_MESSAGE_EVENT.to_owned(),
                data,
                channels: vec![account_channel(message.account)],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_jobs::{MessageLimits, SendMessage};
    use mongodb::bson::DateTime;

    fn stored_at(millis: i64) -> StoredMessage {
        let account = herald_jobs::AccountId::from(mongodb::bson::oid::ObjectId::new());
        StoredMessage {
            message: SendMessage::new(account, "t", "c")
                .validate(&MessageLimits::default())
                .expect("valid"),
            created_at: DateTime::from_millis(millis),
            newly_inserted: true,
        }
    }

    #[test]
    fn created_at_has_exactly_three_fractional_digits_like_the_read_api() {
        let base = 1_780_000_000_000_i64; // 2026-05-28T...
                                          // Every millisecond residue, including those whose shortest form
                                          // would drop trailing zeros (.000, .500, .530), and whole seconds.
        for millis in (0..1_000).map(|ms| base + ms).chain([0, 1_000, 86_400_000]) {
            let job = PushJob::new_message(&stored_at(millis));
            let created = job.event.data["createdAt"].as_str().expect("a string");
            assert_eq!(created.len(), "2026-05-28T20:26:40.000Z".len(), "{created}");
            let fraction = &created[created.len() - 5..];
            assert!(
                fraction.starts_with('.')
                    && fraction[1..4].bytes().all(|b| b.is_ascii_digit())
                    && fraction.ends_with('Z'),
                "{created}"
            );
            assert_eq!(
                Some(created.to_owned()),
                rfc3339(DateTime::from_millis(millis))
            );
        }
    }
}
