//! `[queues.send_message]`, `[queues.push]`, `[queues.export]`: each
//! queue's own options, one table per queue with the same keys.
//!
//! What every queue shares (fetching, heartbeats, backoff) stays in
//! `[worker]`. The options here had flat names under `[worker]` before the
//! tables existed (`worker.push_concurrency`, ...); [`RENAMED`] maps those
//! names to these, and the loader reads them under their new names.

use herald_jobs::QueueName;

use super::setting::{Setting, Values};
use super::ConfigError;

/// `[queues.send_message]`.
mod send_message {
    use super::super::setting::{define_settings, Rule};

    define_settings! {
        section "queues.send_message";
        CONCURRENCY: "concurrency" = "16", Rule::AtLeast(1),
            "send_message jobs at once in one worker process";
        MAX_ATTEMPTS: "max_attempts" = "10", Rule::AtLeast(1),
            "runs of a send_message job before it is dead";
    }
}

/// `[queues.push]`.
mod push {
    use super::super::setting::{define_settings, Rule};

    define_settings! {
        section "queues.push";
        CONCURRENCY: "concurrency" = "32", Rule::AtLeast(1),
            "pushes at once in one worker process; 1 keeps each account's events in enqueue order (docs/delivery.md)";
        MAX_ATTEMPTS: "max_attempts" = "12", Rule::AtLeast(1),
            "runs of a push job before it is dead";
    }
}

/// `[queues.export]`.
mod export {
    use super::super::setting::{define_settings, Rule};

    define_settings! {
        section "queues.export";
        CONCURRENCY: "concurrency" = "2", Rule::AtLeast(1),
            "exports at once in one worker process";
        MAX_ATTEMPTS: "max_attempts" = "3", Rule::AtLeast(1),
            "runs of an export job before it is dead";
    }
}

/// `[queues.send_message]`'s settings.
pub(super) const SEND_MESSAGE: &[Setting] = send_message::SETTINGS;
/// `[queues.push]`'s settings.
pub(super) const PUSH: &[Setting] = push::SETTINGS;
/// `[queues.export]`'s settings.
pub(super) const EXPORT: &[Setting] = export::SETTINGS;

/// Earlier flat names of the per-queue options, and their keys now. A file
/// or variable that still uses the old name is read as the new one (unless
/// the same layer sets the new one too) and warned about at start.
pub const RENAMED: &[(&str, &str)] = &[
    ("worker.concurrency", "queues.send_message.concurrency"),
    (
        "worker.send_message_max_attempts",
        "queues.send_message.max_attempts",
    ),
    ("worker.push_concurrency", "queues.push.concurrency"),
    ("worker.push_max_attempts", "queues.push.max_attempts"),
    ("worker.export_concurrency", "queues.export.concurrency"),
    ("worker.export_max_attempts", "queues.export.max_attempts"),
];

/// One queue's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Jobs of the queue running at once in one worker process, over all
    /// its shards.
    pub concurrency: usize,
    /// Runs a job gets before it rests in the dead set.
    pub max_attempts: usize,
}

/// Every queue's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuesSettings {
    /// `[queues.send_message]`.
    pub send_message: QueueSettings,
    /// `[queues.push]`.
    pub push: QueueSettings,
    /// `[queues.export]`.
    pub export: QueueSettings,
}

impl QueuesSettings {
    /// The options of `queue`.
    pub fn of(&self, queue: QueueName) -> &QueueSettings {
        match queue {
            QueueName::SendMessage => &self.send_message,
            QueueName::Push => &self.push,
            QueueName::Export => &self.export,
        }
    }

    /// The options of `queue`, to change (benchmarks and tests tune them).
    pub fn of_mut(&mut self, queue: QueueName) -> &mut QueueSettings {
        match queue {
            QueueName::SendMessage => &mut self.send_message,
            QueueName::Push => &mut self.push,
            QueueName::Export => &mut self.export,
        }
    }
}

