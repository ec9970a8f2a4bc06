//! Opening Redis from a URL: one server, the master that Sentinel names,
//! or a Redis Cluster.
//!
//! Besides every URL the `redis` crate takes (`redis://`, `rediss://`,
//! `unix://`), Herald accepts
//!
//! ```text
//! redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?sentinel_password=P]
//! redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]
//! ```
//!
//! A cluster URL names some of the cluster's nodes (port 6379 unless
//! given); the client learns the rest, and follows `MOVED` and `ASK`
//! redirections and changes of topology (a failover) by itself. A cluster
//! has one database, so the URL has no path.
//!
//! The hosts are Sentinel nodes (port 26379 unless given), `SERVICE` is the
//! name they monitor (`sentinel monitor SERVICE ...`), `DB` the database
//! number (0). The user and password are the Redis master's; sentinels that
//! require their own password get it from `sentinel_password`. Special
//! characters in credentials are percent-encoded, as in any URL.
//!
//! The master is looked up when the connection is opened. A process keeps
//! that master until it restarts: [`master_address`] lets a long-running
//! process notice a failover and restart (see the worker).

use redis::{
    sentinel::{Sentinel, SentinelNodeConnectionInfo},
    Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    RedisResult,
};

/// The scheme of Sentinel URLs.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// The default Sentinel port.
pub const SENTINEL_PORT: u16 = 26379;

/// The scheme of Redis Cluster URLs.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// The default port of a cluster node.
pub const CLUSTER_PORT: u16 = 6379;

/// A parsed `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// Sentinel nodes, host and port.
    pub sentinels: Vec<(String, u16)>,
    /// The monitored master's name.
    pub service: String,
    /// Database number on the master.
    pub db: i64,
    /// User on the master (Redis 6 ACL), if any.
    pub username: Option<String>,
    /// Password on the master, if any.
    pub password: Option<String>,
    /// Password of the sentinels themselves, if any.
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Whether `url` names Sentinel nodes rather than a Redis server.
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with(SENTINEL_SCHEME)
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in '{text}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{text}' does not decode to UTF-8"))
}

fn parse_host(host: &str, default_port: u16) -> Result<(String, u16), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [IPv6]:port
        let (name, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{host}' lacks a closing ']'"))?;
        (name, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return Err("a host is empty".to_owned());
    }
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("'{p}' is not a port number"))?,
        None => default_port,
    };
    Ok((name.to_owned(), port))
}

/// `USER:PASSWORD` of a URL's authority, decoded; empty parts are absent.
type Credentials = (Option<String>, Option<String>);

/// Splits `authority` into its credentials and its comma-separated hosts.
fn parse_authority(
    authority: &str,
    default_port: u16,
) -> Result<(Credentials, Vec<(String, u16)>), String> {
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let credentials = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
            let password = password.filter(|p| !p.is_empty()).map(decode).transpose()?;
            (user, password)
        }
    };
    let hosts = hosts
        .split(',')
        .map(|host| parse_host(host, default_port))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((credentials, hosts))
}

/// Whether `url` names Redis Cluster nodes.
pub fn is_cluster_url(url: &str) -> bool {
    url.starts_with(CLUSTER_SCHEME)
}

/// A parsed `redis+cluster://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// Nodes to learn the cluster from, host and port.
    pub nodes: Vec<(String, u16)>,
    /// User on the nodes (Redis 6 ACL), if any.
    pub username: Option<String>,
    /// Password on the nodes, if any.
    pub password: Option<String>,
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ClusterUrl {
    /// Parses a `redis+cluster://` URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix(CLUSTER_SCHEME)
            .ok_or_else(|| format!("does not start with {CLUSTER_SCHEME}"))?;
        if rest.contains('?') {
            return Err("has parameters; a cluster URL takes none".to_owned());
        }
        let authority = match rest.split_once('/') {
            Some((authority, "")) => authority,
            Some(_) => {
                return Err("has a path; a cluster has one database and its URL no path".to_owned())
            }
            None => rest,
        };
        let ((username, password), nodes) = parse_authority(authority, CLUSTER_PORT)?;
        Ok(Self {
            nodes,
            username,
            password,
        })
    }
}

