//! Who is on the other end of a request: the client's address.
//!
//! The server ([`super::server`]) puts the connection's peer address into
//! every request ([`PeerAddr`]). Behind a reverse proxy that is the
//! proxy's, so for a peer listed in `web.trusted_proxies` the client is the
//! nearest address in `X-Forwarded-For` that is not a trusted proxy itself;
//! a header from anyone else is ignored, so a client cannot choose the
//! address it is throttled and audited under.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::http::{request::Parts, HeaderMap};

/// The connection's peer address, as the server accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address: what failed sign-ins are counted by.
    pub ip: IpAddr,
    /// How the audit trail names it: the address, and the proxy it came
    /// through when it came through one.
    pub shown: String,
}

impl Client {
    /// The client of the request with `parts`, believing `X-Forwarded-For`
    /// only from `trusted` peers.
    pub fn of(parts: &Parts, trusted: &[IpAddr]) -> Self {
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip());
        Self::from_peer(peer, &parts.headers, trusted)
    }

    /// The client for a connection from `peer` (unknown when the request
    /// did not come through the server, as in a unit test) sending
    /// `headers`.
    pub fn from_peer(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Self {
        let Some(peer) = peer else {
            return Self {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                shown: "unknown".to_owned(),
            };
        };
        if !trusted.contains(&peer) {
            return Self {
                ip: peer,
                shown: peer.to_string(),
            };
        }
        // Each proxy appends the address it got the request from; the
        // nearest one that is no trusted proxy is the client.
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        match forwarded.iter().rev().find(|a| !trusted.contains(a)) {
            Some(client) => Self {
                ip: *client,
                shown: format!("{client} via {peer}"),
            },
            None => Self {
                ip: peer,
                shown: peer.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(forwarded).unwrap());
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let spoofed = headers("1.2.3.4");
        let client = Client::from_peer(Some(stranger), &spoofed, &[proxy]);
        assert_eq!(client.ip, stranger, "a stranger cannot choose its address");
        let client = Client::from_peer(Some(proxy), &headers("1.2.3.4, 198.51.100.7"), &[proxy]);
        assert_eq!(client.ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client.shown, "198.51.100.7 via 10.0.0.5");
        let client = Client::from_peer(Some(proxy), &HeaderMap::new(), &[proxy]);
        assert_eq!(client.ip, proxy);
        assert_eq!(Client::from_peer(None, &spoofed, &[]).shown, "unknown");
    }
}
