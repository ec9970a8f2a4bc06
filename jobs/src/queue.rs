//! Queue names and the namespace they live in.
//!
//! Every Redis key Herald touches starts with a namespace (default `herald`),
//! so several deployments — or several test runs — can share one Redis server
//! without seeing each other's jobs.
//!
//! Key names carry a Redis Cluster *hash tag*: the part in braces is all
//! the cluster hashes, so keys with the same tag live in the same slot and
//! one script may touch them together. A queue's full name is
//! `{NAMESPACE:QUEUE}`, for example `{herald:send_message}`, and every key
//! of the queue starts with it (`{herald:send_message}:data`): each
//! script runs on one queue's keys, so every script runs on a cluster
//! unchanged, and the queues spread over the cluster's primaries. The
//! provider's rate limit lives beside the push queue
//! (`{herald:push}:rate`); keys of the whole namespace (the export
//! retention's lock) are `{NAMESPACE}:...`. The same names serve a single server and
//! Sentinel.
//!
//! Earlier releases named keys `NAMESPACE:QUEUE:...` without a tag (the
//! apalis-redis layout); [`Namespace::legacy_pattern`] finds them so the
//! worker can move them over.

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

    /// The full Redis name of `queue` in this namespace, `{NAMESPACE:QUEUE}`:
    /// the hash tag every key of the queue starts with.
    pub fn queue(&self, queue: QueueName) -> String {
        format!("{{{}:{}}}", self.0, queue.as_str())
    }

    /// The full Redis name of shard `shard` of `queue`: shard 0 is the
    /// queue itself ([`Namespace::queue`]), shard `k` is
    /// `{NAMESPACE:QUEUE:k}`, a hash tag of its own, so on a cluster each
    /// shard lands on a slot of its own (see [`shard_of`]).
    pub fn queue_shard(&self, queue: QueueName, shard: u16) -> String {
        match shard {
            0 => self.queue(queue),
            k => format!("{{{}:{}:{k}}}", self.0, queue.as_str()),
        }
    }

    /// The key holding how many shards each queue has
    /// (`{NAMESPACE}:queue_shards`): workers write it at start, producers
    /// read it to pick a shard (see [`shard_of`]).
    pub fn shard_count_key(&self) -> String {
        self.key("queue_shards")
    }

    /// The key `{NAMESPACE}:suffix`, for what belongs to the namespace
    /// rather than to one queue (each is used alone, one key per call).
    pub fn key(&self, suffix: &str) -> String {
        format!("{{{}}}:{suffix}", self.0)
    }

    /// A `SCAN MATCH` pattern for every key of this namespace: the queues'
    /// (`{NAMESPACE:...`) and the namespace's own (`{NAMESPACE}:...`), and
    /// no other namespace's.
    pub fn key_pattern(&self) -> String {
        format!("{{{}[:}}]*", self.0)
    }

    /// A `SCAN MATCH` pattern for the keys of this namespace in the layout
    /// of earlier releases, `NAMESPACE:...` with no hash tag.
    pub fn legacy_pattern(&self) -> String {
        format!("{}:*", self.0)
    }

    /// The name `key`, written in the layout of earlier releases, has in
    /// this one; `None` when `key` is not this namespace's. A queue's key
    /// `NAMESPACE:QUEUE:rest` becomes `{NAMESPACE:QUEUE}:rest`, any other
    /// `NAMESPACE:rest` becomes `{NAMESPACE}:rest`.
    pub fn from_legacy(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(self.0.as_str())?.strip_prefix(':')?;
        let queue = QueueName::ALL.into_iter().find(|queue| {
            rest.strip_prefix(queue.as_str())
                .is_some_and(|after| after.is_empty() || after.starts_with(':'))
        });
        Some(match queue {
            Some(queue) => format!("{}{}", self.queue(queue), &rest[queue.as_str().len()..]),
            None => self.key(rest),
        })
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

/// Most shards a queue may have (`redis.queue_shards`).
pub const MAX_QUEUE_SHARDS: u16 = 64;

/// The shard, of `shards`, that the jobs of `account` go to: the same
/// shard for every job of one account, so an account's jobs keep one
/// queue and its order, and accounts spread evenly over the shards.
/// The hash is FNV-1a over the account id's bytes, fixed here because
/// every producer and every release must agree on it.
pub fn shard_of(account: &str, shards: u16) -> u16 {
    if shards <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in account.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards)) as u16
}

/// The suffixes of the keys a producer writes, shared with the queue
/// engine (`herald-queue`'s `QueueConfig`), so that both name them in one
/// place: `queue_key(queue, suffix::DATA)`.
pub mod suffix {
    /// Hash: job id → payload.
    pub const DATA: &str = "data";
    /// List: ids ready to run, oldest first.
    pub const ACTIVE: &str = "active";
    /// Sorted set: ids waiting for their time.
    pub const SCHEDULED: &str = "scheduled";
    /// List: at most one wake token, which idle workers block on.
    pub const WAKE: &str = "wake";
    /// Prefix of the per-job metadata hashes (`<prefix>:<id>`).
    pub const META: &str = "meta";
    /// Prefix of the claims of idempotency keys (see `claims.lua`).
    pub const IDEMPOTENCY: &str = "idempotency";
}

