//! The `push` queue's payload, and the events a stored message sends.
//!
//! Pushing runs as its own job so that a provider outage never re-runs the
//! step before it (storing a message): the send_message job ends once the
//! document is stored and the push is scheduled. Each push job carries an
//! idempotency key (`EVENT:ACCOUNT:ID...`), used when it is enqueued so
//! that a re-run of the job that scheduled it does not schedule it twice.
//! Keys name the account, so no account's event can ever stand for
//! another's.
//!
//! A message to the whole account is one `new_message` on the account's
//! channel. A message to one user is two: the whole event on that user's
//! channel ([`super::UserChannels`]), and on the account channel, which all
//! of the user's colleagues receive, a notice with the ids, sender and
//! status only ([`NOTICE_FIELDS`]), so a page that listens only there
//! still knows to refresh.

use herald_jobs::{AccountId, ValidRecipient};
use serde::{Deserialize, Serialize};

use super::{account_channel, Event, UserChannels, NEW_MESSAGE_EVENT};
use crate::store::StoredMessage;

/// The fields of `new_message` that the account channel carries for a
/// message addressed to one user.
pub const NOTICE_FIELDS: [&str; 5] = ["id", "messageId", "accountId", "sender", "status"];

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
    /// The W3C `traceparent` of the job that handed this one on (absent
    /// from other producers): the push's span continues its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

herald_jobs::object_only!(PushJob, "a push job (a JSON object)");

impl PushJob {
    /// This job, continuing the trace of the span `trace` names.
    pub fn in_trace(mut self, trace: &herald_jobs::TraceParent) -> Self {
        self.traceparent = Some(trace.to_string());
        self
    }

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
            event: Event::to_account(account, name, data),
            traceparent: None,
        }
    }

    /// The `new_message` pushes for a stored message (see the module
    /// docs): the event carries the message id, the sender (which the
    /// frontend reads), the recipient, title, status and creation time.
    pub fn for_message(stored: &StoredMessage, users: &UserChannels) -> Vec<Self> {
        let message = &stored.message;
        let data = crate::message::event::new_message_data(stored);
        let key = format!("{NEW_MESSAGE_EVENT}:{}:{}", message.account, message.id);
        let job = |key: String, data: serde_json::Value, channel: String| Self {
            idempotency_key: key,
            account_id: message.account.to_hex(),
            event: Event {
                name: NEW_MESSAGE_EVENT.to_owned(),
                data,
                channels: vec![channel],
            },
            traceparent: None,
        };
        match message.to {
            ValidRecipient::Account(_) => {
                vec![job(key, data, account_channel(message.account))]
            }
            ValidRecipient::User(user) => {
                let notice: serde_json::Map<String, serde_json::Value> = NOTICE_FIELDS
                    .iter()
                    .filter_map(|field| Some(((*field).to_owned(), data.get(*field)?.clone())))
                    .collect();
                vec![
                    job(key.clone(), data, users.channel(message.account, user)),
                    job(
                        format!("{key}:account"),
                        serde_json::Value::Object(notice),
                        account_channel(message.account),
                    ),
                ]
            }
        }
    }

    /// A `message_read` event on `user`'s channel: which messages were
    /// marked read (`ids`, or `"all"`) and the user's unread count after it.
    /// `mark` tells marks apart, so each one is pushed once.
    pub fn message_read(
        account: AccountId,
        user: herald_jobs::UserId,
        users: &UserChannels,
        read: serde_json::Value,
        unread: u64,
        mark: &str,
    ) -> Self {
        Self {
            idempotency_key: format!("{}:{account}:{user}:{mark}", super::MESSAGE_READ_EVENT),
            account_id: account.to_hex(),
            event: Event {
                name: super::MESSAGE_READ_EVENT.to_owned(),
                data: serde_json::json!({ "ids": read, "unread": unread }),
                channels: vec![users.channel(account, user)],
            },
            traceparent: None,
        }
    }
}

impl PushJob {
    /// An `inbox_changed` event on `user`'s channel: what the user did
    /// (`action`), to which messages (`ids`, or `"all"` for a filter), and
    /// their unread count after it. `mark` tells changes apart, so each one
    /// is pushed once.
    pub fn inbox_changed(
        account: AccountId,
        user: herald_jobs::UserId,
        users: &UserChannels,
        action: &str,
        ids: serde_json::Value,
        unread: u64,
        mark: &str,
    ) -> Self {
        Self {
            idempotency_key: format!("{}:{account}:{user}:{mark}", super::INBOX_CHANGED_EVENT),
            account_id: account.to_hex(),
            event: Event {
                name: super::INBOX_CHANGED_EVENT.to_owned(),
                data: serde_json::json!({ "action": action, "ids": ids, "unread": unread }),
                channels: vec![users.channel(account, user)],
            },
            traceparent: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_jobs::{MessageLimits, SendMessage};
    use mongodb::bson::DateTime;

    fn stored_at(millis: i64) -> StoredMessage {
        stored(SendMessage::new(account(), "t", "c"), millis)
    }

    fn account() -> AccountId {
        AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap()
    }

    fn stored(job: SendMessage, millis: i64) -> StoredMessage {
        StoredMessage {
            message: job.validate(&MessageLimits::default()).expect("valid"),
            created_at: DateTime::from_millis(millis),
            newly_inserted: true,
        }
    }

    #[test]
    fn an_account_message_is_one_event_on_the_account_channel() {
        let jobs = PushJob::for_message(&stored_at(0), &UserChannels::default());
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].event.channels, [account_channel(account())]);
        assert_eq!(jobs[0].event.data["title"], "t");
        let id = jobs[0].event.data["id"].as_str().unwrap().to_owned();
        assert_eq!(
            jobs[0].idempotency_key,
            format!("new_message:{}:{id}", account())
        );
    }

    #[test]
    fn a_users_message_goes_whole_to_the_user_and_as_a_notice_to_the_account() {
        let user = herald_jobs::UserId::parse("5f0c8a3e2b1d4c00aaaaaaaa").unwrap();
        let users = UserChannels::default();
        let job = SendMessage::new(account(), "Your salary", "<b>secret</b>").to_user(user);
        let jobs = PushJob::for_message(&stored(job, 0), &users);
        assert_eq!(jobs.len(), 2);
        let (whole, notice) = (&jobs[0], &jobs[1]);
        assert_eq!(whole.event.channels, [users.channel(account(), user)]);
        assert_eq!(whole.event.data["title"], "Your salary");
        assert_eq!(notice.event.channels, [account_channel(account())]);
        let mut fields: Vec<&str> = notice
            .event
            .data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["accountId", "id", "messageId", "sender", "status"]);
        assert!(!notice.event.data.to_string().contains("salary"));
        assert!(!notice.event.data.to_string().contains(&user.to_hex()));
        assert_ne!(whole.idempotency_key, notice.idempotency_key);
        assert!(notice.idempotency_key.starts_with(&whole.idempotency_key));
    }

    #[test]
    fn created_at_has_exactly_three_fractional_digits_like_the_read_api() {
        let base = 1_780_000_000_000_i64; // 2026-05-28T...
                                          // Every millisecond residue, including those whose shortest form
                                          // would drop trailing zeros (.000, .500, .530), and whole seconds.
        for millis in (0..1_000).map(|ms| base + ms).chain([0, 1_000, 86_400_000]) {
            let job = &PushJob::for_message(&stored_at(millis), &UserChannels::default())[0];
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
                crate::message::rfc3339(DateTime::from_millis(millis))
            );
        }
    }
}
