//! Where Keyhaven may send requests on a tenant's behalf: webhook deliveries and audit
//! sinks (HTTP and syslog).
//!
//! Only public addresses are reachable by default. Loopback, private (RFC 1918),
//! CGNAT (`100.64.0.0/10`), link-local (including `169.254.169.254`, the cloud metadata
//! service), unique-local (`fc00::/7`), multicast, unspecified, documentation and other
//! reserved ranges are refused — in every notation: an IPv4-mapped IPv6 address
//! (`::ffff:127.0.0.1`) or one embedded in NAT64 / 6to4 is judged by its IPv4 address,
//! and URL spellings such as `2130706433`, `0x7f000001`, `0177.0.0.1` or `127.1` are
//! already `127.0.0.1` once the URL is parsed. An operator allows internal ranges with
//! `KEYHAVEN_OUTBOUND_ALLOWED_CIDRS`.
//!
//! A host name is resolved once, its addresses are checked, and the request is sent to
//! the checked addresses only ([`pinned`]): no second lookup can answer differently.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Which addresses outbound requests may reach: every public address, plus the ranges
/// the operator allowed.
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    allowed: Arc<[IpNet]>,
}

impl OutboundPolicy {
    /// Public addresses plus `allowed`.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        OutboundPolicy {
            allowed: allowed.into(),
        }
    }

    /// The ranges allowed beside the public ones.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether a request may go to `ip`. The unspecified address (`0.0.0.0`, `::`,
    /// which reaches this machine) is never allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        if canonical.is_unspecified() {
            return false;
        }
        !is_internal(canonical)
            || self
                .allowed
                .iter()
                .any(|n| n.contains(&canonical) || n.contains(&ip))
    }
}

/// Whether `ip` is anything but a public unicast address: loopback, private, CGNAT,
/// link-local, unique-local, multicast, unspecified, broadcast, documentation,
/// benchmarking or otherwise reserved. IPv4 carried in IPv6 (mapped, NAT64, 6to4) is
/// judged as that IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0
        || a == 10 // private
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (b & 0xf0) == 16) // private 172.16.0.0/12
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // NAT64 well-known prefix 64:ff9b::/96: the IPv4 address it stands for.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_internal_v4(embedded(s[6], s[7]));
    }
    // 6to4 2002::/16: the IPv4 address of the tunnel end.
    if s[0] == 0x2002 {
        return is_internal_v4(embedded(s[1], s[2]));
    }
    // Only global unicast (2000::/3) is public: this excludes ::, ::1, the IPv4-compatible
    // ::/96, 64:ff9b:1::/48 (local NAT64), 100::/64 (discard), fc00::/7 (unique-local),
    // fe80::/10 (link-local), fec0::/10 (site-local) and ff00::/8 (multicast).
    if (s[0] & 0xe000) != 0x2000 {
        return true;
    }
    (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32
        || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0) // benchmarking 2001:2::/48
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x10) // ORCHID 2001:10::/28
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x20) // ORCHIDv2 2001:20::/28
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation 2001:db8::/32
        || (s[0] & 0xfff0) == 0x3ff0 // documentation 3fff::/20
}

/// Parses a comma-separated list (or list items) of CIDRs or single addresses.
pub fn parse_cidrs<S: AsRef<str>>(items: &[S], what: &str) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|p| p.as_ref().trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{what} {p:?} is not a CIDR such as 10.0.0.0/8"))
        })
        .collect()
}

/// Why a host cannot be sent to.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The name did not resolve (or not in time).
    #[error("the host name does not resolve")]
    Lookup,
    /// Every address is refused by the policy (or is Keyhaven itself).
    #[error("the host resolves to no allowed address")]
    Refused,
}

/// How long a lookup may take.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves `host` once and keeps the addresses `keep` accepts (the policy, and not
/// Keyhaven itself). Fails when it does not resolve or no address is left.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    keep: impl Fn(SocketAddr) -> bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| TargetError::Lookup)?
        .map_err(|_| TargetError::Lookup)?;
    let kept: Vec<SocketAddr> = addrs.filter(|a| keep(*a)).collect();
    if kept.is_empty() {
        return Err(TargetError::Refused);
    }
    Ok(kept)
}

/// A resolver for reqwest that answers `host` with the addresses already checked and
/// refuses every other name: a client built with it never looks a name up itself.
#[derive(Debug, Clone)]
pub struct Pinned {
    host: Option<String>,
    addrs: Vec<SocketAddr>,
}

impl Pinned {
    /// Answers `host` with `addrs`.
    pub fn new(host: &str, addrs: Vec<SocketAddr>) -> Self {
        Pinned {
            host: Some(host.to_string()),
            addrs,
        }
    }

    /// Answers no name at all (for a client that only sends to IP addresses).
    pub fn none() -> Self {
        Pinned {
            host: None,
            addrs: Vec::new(),
        }
    }
}

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found = match &self.host {
            Some(h) if h.eq_ignore_ascii_case(name.as_str()) => Some(self.addrs.clone()),
            _ => None,
        };
        Box::pin(async move {
            match found {
                Some(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                None => {
                    Err(Box::new(TargetError::Refused) as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

/// The resolver of a client pinned to `host` → `addrs` (see [`Pinned`]).
pub fn pinned(host: &str, addrs: Vec<SocketAddr>) -> Arc<Pinned> {
    Arc::new(Pinned::new(host, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_in_every_notation() {
        let p = OutboundPolicy::default();
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!p.permits(ip(s)), "{s} must be refused");
        }
        for s in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(p.permits(ip(s)), "{s} must be allowed");
        }
    }

    #[test]
    fn an_operator_allows_ranges_but_never_unspecified() {
        let p = OutboundPolicy::new(
            parse_cidrs(&["127.0.0.0/8", "fd00::/8", " 10.0.0.5 "], "x").unwrap(),
        );
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(p.permits(ip("fd00::7")));
        assert!(p.permits(ip("10.0.0.5")));
        assert!(!p.permits(ip("10.0.0.6")));
        assert!(!p.permits(ip("::1")));
        let all = OutboundPolicy::new(parse_cidrs(&["0.0.0.0/0", "::/0"], "x").unwrap());
        assert!(!all.permits(ip("0.0.0.0")));
        assert!(!all.permits(ip("::")));
        assert!(parse_cidrs(&["10.0.0.0/8", "nope"], "x").is_err());
    }
}
