//! The table of Redis keys in `docs/ARCHITECTURE.md` (under "### Keys")
//! names every key the code builds, and only those. Each key function is
//! called with the table's placeholders (`<id>`, `<worker>`, ...) for
//! namespace `NAMESPACE` and queue `{NAMESPACE:QUEUE}`, written `Q` as the
//! table writes it, and the two lists must match. A key a Lua script builds
//! from a prefix the code hands it is that prefix followed by what the
//! script appends, and the script must still append it. A key function of
//! the modules that name keys which this test does not call fails too, so
//! a new key cannot go unlisted. No service is needed.

use std::collections::{BTreeMap, BTreeSet};

use herald::export::{retention, slots};
use herald::push::rate_limit;
use herald::queue::{MinuteStat, QueueConfig, TrimReason};
use herald::web::operator::session::{self, Credential};
use herald_jobs::Namespace;

const ARCHITECTURE: &str = include_str!("../docs/ARCHITECTURE.md");

const CLAIMS_LUA: &str = include_str!("../jobs/lua/claims.lua");
const COMPLETE_LUA: &str = include_str!("../queue/src/lua/complete.lua");
const RETENTION_LUA: &str = include_str!("../queue/src/lua/retention.lua");
const DEAD_INDEX_LUA: &str = include_str!("../queue/src/lua/dead_index.lua");

/// The queue the table's `Q` stands for.
const QUEUE: &str = "{NAMESPACE:QUEUE}";

/// The sources of the key functions, by path, for
/// [`every_key_function_is_called`].
const SOURCES: [(&str, &str); 9] = [
    ("queue/src/lib.rs", include_str!("../queue/src/lib.rs")),
    (
        "queue/src/dead_index.rs",
        include_str!("../queue/src/dead_index.rs"),
    ),
    ("jobs/src/queue.rs", include_str!("../jobs/src/queue.rs")),
    ("jobs/src/claims.rs", include_str!("../jobs/src/claims.rs")),
    (
        "src/push/rate_limit.rs",
        include_str!("../src/push/rate_limit.rs"),
    ),
    (
        "src/web/operator/session.rs",
        include_str!("../src/web/operator/session.rs"),
    ),
    (
        "src/export/slots.rs",
        include_str!("../src/export/slots.rs"),
    ),
    (
        "src/export/retention.rs",
        include_str!("../src/export/retention.rs"),
    ),
    (
        "src/store/expiry.rs",
        include_str!("../src/store/expiry.rs"),
    ),
];

/// Functions of [`SOURCES`] named like key functions that build no key of
/// their own: the generic builder, and the prefixes the scripts are handed,
/// whose keys the functions [`built_keys`] calls build
/// ([`scripts_build_the_keys_the_code_names`] checks they agree).
const NOT_KEYS: [&str; 5] = [
    "queue_key",
    "inflight_prefix",
    "meta_prefix",
    "history_prefix",
    "stats_prefix",
];

/// A key the code builds, and the function that builds it (for a key a
/// script builds, the function of the prefix the script is handed).
struct Built {
    by: &'static str,
    key: String,
}

/// The key `key`, built by `by`.
fn built(by: &'static str, key: String) -> Built {
    Built { by, key }
}

/// `literal` must occur in `script` (`name`): the script builds a key
/// that way, and the table names the key that results.
fn assert_script_has(name: &str, script: &str, literal: &str) {
    assert!(
        script.contains(literal),
        "{name} no longer contains `{literal}`: update this test and the key table"
    );
}

/// The table writes `{NAMESPACE:QUEUE}` as `Q`.
fn in_table_form(key: String) -> String {
    match key.strip_prefix(QUEUE) {
        Some(rest) => format!("Q{rest}"),
        None => key,
    }
}

