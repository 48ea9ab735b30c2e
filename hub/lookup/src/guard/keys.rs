//! The keys of the shared records: a tracking number, a client network
//! (IPv4 address; IPv6 /64, /56 and /48) or a shard of the global counter.
//! Numbers and networks are never stored as such: a key holds the first 16
//! bytes of HMAC-SHA-256 under a key derived from the PIN pepper (which
//! every replica holds), so the bucket's contents say neither which numbers
//! were tried nor from where.

use std::net::IpAddr;

use ring::hmac;

/// Shards of the global failed-lookup counter: each replica writes one,
/// picked at random when it starts, and checks add all, so replicas rarely
/// contend for one key.
pub const GLOBAL_SHARDS: u8 = 8;

/// What a key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A tracking number's record.
    Number,
    /// Failed lookups of an IPv4 address.
    Ipv4,
    /// Failed lookups of an IPv6 /64.
    Ipv6Slash64,
    /// Failed lookups of an IPv6 /56.
    Ipv6Slash56,
    /// Failed lookups of an IPv6 /48.
    Ipv6Slash48,
    /// A shard of the global failed-lookup counter.
    Global,
}

impl KeyKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Number => "n",
            Self::Ipv4 => "a4",
            Self::Ipv6Slash64 => "a64",
            Self::Ipv6Slash56 => "a56",
            Self::Ipv6Slash48 => "a48",
            Self::Global => "g",
        }
    }

    const ALL: [KeyKind; 6] =
        [Self::Number, Self::Ipv4, Self::Ipv6Slash64, Self::Ipv6Slash56, Self::Ipv6Slash48, Self::Global];

    /// The metric and log name of a network kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Ipv4 => "ipv4",
            Self::Ipv6Slash64 => "ipv6_64",
            Self::Ipv6Slash56 => "ipv6_56",
            Self::Ipv6Slash48 => "ipv6_48",
            Self::Global => "global",
        }
    }
}

/// One record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuardKey {
    /// What it counts.
    pub kind: KeyKind,
    id: [u8; 16],
}

impl GuardKey {
    /// The global counter's shard `shard`.
    pub fn global(shard: u8) -> Self {
        let mut id = [0u8; 16];
        id[0] = shard % GLOBAL_SHARDS;
        Self { kind: KeyKind::Global, id }
    }

    /// The key in the bucket: `<kind>.<32 hex digits>`, or `g.<shard>`.
    pub fn kv_key(&self) -> String {
        match self.kind {
            KeyKind::Global => format!("g.{}", self.id[0]),
            kind => format!("{}.{}", kind.prefix(), hex::encode(self.id)),
        }
    }

    /// The key of a bucket key; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once('.')?;
        let kind = KeyKind::ALL.into_iter().find(|k| k.prefix() == kind)?;
        if kind == KeyKind::Global {
            let shard: u8 = rest.parse().ok()?;
            return (shard < GLOBAL_SHARDS && rest == shard.to_string()).then(|| Self::global(shard));
        }
        let bytes = hex::decode(rest).ok()?;
        // Lower-case hex only, so each key has one spelling.
        if rest.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Some(Self { kind, id: bytes.try_into().ok()? })
    }
}

/// The keys of one lookup: its tracking number and the client's networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardKeys {
    /// The tracking number's record.
    pub number: GuardKey,
    /// The client's networks (one for IPv4, three for IPv6).
    pub nets: Vec<GuardKey>,
}

/// Derives the keys of lookups.
pub struct KeyMaker {
    key: hmac::Key,
}

impl std::fmt::Debug for KeyMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaker(<key redacted>)")
    }
}

impl KeyMaker {
    /// Keys under `secret` (32 bytes derived from the PIN pepper).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    fn key(&self, kind: KeyKind, data: &[u8]) -> GuardKey {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(kind.prefix().as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        let tag = ctx.sign();
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag.as_ref()[..16]);
        GuardKey { kind, id }
    }

    /// The keys of a lookup of `tracking_digits` from `client`.
    pub fn keys(&self, tracking_digits: &[u8; 15], client: IpAddr) -> GuardKeys {
        let number = self.key(KeyKind::Number, tracking_digits);
        let nets = match client {
            IpAddr::V4(v4) => vec![self.key(KeyKind::Ipv4, &v4.octets())],
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => vec![self.key(KeyKind::Ipv4, &v4.octets())],
                None => {
                    let o = v6.octets();
                    vec![
                        self.key(KeyKind::Ipv6Slash64, &o[..8]),
                        self.key(KeyKind::Ipv6Slash56, &o[..7]),
                        self.key(KeyKind::Ipv6Slash48, &o[..6]),
                    ]
                }
            },
        };
        GuardKeys { number, nets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_keyed_hashes_per_network_level() {
        let m = KeyMaker::new(&[7; 32]);
        let other = KeyMaker::new(&[8; 32]);
        let tn = *b"177100000123457";
        let a = m.keys(&tn, "2001:db8:1:2::1".parse().unwrap());
        let b = m.keys(&tn, "2001:db8:1:3::1".parse().unwrap());
        let c = m.keys(&tn, "2001:db8:1:1ff::1".parse().unwrap());
        assert_eq!(a.nets.len(), 3);
        assert_ne!(a.nets[0], b.nets[0], "another /64");
        assert_eq!(a.nets[1], b.nets[1], "the same /56");
        assert_ne!(a.nets[1], c.nets[1], "another /56");
        assert_eq!(a.nets[2], c.nets[2], "the same /48");
        assert_eq!(a.number, b.number);
        assert_ne!(a.number, other.keys(&tn, "10.0.0.1".parse().unwrap()).number, "keyed");
        let v4 = m.keys(&tn, "10.0.0.1".parse().unwrap());
        let mapped = m.keys(&tn, "::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(v4, mapped);
        assert_eq!(v4.nets[0].kind, KeyKind::Ipv4);
        assert!(!v4.number.kv_key().contains("1771"), "the number is not in its key");
    }

    #[test]
    fn bucket_keys_parse_back_and_nothing_else_does() {
        let m = KeyMaker::new(&[7; 32]);
        let keys = m.keys(b"177100000123457", "2001:db8::1".parse().unwrap());
        for k in std::iter::once(keys.number).chain(keys.nets).chain((0..GLOBAL_SHARDS).map(GuardKey::global))
        {
            assert_eq!(GuardKey::parse(&k.kv_key()), Some(k), "{}", k.kv_key());
            assert!(mpp_edge::cas::valid_key(&k.kv_key()));
        }
        for bad in ["", "n", "n.", "x.00", "n.zz", "g.8", "g.01", "n.00", &format!("n.{}", "AB".repeat(16))] {
            assert_eq!(GuardKey::parse(bad), None, "{bad:?}");
        }
    }
}
