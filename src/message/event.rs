//! The `new_message` event a stored message is pushed as.

use super::document::{rfc3339, StoredMessage};

/// Event sent after a message is stored.
pub const NEW_MESSAGE_EVENT: &str = "new_message";

/// The whole `new_message` data of a stored message: the message id, the
/// sender (which the frontend reads), the recipient, title, status and
/// creation time, and its `category`, `actionUrl` and `data` when it has
/// them; no content.
pub fn new_message_data(stored: &StoredMessage) -> serde_json::Value {
    let message = &stored.message;
    let mut data = serde_json::json!({
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
    let extra = [
        (
            "category",
            message.category.clone().map(serde_json::Value::from),
        ),
        (
            "actionUrl",
            message.action_url.clone().map(serde_json::Value::from),
        ),
        ("data", message.data.clone().map(serde_json::Value::Object)),
    ];
    for (name, value) in extra {
        if let Some(value) = value {
            data[name] = value;
        }
    }
    data
}
