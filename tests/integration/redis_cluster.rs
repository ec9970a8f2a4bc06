//! Redis Clusters for the cluster tests: the shared one `scripts/setup.sh --tests`
//! starts (`scripts/redis-cluster.sh`, ports 7100-7105), and private ones a
//! fault test can fail over, six `redis-server` processes on free ports,
//! killed and removed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use herald_jobs::connection::key_slot;

use crate::{
    helpers::{try_redis, wait_within},
    ops::free_port,
};

/// The URL of the shared cluster: `HERALD_TEST_REDIS_CLUSTER_URL`, by
/// default the one `scripts/redis-cluster.sh url` prints.
pub fn shared_cluster_url() -> String {
    std::env::var("HERALD_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102".to_owned()
    })
}

/// Nodes in a private cluster: three primaries, each with one replica.
const NODES: usize = 6;

/// How long a private cluster may take to form or to fail over: a
/// deadline against hangs, not a speed requirement.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(90);

/// How long a replica may take to become the primary after one `CLUSTER
/// FAILOVER` before it is asked again (Redis gives up on a manual failover
/// after five seconds).
const MANUAL_FAILOVER_WAIT: Duration = Duration::from_secs(8);

/// One node of a cluster as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// The node's id.
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a primary (else a replica).
    pub primary: bool,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// Whether the cluster considers it failed.
    pub failed: bool,
    /// The slot ranges it serves (inclusive), for a primary.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// Whether this node serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Parses a `CLUSTER NODES` answer (`id host:port@bus flags primary-id
/// ping pong epoch link slot...`).
pub fn parse_cluster_nodes(answer: &str) -> Vec<ClusterNode> {
    answer
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let address = fields[1].split('@').next()?;
            let port = address.rsplit_once(':')?.1.parse().ok()?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            let slots = fields[8..]
                .iter()
                // Slots being migrated are written [slot->-id]: skip them.
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| match range.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let slot = range.parse().ok()?;
                        Some((slot, slot))
                    }
                })
                .collect();
            Some(ClusterNode {
                id: fields[0].to_owned(),
                port,
                primary: flags.contains(&"master"),
                primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                failed: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                slots,
            })
        })
        .collect()
}

/// A plain connection to the one node at 127.0.0.1:`port`.
pub async fn node_connection(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    try_redis(&format!("redis://127.0.0.1:{port}")).await
}

/// The cluster's nodes as the node at `port` sees them (`None` while it
/// does not answer).
pub async fn cluster_nodes(port: u16) -> Option<Vec<ClusterNode>> {
    let mut conn = node_connection(port).await?;
    let answer: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(parse_cluster_nodes(&answer))
}

/// Whether the node at `port` reports `cluster_state:ok`.
async fn cluster_ok(port: u16) -> bool {
    let Some(mut conn) = node_connection(port).await else {
        return false;
    };
    let info: String = match redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
    {
        Ok(info) => info,
        Err(_) => return false,
    };
    info.lines().any(|line| line.trim() == "cluster_state:ok")
}

/// The role (`master` or `slave`) the node at `port` reports in `INFO
/// replication`.
async fn role(port: u16) -> Option<String> {
    let mut conn = node_connection(port).await?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.trim().strip_prefix("role:").map(str::to_owned))
}

/// Whether every node in `ports` answers `cluster_state:ok` and agrees that
/// three primaries serve all 16,384 slots, each with a replica.
async fn healthy(ports: &[u16]) -> bool {
    for &port in ports {
        if !cluster_ok(port).await {
            return false;
        }
        let Some(nodes) = cluster_nodes(port).await else {
            return false;
        };
        let serving: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| n.primary && !n.failed && !n.slots.is_empty())
            .collect();
        let slots: u32 = serving
            .iter()
            .flat_map(|n| n.slots.iter())
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum();
        // Replicas are first seen as primaries without slots: wait until
        // every node knows each replica as one.
        let replicas = nodes
            .iter()
            .filter(|n| !n.primary && !n.failed && n.primary_id.is_some())
            .count();
        if serving.len() != 3 || slots != 16_384 || replicas != 3 {
            return false;
        }
    }
    // Every replica has its first copy of its primary's data.
    for &port in ports {
        if role(port).await.as_deref() == Some("slave") && !link_up(port).await {
            return false;
        }
    }
    true
}

/// Whether the replica at `port` reports `master_link_status:up`.
async fn link_up(port: u16) -> bool {
    let Some(mut conn) = node_connection(port).await else {
        return false;
    };
    let info: String = match redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
    {
        Ok(info) => info,
        Err(_) => return false,
    };
    info.lines()
        .any(|line| line.trim() == "master_link_status:up")
}

