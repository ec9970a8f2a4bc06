//! One connection type for every way Herald reaches Redis.
//!
//! [`RedisConnection`] is a managed connection to one server (directly or
//! through Sentinel) or a cluster connection, chosen by the URL's scheme
//! (see [`crate::redis_url`]). Both reconnect by themselves and are cheap
//! to clone (clones share the connection); commands, pipelines and scripts
//! run through either unchanged, since Herald's keys carry hash tags (see
//! [`crate::queue`]). On a cluster a script or pipeline goes to the
//! primary that owns its keys' slot, so all its keys must share one tag.

use std::time::Duration;

use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
    Cmd, Pipeline, RedisFuture, RedisResult, Value,
};

use crate::redis_url::{self, is_cluster_url, ClusterUrl};

/// How long a connection waits before it gives up, and how often it
/// retries: the same knobs for a server and for a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// Longest wait to open a connection.
    pub connect: Duration,
    /// Longest wait for one answer.
    pub response: Duration,
    /// Attempts to reconnect (one server) or to retry a redirected or
    /// failed request (a cluster) before an error is returned.
    pub retries: usize,
}

impl Default for Patience {
    /// Five seconds to connect, ten for an answer (a fetch of a large
    /// batch on a busy server takes longer than the driver's 500 ms), two
    /// retries.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(10),
            retries: 2,
        }
    }
}

/// A connection to one Redis server or to a Redis Cluster; see the module
/// docs.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server: `redis://`, `rediss://`, `unix://` or the master
    /// `redis+sentinel://` names.
    Single(ConnectionManager),
    /// A cluster: `redis+cluster://`.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Opens a connection to `url` with `patience`. A Sentinel URL is
    /// resolved to the current master; a cluster URL's nodes are asked for
    /// the cluster's layout.
    pub async fn open(url: &str, patience: Patience) -> RedisResult<Self> {
        if is_cluster_url(url) {
            let parsed = ClusterUrl::parse(url).map_err(redis_url::invalid)?;
            let nodes: Vec<String> = parsed
                .nodes
                .iter()
                .map(|(host, port)| match host.contains(':') {
                    true => format!("redis://[{host}]:{port}"),
                    false => format!("redis://{host}:{port}"),
                })
                .collect();
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(patience.connect)
                .response_timeout(patience.response)
                // Each attempt has `response`; a request redirected during a
                // failover may need several.
                .overall_response_timeout(Some(patience.response * (patience.retries as u32 + 2)))
                .retries(patience.retries.max(1) as u32 * 8);
            if let Some(user) = &parsed.username {
                builder = builder.username(user);
            }
            if let Some(password) = &parsed.password {
                builder = builder.password(password);
            }
            let client = builder.build()?;
            Ok(Self::Cluster(client.get_async_connection().await?))
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(patience.connect))
                .set_response_timeout(Some(patience.response))
                .set_number_of_retries(patience.retries);
            let client = redis_url::client(url).await?;
            Ok(Self::Single(
                client.get_connection_manager_with_config(config).await?,
            ))
        }
    }

    /// Whether this is a cluster connection: commands that address the
    /// whole keyspace (`SCAN`, `INFO`) answer for one node only.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }

    /// `INFO section` of the server that holds `key`: the one server, or
    /// the cluster primary that owns `key`'s slot.
    pub async fn info_for_key(&mut self, section: &str, key: &str) -> RedisResult<String> {
        let mut info = redis::cmd("INFO");
        info.arg(section);
        match self {
            RedisConnection::Single(conn) => info.query_async(conn).await,
            RedisConnection::Cluster(conn) => {
                let route = Route::new(key_slot(key.as_bytes()), SlotAddr::Master);
                let answer = conn
                    .route_command(
                        info,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(answer)?)
            }
        }
    }

    /// Every key matching `pattern` (`SCAN MATCH`), on the one server or on
    /// every cluster primary. For tools, tests and one-off moves: it walks
    /// the whole keyspace.
    pub async fn scan_match(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        let nodes = match self {
            RedisConnection::Single(_) => vec![None],
            RedisConnection::Cluster(conn) => primaries(conn)
                .await?
                .into_iter()
                .map(|(host, port)| Some(SingleNodeRoutingInfo::ByAddress { host, port }))
                .collect(),
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let (next, page) = self.scan_page(node.as_ref(), cursor, pattern).await?;
                keys.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // SCAN may return a key twice.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// One `SCAN` step on the one server, or on cluster node `node`.
    async fn scan_page(
        &mut self,
        node: Option<&SingleNodeRoutingInfo>,
        cursor: u64,
        pattern: &str,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        match (self, node) {
            (RedisConnection::Cluster(conn), Some(node)) => {
                let answer = conn
                    .route_command(scan, RoutingInfo::SingleNode(node.clone()))
                    .await?;
                Ok(redis::from_redis_value(answer)?)
            }
            (conn, _) => scan.query_async(conn).await,
        }
    }
}

/// Keys one `SCAN` step asks a server to look at.
const SCAN_COUNT: usize = 1_000;

/// The cluster's primaries that are up, host and port (`CLUSTER NODES`).
async fn primaries(conn: &mut ClusterConnection) -> RedisResult<Vec<(String, u16)>> {
    let answer = conn
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await?;
    let nodes: String = redis::from_redis_value(answer)?;
    Ok(parse_primaries(&nodes))
}

/// The primaries that are up in a `CLUSTER NODES` answer: lines of
/// `id host:port@bus flags master ...`.
fn parse_primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_up_primary = flags.split(',').any(|f| f == "master")
                && !flags
                    .split(',')
                    .any(|f| f == "fail" || f == "fail?" || f == "noaddr");
            if !is_up_primary {
                return None;
            }
            let address = address.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the part
/// between the first `{` and the next `}`, when not empty) or of the whole
/// key, modulo 16,384, as Redis Cluster computes it.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % 16_384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}
impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_computed_as_redis_cluster_does() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{herald:push}:data"),
            key_slot(b"{herald:push}:meta:01J")
        );
        // An empty tag hashes the whole key.
        assert_eq!(key_slot(b"{}x"), crc16_xmodem(b"{}x") % 16_384);
    }

    #[test]
    fn the_primaries_that_are_up_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 [::1]:7004@17004 master - 0 0 5 connected 10923-16383
";
        assert_eq!(
            parse_primaries(nodes),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001),
                ("::1".to_owned(), 7004)
            ]
        );
    }
}
