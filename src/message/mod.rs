//! A message, the first of Herald's two jobs, in one place: the job and its
//! validation are the contract's (`herald_jobs::SendMessage`, checked into
//! a [`ValidMessage`] that cannot be invalid), re-exported here; the stored
//! document is [`document`]; the `new_message` event it is pushed as is
//! [`event`]. Who writes it is [`crate::store::MessageBatcher`], who reads
//! it [`crate::store::Inbox`]; the producers' API body is
//! `crate::web::v1::messages`.

pub mod document;
pub mod event;

pub use document::{expiry_of, rfc3339, to_document, StoredMessage, MESSAGE_COLLECTION};
pub use event::{new_message_data, NEW_MESSAGE_EVENT};
pub use herald_jobs::{MessageLimits, MessageStatus, SendMessage, ValidMessage};