impl SentinelUrl {
    /// Parses a `redis+sentinel://` URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix(SENTINEL_SCHEME)
            .ok_or_else(|| format!("does not start with {SENTINEL_SCHEME}"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or("names no service: add /SERVICE after the sentinel hosts")?;
        let ((username, password), sentinels) = parse_authority(authority, SENTINEL_PORT)?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let service = segments
            .next()
            .ok_or("names no service: add /SERVICE after the sentinel hosts")
            .and_then(|s| decode(s).map_err(|_| "has a badly encoded service name"))?;
        let db = match segments.next() {
            Some(db) => db
                .parse()
                .map_err(|_| format!("'{db}' is not a database number"))?,
            None => 0,
        };
        if let Some(extra) = segments.next() {
            return Err(format!("has an unexpected path segment '{extra}'"));
        }
        let mut sentinel_password = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_password", value)) => sentinel_password = Some(decode(value)?),
                _ => return Err(format!("has an unknown parameter '{pair}'")),
            }
        }
        Ok(Self {
            sentinels,
            service,
            db,
            username,
            password,
            sentinel_password,
        })
    }

    fn sentinel(&self) -> RedisResult<Sentinel> {
        let nodes = self
            .sentinels
            .iter()
            .map(|(host, port)| {
                let mut redis = RedisConnectionInfo::default();
                if let Some(password) = &self.sentinel_password {
                    redis = redis.set_password(password);
                }
                ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()
                    .map(|info| info.set_redis_settings(redis))
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Sentinel::build(nodes)
    }

    fn master_info(&self) -> SentinelNodeConnectionInfo {
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        SentinelNodeConnectionInfo::default().set_redis_connection_info(redis)
    }

    /// Asks the sentinels for the current master and returns a client for it
    /// (the master is checked to consider itself master).
    pub async fn master_client(&self) -> RedisResult<Client> {
        self.sentinel()?
            .async_master_for(&self.service, Some(&self.master_info()))
            .await
    }
}

pub(crate) fn invalid(detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, "invalid Redis URL", detail))
}

/// A client for `url`: the server itself, or the master Sentinel names now.
pub async fn client(url: &str) -> RedisResult<Client> {
    if is_sentinel_url(url) {
        SentinelUrl::parse(url)
            .map_err(invalid)?
            .master_client()
            .await
    } else {
        Client::open(url)
    }
}

/// The address (`host:port`) of the master a client opened from `url`
/// would talk to now: `None` for a URL that is not a Sentinel URL.
pub async fn master_address(url: &str) -> RedisResult<Option<String>> {
    if !is_sentinel_url(url) {
        return Ok(None);
    }
    let client = client(url).await?;
    Ok(Some(client.get_connection_info().addr().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_sentinel_url_parses() {
        let url = SentinelUrl::parse(
            "redis+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/mymaster/2?sentinel_password=x%2Fy",
        )
        .unwrap();
        assert_eq!(
            url.sentinels,
            vec![
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), 26379),
                ("::1".to_owned(), 26381)
            ]
        );
        assert_eq!(url.service, "mymaster");
        assert_eq!(url.db, 2);
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.sentinel_password.as_deref(), Some("x/y"));
        assert!(!format!("{url:?}").contains("p@ss"));
    }

    #[test]
    fn a_minimal_sentinel_url_parses() {
        let url = SentinelUrl::parse("redis+sentinel://127.0.0.1/herald").unwrap();
        assert_eq!(url.sentinels, vec![("127.0.0.1".to_owned(), 26379)]);
        assert_eq!((url.service.as_str(), url.db), ("herald", 0));
        assert_eq!((url.username, url.password), (None, None));
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("redis+sentinel://h1:26379", "names no service"),
            ("redis+sentinel://h1:26379/", "names no service"),
            ("redis+sentinel://h1:x/m", "not a port number"),
            ("redis+sentinel://h1/m/zero", "not a database number"),
            ("redis+sentinel://h1/m/0/x", "unexpected path segment"),
            ("redis+sentinel://h1,/m", "host is empty"),
            ("redis+sentinel://h1/m?tls=1", "unknown parameter"),
        ] {
            let err = SentinelUrl::parse(url).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn cluster_urls_parse_and_bad_ones_say_what_is_wrong() {
        let url = ClusterUrl::parse("redis+cluster://app:s%3Acret@n1:7000,n2,[::1]:7002").unwrap();
        assert_eq!(
            url.nodes,
            vec![
                ("n1".to_owned(), 7000),
                ("n2".to_owned(), 6379),
                ("::1".to_owned(), 7002)
            ]
        );
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("s:cret"));
        assert!(!format!("{url:?}").contains("s:cret"));
        assert_eq!(
            ClusterUrl::parse("redis+cluster://n1/")
                .unwrap()
                .nodes
                .len(),
            1
        );
        for (url, expected) in [
            ("redis+cluster://n1:7000/0", "has a path"),
            ("redis+cluster://n1?tls=1", "has parameters"),
            ("redis+cluster://n1:x", "not a port number"),
            ("redis+cluster://n1,", "host is empty"),
            ("redis://n1", "does not start with"),
        ] {
            let err = ClusterUrl::parse(url).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
