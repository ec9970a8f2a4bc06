//! `[redis]`: the Redis server holding the queues.

use herald_jobs::{
    queue::MAX_QUEUE_SHARDS,
    redact_url,
    redis_url::{is_cluster_url, is_sentinel_url, ClusterUrl, SentinelUrl},
    Namespace,
};

use super::setting::{define_settings, non_empty, Rule, Values};
use super::ConfigError;

define_settings! {
    section "redis";
    URL: "url" = "redis://127.0.0.1:6379",
        Rule::Form("a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL"),
        "queues (`redis+sentinel://` and `redis+cluster://` work, see Operations)";
    NAMESPACE: "namespace" = "herald", Rule::Form("letters, digits, `-`, `_`, `.`"), "prefix of every Redis key";
    QUEUE_SHARDS: "queue_shards" = "1", Rule::Between(1, MAX_QUEUE_SHARDS as u64),
        "hash slots each queue is spread over, by account (docs/operations.md, \"Redis Cluster\")";
}

/// Redis connection and key namespace. Its `Debug` shows the URL without
/// its password.
#[derive(Clone)]
pub struct RedisSettings {
    /// Connection URL.
    pub url: String,
    /// Prefix of every key.
    pub namespace: Namespace,
    /// Shards each queue is spread over (workers consume them all and
    /// write the count for producers, see `herald_jobs::queue::shard_of`).
    pub queue_shards: u16,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("queue_shards", &self.queue_shards)
            .finish()
    }
}

/// Reads and checks `[redis]`.
pub(super) fn read(values: &Values) -> Result<RedisSettings, ConfigError> {
    Ok(RedisSettings {
        url: values.checked(&URL, |url| non_empty(url).and_then(redis_url))?,
        namespace: values.checked(&NAMESPACE, |text: String| {
            Namespace::parse(&text).map_err(|e| e.reason)
        })?,
        queue_shards: values.whole(&QUEUE_SHARDS)?,
    })
}

/// A URL the `redis` crate connects to, a Sentinel URL naming a service,
/// or a cluster URL naming some of its nodes.
fn redis_url(url: String) -> Result<String, String> {
    let bad = |reason: String| format!("'{}' {reason}", redact_url(&url));
    if is_sentinel_url(&url) {
        SentinelUrl::parse(&url).map_err(bad)?;
    } else if is_cluster_url(&url) {
        ClusterUrl::parse(&url).map_err(bad)?;
    } else if !["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Err(format!(
            "'{}' must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://",
            redact_url(&url)
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn sentinel_urls_are_accepted_and_checked() {
        let url = "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0";
        let s = Settings::load_from(&vars(&[("HERALD_REDIS_URL", url)])).unwrap();
        assert_eq!(s.redis.url, url);
        let err = Settings::load_from(&vars(&[(
            "HERALD_REDIS_URL",
            "redis+sentinel://:pw@s1:26379",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HERALD_REDIS_URL") && err.contains("names no service"),
            "{err}"
        );
        assert!(!err.contains(":pw@"), "the password is not shown: {err}");
    }

    #[test]
    fn queue_shards_default_to_one_and_stay_in_range() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.redis.queue_shards, 1);
        let s = Settings::load_from(&vars(&[("HERALD_REDIS_QUEUE_SHARDS", "8")])).unwrap();
        assert_eq!(s.redis.queue_shards, 8);
        for bad in ["0", "65", "two"] {
            let err = Settings::load_from(&vars(&[("HERALD_REDIS_QUEUE_SHARDS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("queue_shards"), "{bad}: {err}");
        }
    }

    #[test]
    fn cluster_urls_are_accepted_and_checked() {
        let url = "redis+cluster://:pw@n1:7000,n2:7001";
        let s = Settings::load_from(&vars(&[("HERALD_REDIS_URL", url)])).unwrap();
        assert_eq!(s.redis.url, url);
        let err = Settings::load_from(&vars(&[("HERALD_REDIS_URL", "redis+cluster://:pw@n1/0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has a path"), "{err}");
        assert!(!err.contains(":pw@"), "the password is not shown: {err}");
    }
}
