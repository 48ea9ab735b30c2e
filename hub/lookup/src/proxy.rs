//! Which address a request comes from when it may have passed reverse
//! proxies: the rate limits count per client address, so a client that could
//! name its own address could escape them (or lock out someone else).
//!
//! Guarantee: with [`ClientAddrPolicy::TrustedProxies`], a forwarding header
//! counts only when the TCP peer is inside a trusted CIDR, and then only the
//! hops that trusted proxies appended are believed: the walk goes from the
//! right (the entry the nearest proxy wrote) and stops at the first address
//! that is not itself a trusted proxy. Whatever a client writes into the
//! header lies to the left of that address and is never read. A header that
//! is too long, has too many hops, or holds an entry that does not parse
//! stops the walk; the client is then the last trusted proxy walked (the one
//! that forwarded the unreadable entry), never an address taken from it.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest forwarding header read (`X-Forwarded-For` or `Forwarded`, all
/// its lines together), in bytes.
pub const FORWARDED_FOR_BYTES_MAX: usize = 1024;

/// Most hops of a forwarding header walked before giving up.
pub const FORWARDED_HOPS_MAX: usize = 32;

/// Most CIDRs in one trusted-proxies list.
pub const TRUSTED_PROXIES_MAX: usize = 64;

/// An address block: an IPv4 or IPv6 network and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR or trusted-proxies list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address` or `address/prefix length`.
    #[error("{0:?} is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)")]
    Syntax(String),
    /// The prefix length is longer than the address.
    #[error("{0:?}: the prefix length is longer than the address (at most 32 for IPv4, 128 for IPv6)")]
    PrefixLen(String),
    /// Bits are set after the prefix (a typo, or a host address meant as a network).
    #[error("{0:?} has bits set after the prefix (did you mean {1}?)")]
    HostBits(String, String),
    /// The list is empty.
    #[error("the list of trusted proxies is empty")]
    Empty,
    /// The list is longer than [`TRUSTED_PROXIES_MAX`].
    #[error("more than {TRUSTED_PROXIES_MAX} trusted proxy CIDRs")]
    TooMany,
}

fn mask(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl Cidr {
    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) counts
    /// as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix_len) == self.network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip = addr.parse::<IpAddr>().map_err(|_| CidrError::Syntax(s.to_owned()))?.to_canonical();
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => bits,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && l.len() <= 3 => {
                l.parse::<u8>().map_err(|_| CidrError::Syntax(s.to_owned()))?
            }
            Some(_) => return Err(CidrError::Syntax(s.to_owned())),
        };
        if prefix_len > bits {
            return Err(CidrError::PrefixLen(s.to_owned()));
        }
        let network = mask(ip, prefix_len);
        if network != ip {
            return Err(CidrError::HostBits(s.to_owned(), format!("{network}/{prefix_len}")));
        }
        Ok(Self { network, prefix_len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The reverse proxies whose forwarding headers are believed: a
/// comma-separated list of CIDRs or single addresses, IPv4 and IPv6, at most
/// [`TRUSTED_PROXIES_MAX`] of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The CIDRs.
    pub fn cidrs(&self) -> &[Cidr] {
        &self.0
    }
}

impl FromStr for TrustedProxies {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let mut cidrs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if cidrs.len() == TRUSTED_PROXIES_MAX {
                return Err(CidrError::TooMany);
            }
            cidrs.push(part.parse()?);
        }
        if cidrs.is_empty() {
            return Err(CidrError::Empty);
        }
        Ok(Self(cidrs))
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Which forwarding header the trusted proxies append to. Only one is read:
/// a client can send the other one freely, and a proxy passes it on
/// untouched, so reading both would let it pick its own address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, Envoy,
    /// Traefik, cloud load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1;proto=https` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name (lower case, as HTTP/2 and gRPC metadata carry it).
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    /// The address of one comma-separated entry of the header, if it
    /// names one (`unknown` and obfuscated RFC 7239 identifiers do not).
    fn entry(self, entry: &str) -> Option<IpAddr> {
        match self {
            Self::XForwardedFor => forwarded_for_entry(entry),
            Self::Forwarded => {
                let value = entry.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then_some(value.trim())
                })?;
                let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
                forwarded_for_entry(value)
            }
        }
    }
}

/// The last address of an `X-Forwarded-For` value, if it parses.
pub fn last_forwarded_for(value: &str) -> Option<IpAddr> {
    if value.len() > FORWARDED_FOR_BYTES_MAX {
        return None;
    }
    forwarded_for_entry(value.rsplit(',').next()?)
}