/// Reads and checks the `[queues.*]` tables.
pub(super) fn read(values: &Values) -> Result<QueuesSettings, ConfigError> {
    Ok(QueuesSettings {
        send_message: read_queue(
            values,
            &send_message::CONCURRENCY,
            &send_message::MAX_ATTEMPTS,
        )?,
        push: read_queue(values, &push::CONCURRENCY, &push::MAX_ATTEMPTS)?,
        export: read_queue(values, &export::CONCURRENCY, &export::MAX_ATTEMPTS)?,
    })
}

/// One queue's table, from its two declared settings.
fn read_queue(
    values: &Values,
    concurrency: &Setting,
    max_attempts: &Setting,
) -> Result<QueueSettings, ConfigError> {
    Ok(QueueSettings {
        concurrency: values.whole(concurrency)?,
        max_attempts: values.whole(max_attempts)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use herald_jobs::QueueName;

    use crate::config::{tests::vars, Settings};

    /// Loads with a configuration directory holding `default.toml` (the
    /// shipped one, so the layers are as deployed) and `production.toml`
    /// with `text`, as `HERALD_ENV=production`.
    fn load_with_production_file(text: &str) -> Result<Settings, crate::config::ConfigError> {
        let dir =
            std::env::temp_dir().join(format!("herald-config-renamed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
        std::fs::copy(shipped, dir.join("default.toml")).expect("default.toml copied");
        std::fs::write(dir.join("production.toml"), text).expect("production.toml written");
        let path = dir.to_str().expect("a UTF-8 path").to_owned();
        let env: HashMap<String, String> =
            vars(&[("HERALD_CONFIG_DIR", &path), ("HERALD_ENV", "production")]);
        let loaded = Settings::load_from(&env);
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    #[test]
    fn each_queue_has_its_own_table() {
        let s = Settings::load_from(&vars(&[
            ("HERALD_QUEUES_PUSH_CONCURRENCY", "1"),
            ("HERALD_QUEUES_EXPORT_MAX_ATTEMPTS", "5"),
        ]))
        .unwrap();
        assert_eq!(s.queues.of(QueueName::Push).concurrency, 1);
        assert_eq!(s.queues.of(QueueName::Export).max_attempts, 5);
        assert_eq!(s.queues.of(QueueName::SendMessage).concurrency, 16);
        assert_eq!(s.queues.of(QueueName::SendMessage).max_attempts, 10);
        assert_eq!(s.queues.of(QueueName::Export).concurrency, 2);
        assert_eq!(s.queues.of(QueueName::Push).max_attempts, 12);
    }

    #[test]
    fn the_earlier_flat_names_still_set_their_queue_and_are_reported() {
        // A variable of the old name, alone.
        let s = Settings::load_from(&vars(&[("HERALD_WORKER_PUSH_CONCURRENCY", "1")])).unwrap();
        assert_eq!(s.queues.push.concurrency, 1);
        assert_eq!(s.unknown_keys, ["HERALD_WORKER_PUSH_CONCURRENCY"]);
        // The new name wins when both are set.
        let s = Settings::load_from(&vars(&[
            ("HERALD_WORKER_CONCURRENCY", "3"),
            ("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "4"),
        ]))
        .unwrap();
        assert_eq!(s.queues.send_message.concurrency, 4);
        // An old name in a later file overrides the new name of an earlier
        // one, as the same setting would.
        let s = load_with_production_file(
            "[worker]\nconcurrency = 5\nexport_max_attempts = 1\n\
             [tuisongbao]\nurl = \"https://push.example.com\"\napp_id = \"a\"\nsecret = \"s\"\n",
        )
        .unwrap();
        assert_eq!(s.queues.send_message.concurrency, 5);
        assert_eq!(s.queues.export.max_attempts, 1);
        assert_eq!(
            s.unknown_keys,
            ["worker.concurrency", "worker.export_max_attempts"]
        );
        // An old name's value is checked as the new setting's.
        let err = Settings::load_from(&vars(&[("HERALD_WORKER_EXPORT_CONCURRENCY", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("queues.export.concurrency"), "{err}");
    }
}