/// Every key the code builds, with the table's placeholders.
fn built_keys() -> Vec<Built> {
    let config = QueueConfig::new(QUEUE);
    let namespace = Namespace::parse("NAMESPACE").expect("a valid namespace");
    let mut keys = vec![
        built("data_key", config.data_key()),
        built("active_key", config.active_key()),
        built("scheduled_key", config.scheduled_key()),
        built("wake_key", config.wake_key()),
        built("workers_key", config.workers_key()),
        built("inflight_key", config.inflight_key("<worker>")),
        built("meta_key", config.meta_key("<id>")),
        built("history_key", config.history_key("<id>")),
        built("done_key", config.done_key()),
        built("dead_key", config.dead_key()),
        built("done_total_key", config.done_total_key()),
        built("bulk_key", config.bulk_key("<id>")),
        built("bulks_key", config.bulks_key()),
        built("paused_key", config.paused_key()),
        built("retention_lock_key", config.retention_lock_key()),
        built("worker_meta_key", config.worker_meta_key("<worker>")),
        built("dead_label_key", config.dead_label_key("<name>", "<value>")),
        built("dead_error_key", config.dead_error_key("<sha1>")),
        built("dead_errors_key", config.dead_errors_key()),
    ];
    for reason in TrimReason::ALL {
        keys.push(built("trimmed_key", config.trimmed_key(reason)));
    }
    for stat in MinuteStat::ALL {
        keys.push(built("minute_key", config.minute_key(stat, "<minute>")));
    }

    // The claims: the scripts build the buckets from the prefix.
    let claims = config.idempotency_prefix();
    assert_script_has(
        "claims.lua",
        CLAIMS_LUA,
        r#"prefix .. ":" .. grid .. ":" .. n .. ":" .. sub"#,
    );
    keys.push(built("idempotency_prefix", format!("{claims}:<W>:<n>:<s>")));
    assert_script_has("claims.lua", CLAIMS_LUA, r#"prefix .. ":forever:" .. sub"#);
    keys.push(built("idempotency_prefix", format!("{claims}:forever:<s>")));
    assert_script_has("claims.lua", CLAIMS_LUA, r#"prefix .. ":grids""#);
    keys.push(built("grids_key", herald_jobs::claims::grids_key(&claims)));

    // The namespace's keys and the keys beside a queue of their own.
    keys.push(built("shard_count_key", namespace.shard_count_key()));
    let rate = rate_limit::rate_key(&namespace);
    keys.push(built(
        "account_rate_key",
        rate_limit::account_rate_key(&rate, "<accountId>"),
    ));
    keys.push(built("rate_key", rate));
    keys.push(built(
        "running_key",
        slots::running_key(&namespace, "<accountId>"),
    ));
    keys.push(built("turn_key", retention::turn_key(&namespace)));
    keys.push(built(
        "turn_key",
        herald::store::expiry::turn_key(&namespace),
    ));

    let tag = session::key_tag(&namespace);
    keys.push(built(
        "session_key",
        session::session_key(&tag, "<sha256 of the id>"),
    ));
    let credentials = [
        Credential::Configured {
            digest: "<sha256 of web.token>".to_owned(),
        },
        Credential::Operator {
            id: "<token id>".to_owned(),
        },
    ];
    for credential in &credentials {
        // A new kind of credential stops this match compiling: add it to
        // `credentials`, and its set to the table.
        match credential {
            Credential::Configured { .. } | Credential::Operator { .. } => {}
        }
        keys.push(built(
            "sessions_key",
            session::sessions_key(&tag, credential),
        ));
    }
    keys
}

/// The keys of the first table after "### Keys" whose first column is
/// `key`: that column, cells split on ", ", each key in backticks.
fn table_keys() -> Vec<String> {
    let after = ARCHITECTURE
        .split_once("\n### Keys\n")
        .expect("docs/ARCHITECTURE.md has a \"### Keys\" section")
        .1;
    let rows: Vec<&str> = after
        .lines()
        .skip_while(|line| !line.starts_with("| key |"))
        .take_while(|line| line.starts_with('|'))
        .collect();
    assert!(
        rows.len() > 2,
        "no key table after \"### Keys\": is the parser right?"
    );
    let mut keys = Vec::new();
    for row in &rows[2..] {
        let cell = row.split('|').nth(1).expect("a first cell").trim();
        for key in cell.split(", ") {
            let bare = key
                .strip_prefix('`')
                .and_then(|key| key.strip_suffix('`'))
                .unwrap_or_else(|| panic!("`{key}` in row `{row}` is not one key in backticks"));
            keys.push(bare.to_owned());
        }
    }
    keys
}

#[test]
fn the_key_table_names_every_key_the_code_builds_and_no_other() {
    let mut code = BTreeMap::new();
    for Built { by, key } in built_keys() {
        assert!(
            key.starts_with(QUEUE) || key.starts_with("{NAMESPACE"),
            "{by} built `{key}`, outside the namespace"
        );
        let key = in_table_form(key);
        if let Some(other) = code.insert(key.clone(), by) {
            panic!("{other} and {by} both build `{key}`");
        }
    }
    let mut table = BTreeSet::new();
    for key in table_keys() {
        assert!(table.insert(key.clone()), "the table names `{key}` twice");
    }

    let unlisted: Vec<String> = code
        .iter()
        .filter(|(key, _)| !table.contains(*key))
        .map(|(key, by)| format!("  `{key}` (built by {by})"))
        .collect();
    let unbuilt: Vec<String> = table
        .iter()
        .filter(|key| !code.contains_key(*key))
        .map(|key| format!("  `{key}`"))
        .collect();
    assert!(
        unlisted.is_empty() && unbuilt.is_empty(),
        "the key table of docs/ARCHITECTURE.md and the code disagree\n\
         built by the code, not in the table:\n{}\n\
         in the table, built by no function:\n{}",
        unlisted.join("\n"),
        unbuilt.join("\n"),
    );
}

/// The names of the functions `source` defines that look like key
/// functions: `..._key` and `..._prefix`.
fn key_functions(source: &str) -> Vec<&str> {
    source
        .match_indices("fn ")
        .filter(|(at, _)| {
            source[..*at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
        .filter_map(|(at, _)| {
            let rest = &source[at + 3..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            let name = &rest[..end];
            (name.ends_with("_key") || name.ends_with("_prefix")).then_some(name)
        })
        .collect()
}

#[test]
fn every_key_function_is_called() {
    let called: BTreeSet<&str> = built_keys().iter().map(|built| built.by).collect();
    let mut uncalled = Vec::new();
    let mut found = 0;
    for (path, source) in SOURCES {
        for name in key_functions(source) {
            found += 1;
            if !called.contains(name) && !NOT_KEYS.contains(&name) {
                uncalled.push(format!("  {path}: {name}"));
            }
        }
    }
    assert!(
        found > 30,
        "only {found} key functions found: is the parser right?"
    );
    assert!(
        uncalled.is_empty(),
        "key functions this test does not call (call them in `built_keys` and \
         list their keys in docs/ARCHITECTURE.md):\n{}",
        uncalled.join("\n")
    );
}

#[test]
fn scripts_build_the_keys_the_code_names() {
    let config = QueueConfig::new(QUEUE);
    // Scripts are handed a prefix and append ":" and the id or worker.
    assert_eq!(
        config.meta_key("<id>"),
        format!("{}:<id>", config.meta_prefix())
    );
    assert_eq!(
        config.history_key("<id>"),
        format!("{}:<id>", config.history_prefix())
    );
    assert_eq!(
        config.inflight_key("<worker>"),
        format!("{}:<worker>", config.inflight_prefix())
    );

    let stats = config.stats_prefix();
    assert_script_has(
        "complete.lua",
        COMPLETE_LUA,
        r#"stats_prefix .. ":total:done""#,
    );
    assert_eq!(config.done_total_key(), format!("{stats}:total:done"));
    for stat in MinuteStat::ALL {
        let name = stat.as_str();
        assert_script_has(
            "complete.lua",
            COMPLETE_LUA,
            &format!(r#"stats_prefix .. ":{name}:" .. minute"#),
        );
        assert_eq!(config.minute_key(stat, 7), format!("{stats}:{name}:7"));
    }
    for reason in TrimReason::ALL {
        let name = reason.as_str();
        assert_script_has(
            "retention.lua",
            RETENTION_LUA,
            &format!(r#"stats_prefix .. ":trimmed:{name}""#),
        );
        assert_eq!(
            config.trimmed_key(reason),
            format!("{stats}:trimmed:{name}")
        );
    }

    let dead = config.dead_key();
    assert_script_has(
        "dead_index.lua",
        DEAD_INDEX_LUA,
        r#"dead .. ":label:" .. name .. ":" .. value"#,
    );
    assert_eq!(config.dead_label_key("n", "v"), format!("{dead}:label:n:v"));
    assert_script_has(
        "dead_index.lua",
        DEAD_INDEX_LUA,
        r#"dead .. ":error:" .. redis.sha1hex(group)"#,
    );
    let group = herald::queue::dead_index::group_id("boom");
    assert_eq!(
        config.dead_error_key(&group),
        format!("{dead}:error:{group}")
    );
    assert_script_has("dead_index.lua", DEAD_INDEX_LUA, r#"dead .. ":errors""#);
    assert_eq!(config.dead_errors_key(), format!("{dead}:errors"));
}

#[test]
fn the_table_parser_reads_every_row() {
    let keys = table_keys();
    assert!(keys.contains(&"Q:data".to_owned()));
    assert!(keys.contains(&"Q:dead".to_owned()), "cells split on \", \"");
    assert!(keys.contains(&"{NAMESPACE}:queue_shards".to_owned()));
}