/// The address of one `X-Forwarded-For` entry (or RFC 7239 `for=` value):
/// an IPv4 or IPv6 address, optionally with a port (`a.b.c.d:port`,
/// `[v6]:port`, or `[v6]`).
pub fn forwarded_for_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = e.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    e.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// How the client address of a request is found.
#[derive(Debug, Clone, Default)]
pub enum ClientAddrPolicy {
    /// The TCP peer; forwarding headers are ignored.
    #[default]
    Peer,
    /// Deprecated (`--trust-forwarded-for`): the last entry of the last
    /// `X-Forwarded-For` line, from any peer.
    LastForwardedFor,
    /// Forwarding headers count only from a trusted proxy, walked from the
    /// right to the first address that is not a trusted proxy.
    TrustedProxies {
        /// The trusted proxies.
        proxies: TrustedProxies,
        /// The header they append to.
        header: ForwardedHeader,
    },
}

impl ClientAddrPolicy {
    /// The header this policy reads, if any.
    pub fn header(&self) -> Option<&'static str> {
        match self {
            Self::Peer => None,
            Self::LastForwardedFor => Some(ForwardedHeader::XForwardedFor.name()),
            Self::TrustedProxies { header, .. } => Some(header.name()),
        }
    }

    /// The client address of a request from `peer` whose lines of
    /// [`Self::header`] are `lines`, in the order they arrived. Allocates
    /// nothing.
    pub fn client<'a, I>(&self, peer: IpAddr, lines: I) -> IpAddr
    where
        I: DoubleEndedIterator<Item = &'a [u8]>,
    {
        match self {
            Self::Peer => peer,
            Self::LastForwardedFor => lines
                .last()
                .and_then(|l| std::str::from_utf8(l).ok())
                .and_then(last_forwarded_for)
                .unwrap_or(peer),
            Self::TrustedProxies { proxies, header } => walk(proxies, *header, peer.to_canonical(), lines),
        }
    }
}

