//! W3C Trace Context (`traceparent`), the one header that carries a trace
//! across the hop: an agency service's RPC → its outbox entry → the NATS
//! message header [`TRACEPARENT_HEADER`] → the hub's ingest log lines.
//!
//! Only the `traceparent` form of version `00` is written; a later version is
//! read by its first four fields, as the specification asks. Anything else
//! (a client or the network may send any bytes) is refused, never guessed
//! at: the caller then starts a trace of its own. No IO and no randomness
//! here: the caller hands in random bytes.

use std::fmt;

/// The header (gRPC metadata key and NATS message header) that carries it.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Length of a version-00 `traceparent` value, in bytes.
pub const TRACEPARENT_BYTES: usize = 55;

/// Longest `traceparent` value read, in bytes (a later version may append
/// fields; anything longer is refused).
pub const TRACEPARENT_BYTES_MAX: usize = 256;

/// A parsed `traceparent`: which trace, which span is the parent, and the
/// flags (bit 0: sampled).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", self.trace_id_hex(), hex(&self.span_id), self.flags)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex of exactly `N` bytes, not all zero (an invalid id).
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything malformed.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() < TRACEPARENT_BYTES || value.len() > TRACEPARENT_BYTES_MAX {
            return None;
        }
        let version = value.get(..2)?;
        // Version ff is forbidden; a later version may carry more fields
        // after a '-', and version 00 carries none.
        let rest = value.get(TRACEPARENT_BYTES..)?;
        let more_ok = match version {
            "00" => rest.is_empty(),
            "ff" => false,
            _ => unhex::<1>(version).is_some() && (rest.is_empty() || rest.starts_with('-')),
        };
        if !more_ok {
            return None;
        }
        let head = value.get(..TRACEPARENT_BYTES)?;
        let mut parts = head.split('-');
        let (_, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || flags.len() != 2 {
            return None;
        }
        let flags =
            u8::from_str_radix(flags, 16).ok().filter(|_| flags.bytes().all(|b| !b.is_ascii_uppercase()))?;
        Some(Self { trace_id: unhex(trace)?, span_id: unhex(span)?, flags })
    }

    /// A new trace (sampled) from 24 random bytes: 16 for the trace id, 8
    /// for the span id. `None` only if the bytes give an all-zero id.
    pub fn root(random: [u8; 24]) -> Option<Self> {
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        trace_id.copy_from_slice(&random[..16]);
        span_id.copy_from_slice(&random[16..]);
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id, flags: 1 })
    }

    /// A span of the same trace under this one, with the span id from 8
    /// random bytes (`None` if they are all zero).
    pub fn child(&self, random: [u8; 8]) -> Option<Self> {
        (random != [0; 8]).then_some(Self { span_id: random, ..*self })
    }

    /// A `traceparent` of these ids (an exporter's own span); `None` if
    /// either id is all zero (invalid).
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id, flags })
    }

    /// The trace id's bytes.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent span id's bytes.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id, 32 lowercase hex digits (the `trace_id` of log lines).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_s_example_round_trips() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(t.to_string(), EXAMPLE);
        let c = t.child([7; 8]).unwrap();
        assert_eq!(c.trace_id_hex(), t.trace_id_hex());
        assert_eq!(c.span_id_hex(), "0707070707070707");
        assert!(t.child([0; 8]).is_none());
        assert_eq!(TraceParent::from_parts(t.trace_id(), t.span_id(), t.flags()), Some(t));
        assert!(TraceParent::from_parts([0; 16], t.span_id(), 1).is_none());
        assert!(TraceParent::from_parts(t.trace_id(), [0; 8], 1).is_none());
    }

    #[test]
    fn later_versions_are_read_by_their_first_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(TraceParent::parse(v).unwrap().trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn malformed_values_are_refused() {
        let bad = [
            "",
            "00",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-AB",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}",
        ];
        for v in bad {
            assert!(TraceParent::parse(v).is_none(), "{v:?}");
        }
        assert!(TraceParent::parse(&format!("cc{}", &"-ab".repeat(100)[..])).is_none());
        assert!(TraceParent::root([0; 24]).is_none());
        assert_eq!(TraceParent::root([1; 24]).unwrap().to_string().len(), TRACEPARENT_BYTES);
    }
}