/// The Redis key `suffix` of the queue whose full name is `queue`
/// (`{NAMESPACE:QUEUE}`): every key of a queue is one, for example
/// `{herald:send_message}:data`, and so shares the queue's hash tag. The
/// worker and the producers name keys through this one function.
pub fn queue_key(queue: &str, suffix: &str) -> String {
    format!("{queue}:{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_prefixed_by_the_namespace() {
        let ns = Namespace::parse("acme-prod").unwrap();
        assert_eq!(ns.queue(QueueName::SendMessage), "{acme-prod:send_message}");
        assert_eq!(ns.queue(QueueName::Push), "{acme-prod:push}");
        assert_eq!(ns.key("push:rate"), "{acme-prod}:push:rate");
        assert_eq!(
            queue_key(&ns.queue(QueueName::Export), "data"),
            "{acme-prod:export}:data"
        );
    }

    /// What `SCAN MATCH` would do with `pattern` on `key`: `*` any run,
    /// `[..]` one of the listed characters, anything else itself (enough
    /// for the patterns made here).
    fn glob(pattern: &str, key: &str) -> bool {
        let (p, k): (Vec<char>, Vec<char>) = (pattern.chars().collect(), key.chars().collect());
        fn go(p: &[char], k: &[char]) -> bool {
            match p.first() {
                None => k.is_empty(),
                Some('*') => (0..=k.len()).any(|i| go(&p[1..], &k[i..])),
                Some('[') => {
                    let end = p.iter().position(|&c| c == ']').expect("closed class");
                    !k.is_empty() && p[1..end].contains(&k[0]) && go(&p[end + 1..], &k[1..])
                }
                Some(c) => k.first() == Some(c) && go(&p[1..], &k[1..]),
            }
        }
        go(&p, &k)
    }

    #[test]
    fn the_key_pattern_matches_this_namespace_and_no_other() {
        let ns = Namespace::parse("acme").unwrap();
        assert_eq!(ns.key_pattern(), "{acme[:}]*");
        for mine in [
            "{acme:push}:data",
            "{acme}:push:rate",
            "{acme:export}:meta:1",
        ] {
            assert!(glob(&ns.key_pattern(), mine), "{mine}");
        }
        for other in ["{acme2:push}:data", "{acme-x}:push:rate", "acme:push:data"] {
            assert!(!glob(&ns.key_pattern(), other), "{other}");
        }
        assert!(glob(&ns.legacy_pattern(), "acme:push:data"));
    }

    #[test]
    fn legacy_keys_map_onto_the_tagged_layout() {
        let ns = Namespace::parse("acme").unwrap();
        let cases = [
            ("acme:send_message:data", Some("{acme:send_message}:data")),
            ("acme:push:meta:01J", Some("{acme:push}:meta:01J")),
            ("acme:export:inflight:w1", Some("{acme:export}:inflight:w1")),
            (
                "acme:push:rate:account:7",
                Some("{acme:push}:rate:account:7"),
            ),
            ("acme:retention:export", Some("{acme}:retention:export")),
            ("acme:pushes", Some("{acme}:pushes")),
            ("acme2:push:data", None),
            ("{acme:push}:data", None),
        ];
        for (old, new) in cases {
            assert_eq!(ns.from_legacy(old).as_deref(), new, "{old}");
        }
    }

    #[test]
    fn shards_have_their_own_hash_tags_and_shard_zero_is_the_queue() {
        let ns = Namespace::parse("acme").unwrap();
        assert_eq!(ns.queue_shard(QueueName::Push, 0), "{acme:push}");
        assert_eq!(ns.queue_shard(QueueName::Push, 3), "{acme:push:3}");
        assert_eq!(ns.shard_count_key(), "{acme}:queue_shards");
        assert!(glob(&ns.key_pattern(), "{acme:push:3}:data"));
    }

    #[test]
    fn an_account_keeps_one_shard_and_accounts_spread_over_all() {
        assert_eq!(shard_of("5f0c8a3e2b1d4c0012345678", 1), 0);
        let account = "5f0c8a3e2b1d4c0012345678";
        assert_eq!(shard_of(account, 4), shard_of(account, 4));
        // FNV-1a is fixed: producers of every release agree.
        assert_eq!(
            shard_of("a", 1_000),
            (0xaf63_dc4c_8601_ec8c_u64 % 1_000) as u16
        );
        let mut per_shard = [0u32; 4];
        for n in 0..4_000u32 {
            per_shard[shard_of(&format!("{n:024x}"), 4) as usize] += 1;
        }
        for count in per_shard {
            assert!((800..1_200).contains(&count), "{per_shard:?}");
        }
    }

    #[test]
    fn namespaces_with_separators_or_spaces_are_refused() {
        for bad in ["", "a:b", "a b", "{x}", &"n".repeat(65)] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
