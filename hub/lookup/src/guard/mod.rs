//! Guessing budgets that hold against many addresses and across replicas
//! (issue 16): per tracking number, lockouts that grow through the day and
//! a daily cap after which only a re-issued PIN opens the case; per client
//! network (IPv4 address; IPv6 /64, /56 and /48) and for all clients
//! together, failed-lookup budgets per window, past the global one of which
//! lookups need a proof of work ([`crate::pow`]).
//!
//! [`policy`] is the pure arithmetic of the records, [`keys`] names them
//! (keyed hashes, never the number or the address), and [`shared`] keeps
//! them in a key-value store every replica shares (a NATS JetStream bucket)
//! with a local mirror, so that a right PIN costs no round trip. The PIN is
//! checked first: a wrong one is checked against the number's lock and
//! counted in one atomic write; a right one only needs to know whether the
//! number is locked. The per-network and global counts are kept in
//! [`deltas`] and added to the store by one task, off the answer path. The
//! bounds are stated in [`shared`].

pub mod deltas;
pub mod keys;
pub mod policy;
pub mod shared;

pub use keys::{GuardKeys, KeyKind};
pub use policy::{FailedAttempts, GuessBudgets, NumberRefusal};
pub use shared::{GuardRefusal, GuardSettings, SharedGuard};
