//! What the dead set is indexed by, so an operator can find failed jobs
//! among a hundred thousand: by a label read from the payload (the queue's
//! [`DeadLabel`]s, such as the event or the account) and by error group
//! (the error text with its ids and counts masked, [`error_group`]).
//!
//! The indexes are sorted sets scored like the dead set (failure time),
//! kept by the scripts that move jobs in and out of it: they all begin
//! with `lua/dead_index.lua` ([`with_dead_index`]). Listing a filtered page
//! is then one range over one index, and a count one `ZCARD`.

use redis::Script;
use sha1_smol::Sha1;

use super::QueueConfig;

/// The Lua functions every script that changes the dead set begins with.
const LIBRARY: &str = include_str!("lua/dead_index.lua");

/// Longest error group kept, in bytes (cut at a character boundary).
pub const ERROR_GROUP_MAX: usize = 200;

/// A label dead jobs of a queue are indexed by: `name` is what filters and
/// keys call it, `pointer` where its value is in the JSON payload (a JSON
/// pointer such as `/event/name`). A job whose payload has no string or
/// number there is not listed under that label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLabel {
    /// The label's name (letters, digits, `_`).
    pub name: String,
    /// Where the value is in the payload.
    pub pointer: String,
}

impl DeadLabel {
    /// The label `name` read from `pointer`.
    pub fn new(name: &str, pointer: &str) -> Self {
        Self {
            name: name.to_owned(),
            pointer: pointer.to_owned(),
        }
    }
}

/// The labels as the scripts take them: `name=/pointer;name=/pointer`.
pub(super) fn encode_labels(labels: &[DeadLabel]) -> String {
    labels
        .iter()
        .map(|label| format!("{}={}", label.name, label.pointer))
        .collect::<Vec<_>>()
        .join(";")
}

/// The script `body` with the index functions before it.
pub(super) fn with_dead_index(body: &str) -> Script {
    Script::new(&[LIBRARY, body].concat())
}

/// The group an error belongs to: its first line with what differs from one
/// job to the next masked as `*` (runs with four digits or more, such as
/// ids, counts and times, and hex ids), at most [`ERROR_GROUP_MAX`] bytes.
/// Short numbers such as HTTP statuses stay, so a 503 and a 401 are told
/// apart.
pub fn error_group(error: &str) -> String {
    let line = error.lines().next().unwrap_or("").trim();
    let mut group = String::with_capacity(line.len().min(ERROR_GROUP_MAX));
    let mut token = String::new();
    let flush = |token: &mut String, group: &mut String| {
        if !token.is_empty() {
            group.push_str(if varies(token) { "*" } else { token });
            token.clear();
        }
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            token.push(c);
        } else {
            flush(&mut token, &mut group);
            group.push(c);
        }
    }
    flush(&mut token, &mut group);
    if group.len() > ERROR_GROUP_MAX {
        let mut end = ERROR_GROUP_MAX;
        while !group.is_char_boundary(end) {
            end -= 1;
        }
        group.truncate(end);
    }
    group
}

/// Whether a word of an error message is one that differs between jobs
/// (an id, a count, a time) rather than part of what went wrong.
fn varies(token: &str) -> bool {
    let digits = token.chars().filter(char::is_ascii_digit).count();
    let hex_id =
        token.len() >= 8 && digits > 0 && token.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    digits >= 4 || hex_id
}

/// The id of an error group in keys and URLs: the SHA-1 of its text, in
/// hex (the scripts compute the same with `redis.sha1hex`).
pub fn group_id(group: &str) -> String {
    Sha1::from(group).digest().to_string()
}

impl QueueConfig {
    /// Sorted set: dead jobs whose label `name` is `value`.
    pub fn dead_label_key(&self, name: &str, value: &str) -> String {
        format!("{}:label:{name}:{value}", self.dead_key())
    }
    /// Sorted set: dead jobs of the error group with id `group_id`.
    pub fn dead_error_key(&self, group_id: &str) -> String {
        format!("{}:error:{group_id}", self.dead_key())
    }
    /// Sorted set: error group text → how many dead jobs it has.
    pub fn dead_errors_key(&self) -> String {
        format!("{}:errors", self.dead_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_counts_and_times_are_masked_and_statuses_kept() {
        assert_eq!(
            error_group(
                "provider answered 503 for new_message:65f1a2b3c4d5e6f708091a2b after 1200 ms"
            ),
            "provider answered 503 for new_message:* after * ms"
        );
        assert_eq!(
            error_group("account 5f0c8a3e2b1d4c0012345678 not found"),
            "account * not found"
        );
        assert_eq!(
            error_group("HTTP 401: bad signature"),
            "HTTP 401: bad signature"
        );
    }

    #[test]
    fn two_jobs_failing_the_same_way_share_a_group() {
        let a = error_group("job 550e8400-e29b-41d4-a716-446655440000 timed out after 30000 ms");
        let b = error_group("job 6ba7b810-9dad-11d1-80b4-00c04fd430c8 timed out after 30001 ms");
        assert_eq!(a, b);
        assert_eq!(group_id(&a), group_id(&b));
    }

    #[test]
    fn only_the_first_line_counts_and_the_group_is_bounded() {
        assert_eq!(error_group("first line\nstack trace 12345"), "first line");
        let long = "é".repeat(300);
        let group = error_group(&long);
        assert!(group.len() <= ERROR_GROUP_MAX);
        assert!(group.chars().all(|c| c == 'é'));
    }

    #[test]
    fn words_are_not_mistaken_for_ids() {
        // "deadbeef"-like words without digits are words.
        assert_eq!(
            error_group("channel accepted facade"),
            "channel accepted facade"
        );
        assert_eq!(error_group("data is 10241 bytes"), "data is * bytes");
    }

    #[test]
    fn the_group_id_is_the_sha1_redis_computes() {
        // redis.sha1hex("abc")
        assert_eq!(group_id("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn labels_encode_for_the_scripts() {
        let labels = [
            DeadLabel::new("event", "/event/name"),
            DeadLabel::new("account", "/accountId"),
        ];
        assert_eq!(
            encode_labels(&labels),
            "event=/event/name;account=/accountId"
        );
        assert_eq!(encode_labels(&[]), "");
    }
}
