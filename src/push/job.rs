//! The `push` queue's payload.
//!
//! Pushing runs as its own job so that a provider outage never re-runs the
//! step before it (storing a message): the send_message job ends once the
//! document is stored and the push is scheduled. Each push job carries an
//! idempotency key (`EVENT:ID`), used when it is enqueued so that a re-run of
//! the job that scheduled it does not schedule it twice.

use serde::{Deserialize, Serialize};

use super::{account_channel, Event, NEW_MESSAGE_EVENT};
use crate::store::StoredMessage;

/// One event to deliver, as stored on the `push` queue (camelCase JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushJob {
    /// `EVENT:ID`, e.g. `new_message:65a1f0c2e4b0a1b2c3d4e5f6`.
    pub idempotency_key: String,
    /// The account the event concerns (for logs and the dashboard).
    pub account_id: String,
    /// What to send.
    pub event: Event,
}

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
            "createdAt": stored.created_at.try_to_rfc3339_string().unwrap_or_default(),
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