fn walk<'a, I>(proxies: &TrustedProxies, header: ForwardedHeader, peer: IpAddr, lines: I) -> IpAddr
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    if !proxies.contains(peer) {
        return peer;
    }
    // The nearest address known to be a trusted proxy.
    let mut nearest = peer;
    let mut bytes = 0usize;
    let mut hops = 0usize;
    for line in lines.rev() {
        bytes = bytes.saturating_add(line.len());
        if bytes > FORWARDED_FOR_BYTES_MAX {
            return nearest;
        }
        let Ok(line) = std::str::from_utf8(line) else { return nearest };
        for entry in line.rsplit(',') {
            hops += 1;
            if hops > FORWARDED_HOPS_MAX {
                return nearest;
            }
            let Some(ip) = header.entry(entry) else { return nearest };
            let ip = ip.to_canonical();
            if !proxies.contains(ip) {
                return ip;
            }
            nearest = ip;
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str, header: ForwardedHeader) -> ClientAddrPolicy {
        ClientAddrPolicy::TrustedProxies { proxies: list.parse().unwrap(), header }
    }

    fn xff(list: &str) -> ClientAddrPolicy {
        trusted(list, ForwardedHeader::XForwardedFor)
    }

    fn client(p: &ClientAddrPolicy, peer: &str, lines: &[&str]) -> IpAddr {
        p.client(ip(peer), lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn the_last_forwarded_address_counts() {
        assert_eq!(last_forwarded_for("203.0.113.9"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_forwarded_for("1.1.1.1, 203.0.113.9"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_forwarded_for("1.1.1.1, 2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(last_forwarded_for("1.1.1.1, 203.0.113.9:4711"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_forwarded_for("203.0.113.9, garbage"), None);
        assert_eq!(last_forwarded_for(&"1".repeat(2000)), None);
    }

    #[test]
    fn cidrs_parse_strictly() {
        let t: TrustedProxies = "10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,::1".parse().unwrap();
        assert_eq!(t.to_string(), "10.0.0.0/8,192.168.1.7/32,2001:db8::/32,::1/128");
        assert!(t.contains(ip("10.200.3.4")) && t.contains(ip("192.168.1.7")) && t.contains(ip("::1")));
        assert!(t.contains(ip("2001:db8:ffff::1")) && t.contains(ip("::ffff:10.1.2.3")), "v4-mapped peer");
        assert!(
            !t.contains(ip("11.0.0.1")) && !t.contains(ip("192.168.1.8")) && !t.contains(ip("2001:db9::1"))
        );
        let any: TrustedProxies = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("203.0.113.9")) && !any.contains(ip("2001:db8::1")), "families do not mix");
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(CidrError::HostBits("10.0.0.1/8".into(), "10.0.0.0/8".into()))
        );
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::PrefixLen(_))));
        assert!(matches!("::/129".parse::<Cidr>(), Err(CidrError::PrefixLen(_))));
        for bad in ["10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "example.org", "10.0.0.0/8/8", "10.0.0.0/0008"] {
            assert!(matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax(_))), "{bad}");
        }
        assert_eq!("".parse::<TrustedProxies>(), Err(CidrError::Empty));
        assert_eq!(" , ".parse::<TrustedProxies>(), Err(CidrError::Empty));
        let many = vec!["10.0.0.1"; TRUSTED_PROXIES_MAX + 1].join(",");
        assert_eq!(many.parse::<TrustedProxies>(), Err(CidrError::TooMany));
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_changes_nothing() {
        let p = xff("10.0.0.0/8");
        assert_eq!(client(&p, "203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        assert_eq!(client(&p, "203.0.113.9", &["10.0.0.1, 198.51.100.1"]), ip("203.0.113.9"));
        assert_eq!(client(&ClientAddrPolicy::Peer, "203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_what_the_client_wrote_is_ignored() {
        let p = xff("10.0.0.0/8");
        assert_eq!(client(&p, "10.0.0.5", &["198.51.100.1"]), ip("198.51.100.1"));
        // The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended its peer.
        assert_eq!(client(&p, "10.0.0.5", &["1.2.3.4, 198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(
            client(&p, "10.0.0.5", &["1.2.3.4", "198.51.100.1:4711"]),
            ip("198.51.100.1"),
            "two lines"
        );
        // No header: the proxy itself.
        assert_eq!(client(&p, "10.0.0.5", &[]), ip("10.0.0.5"));
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked_from_the_right() {
        let p = xff("10.0.0.0/8,192.168.0.0/16");
        let c = |lines: &[&str]| client(&p, "10.0.0.5", lines);
        assert_eq!(c(&["6.6.6.6, 198.51.100.1, 192.168.3.3, 10.9.9.9"]), ip("198.51.100.1"));
        // Every hop trusted: the left-most (an internal client behind the proxies).
        assert_eq!(c(&["192.168.3.3, 10.9.9.9"]), ip("192.168.3.3"));
        // An unreadable hop stops the walk at the proxy that forwarded it.
        assert_eq!(c(&["198.51.100.1, garbage, 10.9.9.9"]), ip("10.9.9.9"));
        assert_eq!(c(&["198.51.100.1,, 10.9.9.9"]), ip("10.9.9.9"));
        assert_eq!(c(&["unknown"]), ip("10.0.0.5"));
        // Limits: too many hops or bytes stop at the nearest trusted proxy.
        let hops = vec!["10.1.1.1"; FORWARDED_HOPS_MAX + 1].join(",");
        assert_eq!(c(&[&format!("198.51.100.1,{hops}")]), ip("10.1.1.1"));
        let long = format!("{},198.51.100.1", "1".repeat(FORWARDED_FOR_BYTES_MAX));
        assert_eq!(c(&[&long]), ip("10.0.0.5"));
        assert_eq!(
            c(&[&"1".repeat(FORWARDED_FOR_BYTES_MAX / 2), &"2".repeat(FORWARDED_FOR_BYTES_MAX / 2 + 1)]),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ipv6_proxies_and_clients() {
        let p = xff("fd00::/8, 10.0.0.0/8");
        assert_eq!(client(&p, "fd00::5", &["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(client(&p, "fd00::5", &["[2001:db8::1]:4711, fd12::7"]), ip("2001:db8::1"));
        assert_eq!(client(&p, "::ffff:10.0.0.5", &["203.0.113.9"]), ip("203.0.113.9"), "v4-mapped peer");
        assert_eq!(client(&p, "fd00::5", &["::ffff:203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(client(&p, "2001:db8::66", &["2001:db8::1"]), ip("2001:db8::66"), "untrusted v6 peer");
    }

    #[test]
    fn rfc_7239_forwarded_is_read_only_when_chosen() {
        let p = trusted("10.0.0.0/8", ForwardedHeader::Forwarded);
        let c = |lines: &[&str]| client(&p, "10.0.0.5", lines);
        assert_eq!(c(&["for=1.2.3.4, for=198.51.100.1;proto=https;by=10.0.0.5"]), ip("198.51.100.1"));
        assert_eq!(c(&[r#"For="[2001:db8:cafe::17]:4711""#]), ip("2001:db8:cafe::17"));
        assert_eq!(c(&["proto=https;for=198.51.100.1, for=10.1.1.1"]), ip("198.51.100.1"));
        assert_eq!(
            c(&["for=_hidden, for=10.1.1.1"]),
            ip("10.1.1.1"),
            "obfuscated: the proxy that forwarded it"
        );
        assert_eq!(c(&["by=10.0.0.5"]), ip("10.0.0.5"), "no for=");
        assert_eq!(ForwardedHeader::Forwarded.name(), "forwarded");
        assert_eq!(ForwardedHeader::XForwardedFor.name(), "x-forwarded-for");
    }

    #[test]
    fn the_deprecated_policy_trusts_the_last_hop_from_anyone() {
        let p = ClientAddrPolicy::LastForwardedFor;
        assert_eq!(client(&p, "203.0.113.9", &["1.1.1.1", "6.6.6.6, 198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(client(&p, "203.0.113.9", &["garbage"]), ip("203.0.113.9"));
        assert_eq!(client(&p, "203.0.113.9", &[]), ip("203.0.113.9"));
    }
}