/// A free port below 55,535 whose cluster bus port (+10,000) is free too,
/// and not among `taken`.
fn free_cluster_port(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if port >= 55_535 || taken.contains(&port) || taken.contains(&(port + 10_000)) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A private six-node Redis Cluster (three primaries, three replicas) on
/// free ports, in a temporary directory; its nodes are killed and the
/// directory removed on drop.
pub struct PrivateCluster {
    ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Child>,
}

impl PrivateCluster {
    /// Starts the six nodes, joins them with `redis-cli --cluster create`
    /// and waits until every node reports `cluster_state:ok`.
    pub async fn start() -> Self {
        let mut ports: Vec<u16> = Vec::with_capacity(NODES);
        while ports.len() < NODES {
            let port = free_cluster_port(&ports);
            ports.push(port);
        }
        let dir = std::env::temp_dir().join(format!("herald-cluster-{}", ports[0]));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cluster = Self {
            ports: ports.clone(),
            dir,
            children: Vec::with_capacity(NODES),
        };
        for &port in &ports {
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("private cluster node dir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(node_dir.join("nodes.conf"))
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (Debian: redis-server)");
            cluster.children.push(child);
        }
        for &port in &ports {
            wait_within(
                "a private cluster node to answer",
                CLUSTER_PATIENCE,
                Duration::from_millis(20),
                || async move { node_connection(port).await.map(|_| ()) },
            )
            .await;
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli runs (Debian: redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_healthy("the private cluster to form").await;
        cluster
    }

    /// The URL to give Herald: `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Fails over the primary that owns `key`'s slot: `CLUSTER FAILOVER` on
    /// one of its replicas, then waits until that replica reports
    /// `role:master` and every node `cluster_state:ok` again. Returns the
    /// ports of the old primary and of the new one.
    pub async fn fail_over(&self, key: &str) -> (u16, u16) {
        let slot = key_slot(key.as_bytes());
        let nodes = cluster_nodes(self.ports[0])
            .await
            .expect("the private cluster answers CLUSTER NODES");
        let primary = nodes
            .iter()
            .find(|n| n.primary && !n.failed && n.serves(slot))
            .unwrap_or_else(|| panic!("no primary serves slot {slot}: {nodes:#?}"))
            .clone();
        let replica = nodes
            .iter()
            .find(|n| !n.primary && !n.failed && n.primary_id.as_deref() == Some(&primary.id))
            .unwrap_or_else(|| panic!("primary {} has no replica: {nodes:#?}", primary.port))
            .clone();
        let mut conn = node_connection(replica.port)
            .await
            .expect("the replica answers");
        // A manual failover the primary does not agree to within five
        // seconds is dropped without an error (Redis's CLUSTER_MF_TIMEOUT):
        // ask again until the replica takes over.
        let start = std::time::Instant::now();
        'asked: loop {
            redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .query_async::<()>(&mut conn)
                .await
                .expect("CLUSTER FAILOVER accepted");
            let asked = std::time::Instant::now();
            while asked.elapsed() < MANUAL_FAILOVER_WAIT {
                if role(replica.port).await.as_deref() == Some("master") {
                    break 'asked;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                start.elapsed() < CLUSTER_PATIENCE,
                "timed out waiting for replica {} to report role:master",
                replica.port
            );
        }
        wait_within(
            "the new primary to serve the slot everywhere",
            CLUSTER_PATIENCE,
            Duration::from_millis(50),
            || async {
                for &port in &self.ports {
                    let nodes = cluster_nodes(port).await?;
                    nodes
                        .iter()
                        .find(|n| n.port == replica.port && n.primary && n.serves(slot))?;
                }
                Some(())
            },
        )
        .await;
        self.wait_healthy("the cluster to be ok after the failover")
            .await;
        (primary.port, replica.port)
    }

    /// Waits until every node is ok and three primaries serve every slot.
    async fn wait_healthy(&self, what: &str) {
        wait_within(
            what,
            CLUSTER_PATIENCE,
            Duration::from_millis(100),
            || async { healthy(&self.ports).await.then_some(()) },
        )
        .await;
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn cluster_nodes_answers_are_parsed() {
    let answer = "\
a1 127.0.0.1:7100@17100 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7101@17101 master - 0 0 2 connected 5461-10921 10922 [10923->-c3]
c3 127.0.0.1:7102@17102 master,fail - 0 0 3 connected
d4 127.0.0.1:7104@17104 slave a1 0 0 1 connected
";
    let nodes = parse_cluster_nodes(answer);
    assert_eq!(nodes.len(), 4);
    assert!(nodes[0].primary && nodes[0].serves(0) && nodes[0].serves(5460));
    assert_eq!(nodes[1].slots, vec![(5461, 10921), (10922, 10922)]);
    assert!(nodes[2].failed && nodes[2].slots.is_empty());
    assert_eq!(nodes[3].primary_id.as_deref(), Some("a1"));
    assert!(!nodes[3].primary);
    assert_eq!(nodes[3].port, 7104);
}
