//! Queue names and the namespace they live in.
//!
//! Every Redis key Herald touches starts with a namespace (default `herald`),
//! so several deployments — or several test runs — can share one Redis server
//! without seeing each other's jobs. A queue's full name is
//! `NAMESPACE:QUEUE`, for example `herald:send_message`.

use std::fmt;

use crate::error::ValidationError;

/// A Redis key prefix: letters, digits, `-`, `_` and `.`, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Parses a namespace, refusing characters that would make keys ambiguous.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "namespace",
                format!("'{raw}' must be 1-64 characters of letters, digits, '-', '_' or '.'"),
            ))
        }
    }

    /// The namespace as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full Redis name of `queue` in this namespace.
    pub fn queue(&self, queue: QueueName) -> String {
        format!("{}:{}", self.0, queue.as_str())
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self("herald".to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The queues Herald's workers consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Producers' `send_message` jobs: store a message, then schedule its push.
    SendMessage,
    /// Herald's own realtime pushes, one job per event, retried on their own.
    Push,
    /// Producers' `export` jobs: a collection streamed to a CSV file.
    Export,
}

impl QueueName {
    /// Every queue, in a stable order (for listings and doctor output).
    pub const ALL: [QueueName; 3] = [QueueName::SendMessage, QueueName::Push, QueueName::Export];

    /// The queue's short name, as it appears after the namespace.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::SendMessage => "send_message",
            QueueName::Push => "push",
            QueueName::Export => "export",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Redis key `suffix` of the queue whose full name is `queue`
/// (`NAMESPACE:QUEUE`): every key of a queue is one, for example
/// `herald:send_message:data`. The worker and the producers name keys
/// through this one function.
pub fn queue_key(queue: &str, suffix: &str) -> String {
    format!("{queue}:{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_prefixed_by_the_namespace() {
        let ns = Namespace::parse("acme-prod").unwrap();
        assert_eq!(ns.queue(QueueName::SendMessage), "acme-prod:send_message");
        assert_eq!(ns.queue(QueueName::Push), "acme-prod:push");
    }

    #[test]
    fn namespaces_with_separators_or_spaces_are_refused() {
        for bad in ["", "a:b", "a b", "{x}", &"n".repeat(65)] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
