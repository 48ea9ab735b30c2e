//! The durable tracking-number counter of one front office.
//!
//! Guarantees, first:
//!
//! - **No serial twice.** Each allocation increments the counter under a
//!   lock, and the allocated serial is handed out only after the counter was
//!   committed durably (redb, `Durability::Immediate`: an `fdatasync`
//!   before the commit returns; a power cut cannot undo it). The front office enqueues the
//!   `case_opened` event only after that, so after a crash and restart the
//!   counter is at or past every serial that any event carries.
//! - **Never backwards.** The next serial is the larger of the last one + 1
//!   and the start of the configured range; changing the range can skip
//!   serials, never reuse them. A counter past the end of its range refuses
//!   to allocate (and the service refuses to start) instead of wrapping.
//! - **Not enumerable, with a key.** With `--serial-key-file`, the printed
//!   serial is not the counter value but a keyed pseudo-random permutation
//!   of it within the *permuted domain* (see [`crate::serial_key`]): the
//!   counter still counts up, so no serial repeats, but the next tracking
//!   number cannot be guessed from the last one. Without a key, serials are
//!   the counter values, as before, and the service warns at start that
//!   tracking numbers are enumerable (`--insecure-dev-keys` changes
//!   nothing here).
//! - **The only source of tracking numbers.** Agency services no longer
//!   draw random serials for walk-in citizens: they ask this front office
//!   (`BukaBerkasInstansi`), which allocates from this counter. Ranges lie
//!   below [`SERIAL_RANGE_END_MAX`] (the lower half of the serial space;
//!   the upper half, once the agencies' random walk-in serials, is left
//!   unused, see the const).
//!
//! Known limits: a serial allocated for a call that then fails (the outbox
//! refused it) is never used, leaving a gap. Each allocation is one sync
//! (a few milliseconds), and allocations take turns: a front office hands
//! out a few hundred serials a second at most, far above a reception
//! desk's pace. A sled counter of an earlier version is migrated on the
//! first open ([`mpp_agency_kit::durable`]); the counter continues above
//! its last serial.
//!
//! The permuted domain is fixed the first time a key is used: it runs from
//! the counter's next value to the end of the range, so every serial issued
//! before (sequentially, all below it) keeps its number and none is
//! printed again. It is stored with a fingerprint of the key
//! ([`PERMUTED_DOMAIN_KEY`]). Because the domain's serials are scattered
//! over all of it, the domain is never left while serials of it may still
//! be handed out: a changed key or range end, or dropping the key, is
//! refused at start unless the new range starts at or after the domain's
//! end (then a fresh domain begins there, or sequential serials resume).
//! Existing cases never change number: nothing rewrites issued serials.
//!
//! One front office per region allocates serials. Should a region ever run
//! several, each gets its own disjoint `--serial-range-start` /
//! `--serial-range-end`; nothing else coordinates them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mpp_agency_kit::durable::{self, redb, sled, DurableError, Storage};
use redb::{ReadableTable, TableDefinition};

use crate::serial_key::{Permutation, SerialKey};

/// The counter's directory inside the service's data directory.
pub const COUNTER_DIR: &str = "counter";

/// The counter's redb file inside [`COUNTER_DIR`].
pub const COUNTER_FILE: &str = "counter.redb";

/// The counter's table: [`COUNTER_KEY`] and [`PERMUTED_DOMAIN_KEY`].
const COUNTER_TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("counter");

/// The key of the counter: the last allocated counter value (8 bytes,
/// big-endian). Without a serial key it is the last serial handed out (the
/// name dates from then).
pub const COUNTER_KEY: &[u8] = b"last_serial";

/// The key of the permuted domain, once a serial key was used: start and
/// end (8 bytes each, big-endian) and the key's fingerprint (32 bytes).
pub const PERMUTED_DOMAIN_KEY: &[u8] = b"permuted_domain";

/// Length of the stored permuted domain, in bytes.
const PERMUTED_DOMAIN_BYTES: usize = 8 + 8 + 32;

/// Default of `--serial-range-start`: the first serial of a fresh counter.
pub const SERIAL_RANGE_START_DEFAULT: u64 = 1;

/// Default, and largest allowed value, of `--serial-range-end` (exclusive):
/// the lower half of the 10-digit serial space. The upper half was where
/// agency services drew random serials for walk-in citizens; they no longer
/// do (their cases are opened here), and it stays unused: the default range
/// is also the domain of the serial key's permutation, so raising it would
/// change the printed serials of every front office that uses a key.
pub const SERIAL_RANGE_END_MAX: u64 = 5_000_000_000;

// Every range a counter may be given can be permuted.
const _: () = assert!(SERIAL_RANGE_END_MAX <= crate::serial_key::PERMUTATION_SIZE_MAX);

/// The serials a front office may allocate: `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialRange {
    start: u64,
    end: u64,
}

/// Why a serial range is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid serial range {start}..{end}: --serial-range-start must be below --serial-range-end, and \
     --serial-range-end at most {SERIAL_RANGE_END_MAX} (serials from there on are drawn at random by \
     agency services for walk-in cases)"
)]
pub struct RangeError {
    /// The given start.
    pub start: u64,
    /// The given end.
    pub end: u64,
}

impl SerialRange {
    /// The range `start..end`; `start < end <= SERIAL_RANGE_END_MAX`.
    pub fn new(start: u64, end: u64) -> Result<Self, RangeError> {
        if start < end && end <= SERIAL_RANGE_END_MAX {
            Ok(Self { start, end })
        } else {
            Err(RangeError { start, end })
        }
    }

    /// The first serial.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last serial.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The serial after `last` (the last allocated one, if any), or `None`
    /// when the range is used up.
    pub fn next_after(&self, last: Option<u64>) -> Option<u64> {
        let next = last.map_or(self.start, |l| l.saturating_add(1).max(self.start));
        (next < self.end).then_some(next)
    }
}

impl Default for SerialRange {
    fn default() -> Self {
        Self { start: SERIAL_RANGE_START_DEFAULT, end: SERIAL_RANGE_END_MAX }
    }
}

/// Why the counter could not be opened or could not allocate.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The store could not be opened or migrated (e.g. another process
    /// holds it).
    #[error("cannot open the tracking-number counter: {0}")]
    Open(#[from] DurableError),
    /// Reading, writing or syncing the counter failed.
    #[error("tracking-number counter storage failed: {0}")]
    Storage(Box<redb::Error>),
    /// The stored value is not 8 bytes: refuse rather than restart at the
    /// beginning and hand out serials twice.
    #[error(
        "the tracking-number counter holds a {len}-byte value instead of 8 bytes; refusing to guess. \
         Restore the counter directory from a backup"
    )]
    Corrupt {
        /// The stored value's length.
        len: usize,
    },
    /// The stored permuted domain is not [`PERMUTED_DOMAIN_BYTES`] long.
    #[error(
        "the tracking-number counter's permuted domain holds a {len}-byte value instead of 48 bytes; \
         refusing to guess. Restore the counter directory from a backup"
    )]
    DomainCorrupt {
        /// The stored value's length.
        len: usize,
    },
    /// The configuration would leave the permuted domain while serials of it
    /// may still be handed out, so a serial could be printed twice.
    #[error(
        "tracking-number serials {start}..{end} are permuted under a serial key; {change}. Serials of that \
         range may already be issued anywhere in it, so it can only be continued with the same \
         --serial-key-file and --serial-range-end {end}; otherwise configure --serial-range-start {end} \
         or higher"
    )]
    DomainInUse {
        /// The domain's first serial.
        start: u64,
        /// The domain's end (exclusive).
        end: u64,
        /// What changed.
        change: &'static str,
    },
    /// No serial is left in the configured range.
    #[error(
        "no tracking-number serial left: the last one allocated is {last:?} and the range ends before \
         {end}. Configure a new, unused range with --serial-range-start/--serial-range-end"
    )]
    Exhausted {
        /// The last allocated serial.
        last: Option<u64>,
        /// The end of the range.
        end: u64,
    },
    /// The counter was closed (the service is stopping).
    #[error("the tracking-number counter is closed")]
    Closed,
    /// The blocking allocation task failed.
    #[error("the tracking-number allocation task failed: {0}")]
    Task(String),
}

mpp_agency_kit::from_redb_errors!(CounterError, CounterError::Storage);

/// How counter values become serials.
#[derive(Debug, Clone)]
pub enum SerialOrder {
    /// The serial is the counter value: enumerable (no `--serial-key-file`).
    Sequential,
    /// The serial is a keyed permutation of the counter value.
    Permuted(SerialKey),
}

#[derive(Debug)]
struct Inner {
    /// `None` once closed. The lock also serialises read-increment-write.
    db: Mutex<Option<redb::Database>>,
    /// The counter values this process allocates (inside the permuted
    /// domain, with a key).
    range: SerialRange,
    /// `None` for sequential serials.
    permutation: Option<Permutation>,
}

/// A stored permuted domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Domain {
    start: u64,
    end: u64,
    fingerprint: [u8; 32],
}

impl Domain {
    fn encode(&self) -> [u8; PERMUTED_DOMAIN_BYTES] {
        let mut out = [0u8; PERMUTED_DOMAIN_BYTES];
        out[..8].copy_from_slice(&self.start.to_be_bytes());
        out[8..16].copy_from_slice(&self.end.to_be_bytes());
        out[16..].copy_from_slice(&self.fingerprint);
        out
    }

    fn decode(value: Option<Vec<u8>>) -> Result<Option<Self>, CounterError> {
        let Some(v) = value else { return Ok(None) };
        let bytes: &[u8; PERMUTED_DOMAIN_BYTES] =
            v.as_slice().try_into().map_err(|_| CounterError::DomainCorrupt { len: v.len() })?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(w)
        };
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&bytes[16..]);
        let domain = Self { start: word(0), end: word(8), fingerprint };
        if domain.start >= domain.end || domain.end > SERIAL_RANGE_END_MAX {
            return Err(CounterError::DomainCorrupt { len: v.len() });
        }
        Ok(Some(domain))
    }
}

/// The counter range and permutation for `order`, given the stored domain
/// and the counter's `last` value; `Some` domain to store when a new one
/// begins.
fn plan(
    range: SerialRange,
    last: Option<u64>,
    stored: Option<Domain>,
    order: &SerialOrder,
) -> Result<(SerialRange, Option<Permutation>, Option<Domain>), CounterError> {
    let exhausted = |range: SerialRange| CounterError::Exhausted { last, end: range.end };
    let in_use = |d: Domain, change| CounterError::DomainInUse { start: d.start, end: d.end, change };
    match (order, stored) {
        (SerialOrder::Sequential, None) => Ok((range, None, None)),
        (SerialOrder::Sequential, Some(d)) if range.start >= d.end => Ok((range, None, None)),
        (SerialOrder::Sequential, Some(d)) => Err(in_use(d, "no --serial-key-file is given now")),
        (SerialOrder::Permuted(key), stored) => {
            let fingerprint = key.fingerprint();
            if let Some(d) = stored.filter(|d| d.fingerprint == fingerprint && d.end == range.end) {
                // Continue the domain; a lower start changes nothing, a
                // higher one skips counter values.
                let counted = SerialRange { start: range.start.max(d.start), end: d.end };
                counted.next_after(last).ok_or_else(|| exhausted(counted))?;
                return Ok((counted, Some(Permutation::new(key.clone(), d.start, d.end)), None));
            }
            if let Some(d) = stored.filter(|d| range.start < d.end) {
                let change = if d.fingerprint != fingerprint {
                    "--serial-key-file holds a different key now"
                } else {
                    "--serial-range-end differs now"
                };
                return Err(in_use(d, change));
            }
            // A new domain from the next counter value: everything below it
            // was handed out sequentially or belongs to an earlier domain.
            let start = range.next_after(last).ok_or_else(|| exhausted(range))?;
            let d = Domain { start, end: range.end, fingerprint };
            let counted = SerialRange { start, end: range.end };
            Ok((counted, Some(Permutation::new(key.clone(), d.start, d.end)), Some(d)))
        }
    }
}

/// The counter. Cheap to clone; [`SerialCounter::close`] releases the
/// directory for every clone.
#[derive(Debug, Clone)]
pub struct SerialCounter {
    inner: Arc<Inner>,
}

fn decode(value: Option<Vec<u8>>) -> Result<Option<u64>, CounterError> {
    match value {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] =
                v.as_slice().try_into().map_err(|_| CounterError::Corrupt { len: v.len() })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

/// The value of `key` in the counter's table.
fn get(db: &redb::Database, key: &[u8]) -> Result<Option<Vec<u8>>, CounterError> {
    let tx = db.begin_read()?;
    let table = match tx.open_table(COUNTER_TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let value = table.get(key)?.map(|v| v.value().to_vec());
    Ok(value)
}

/// Writes `key` in one durable commit.
fn put(db: &redb::Database, key: &[u8], value: &[u8]) -> Result<(), CounterError> {
    let tx = db.begin_write()?;
    tx.open_table(COUNTER_TABLE)?.insert(key, value)?;
    tx.commit()?;
    Ok(())
}

/// Copies the two values of a sled counter (default tree) into `tx`, as
/// they are: a malformed one is refused by [`SerialCounter::open`] after
/// the migration exactly as before it.
fn copy_from_sled(sled_db: &sled::Db, tx: &redb::WriteTransaction) -> Result<u64, DurableError> {
    let redb_err = durable::redb_error(COUNTER_FILE);
    let mut table = tx.open_table(COUNTER_TABLE).map_err(|e| redb_err(e.into()))?;
    let mut n = 0;
    for key in [COUNTER_KEY, PERMUTED_DOMAIN_KEY] {
        let value = sled_db
            .get(key)
            .map_err(|source| DurableError::Sled { dir: PathBuf::from(COUNTER_DIR), source })?;
        if let Some(v) = value {
            table.insert(key, v.as_ref()).map_err(|e| redb_err(e.into()))?;
            n += 1;
        }
    }
    Ok(n)
}

impl SerialCounter {
    /// Opens (or creates) the counter in `dir`, handing out serials in
    /// `order`. Fails if no serial is left in `range` (so the service does
    /// not start to refuse every call), or if `order` would leave a permuted
    /// domain in use (see the module docs).
    pub fn open(dir: &Path, range: SerialRange, order: SerialOrder) -> Result<Self, CounterError> {
        let file = dir.join(COUNTER_FILE);
        durable::migrate_from_sled(dir, &file, copy_from_sled)?;
        Self::open_in(Storage::File(file), range, order)
    }

    /// Opens the counter on `storage` (its redb file, or a test backend),
    /// without migrating anything.
    pub fn open_in(storage: Storage, range: SerialRange, order: SerialOrder) -> Result<Self, CounterError> {
        let where_ = storage.describe();
        let db = durable::open(storage)?;
        let last = decode(get(&db, COUNTER_KEY)?)?;
        let stored = Domain::decode(get(&db, PERMUTED_DOMAIN_KEY)?)?;
        let (counted, permutation, new_domain) = plan(range, last, stored, &order)?;
        let next = counted.next_after(last).ok_or(CounterError::Exhausted { last, end: counted.end })?;
        if let Some(d) = new_domain {
            put(&db, PERMUTED_DOMAIN_KEY, d.encode().as_slice())?;
            tracing::info!(
                domain_start = d.start,
                domain_end = d.end,
                "Permuted tracking-number domain began"
            );
        }
        if permutation.is_none() {
            tracing::warn!(
                "No --serial-key-file (MPP_SERIAL_KEY_FILE): tracking-number serials count up by one, so \
                 anyone holding one tracking number can guess the others. Give a serial key file to make \
                 them unpredictable"
            );
        }
        tracing::info!(
            store = %where_,
            last_counter = ?last,
            next_counter = next,
            range_start = range.start,
            range_end = range.end,
            permuted = permutation.is_some(),
            "Tracking-number counter opened"
        );
        Ok(Self { inner: Arc::new(Inner { db: Mutex::new(Some(db)), range: counted, permutation }) })
    }

    /// The range of counter values this counter allocates (with a serial
    /// key, the rest of the permuted domain).
    pub fn range(&self) -> SerialRange {
        self.inner.range
    }

    /// The last allocated counter value, if any (the last serial, without a
    /// serial key).
    pub fn last(&self) -> Result<Option<u64>, CounterError> {
        let guard = self.inner.db.lock().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or(CounterError::Closed)?;
        decode(get(db, COUNTER_KEY)?)
    }

    /// The serial printed for counter value `value`.
    fn serial_of(&self, value: u64) -> u64 {
        let serial = match &self.inner.permutation {
            None => value,
            Some(p) => p.apply(value),
        };
        assert!(serial < SERIAL_RANGE_END_MAX, "serial {serial} outside the counters' space");
        serial
    }

    /// Allocates the next serial, durably (blocks on the sync; see
    /// [`SerialCounter::allocate`] for async callers).
    pub fn allocate_blocking(&self) -> Result<u64, CounterError> {
        let guard = self.inner.db.lock().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or(CounterError::Closed)?;
        // Read and write in one transaction, committed with a sync before
        // the serial is handed out. A failed commit hands out nothing; redb
        // then refuses every later write until the counter is reopened, and
        // a reopen reads whatever did reach the disk.
        let tx = db.begin_write()?;
        let value = {
            let mut table = tx.open_table(COUNTER_TABLE)?;
            let last = decode(table.get(COUNTER_KEY)?.map(|v| v.value().to_vec()))?;
            let value = self
                .inner
                .range
                .next_after(last)
                .ok_or(CounterError::Exhausted { last, end: self.inner.range.end })?;
            assert!(last.is_none_or(|l| value > l), "the counter would go backwards");
            table.insert(COUNTER_KEY, value.to_be_bytes().as_slice())?;
            value
        };
        tx.commit()?;
        drop(guard);
        Ok(self.serial_of(value))
    }

    /// Allocates the next serial, durably, on the blocking thread pool.
    pub async fn allocate(&self) -> Result<u64, CounterError> {
        let counter = self.clone();
        tokio::task::spawn_blocking(move || counter.allocate_blocking())
            .await
            .map_err(|e| CounterError::Task(e.to_string()))?
    }

    /// Releases the file; every later allocation fails with
    /// [`CounterError::Closed`]. Every allocation was synced when it
    /// returned, so nothing is left to write. An allocation in progress
    /// finishes first (it holds the lock).
    pub fn close(&self) -> Result<(), CounterError> {
        drop(self.inner.db.lock().unwrap_or_else(|e| e.into_inner()).take());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_validated_and_never_go_backwards() {
        let r = SerialRange::new(10, 13).unwrap();
        assert_eq!(r.next_after(None), Some(10));
        assert_eq!(r.next_after(Some(3)), Some(10), "a raised start skips ahead");
        assert_eq!(r.next_after(Some(10)), Some(11));
        assert_eq!(r.next_after(Some(12)), None, "end is exclusive");
        assert_eq!(r.next_after(Some(500)), None, "never back into the range");
        assert!(SerialRange::new(5, 5).is_err());
        assert!(SerialRange::new(6, 5).is_err());
        assert!(SerialRange::new(0, SERIAL_RANGE_END_MAX).is_ok());
        let err = SerialRange::new(0, SERIAL_RANGE_END_MAX + 1).unwrap_err();
        assert!(err.to_string().contains("5000000000"), "{err}");
        assert_eq!(SerialRange::default(), SerialRange::new(1, 5_000_000_000).unwrap());
    }

    #[test]
    fn counter_is_monotonic_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(COUNTER_DIR);
        let c = SerialCounter::open(&path, SerialRange::default(), SerialOrder::Sequential).unwrap();
        assert_eq!(c.last().unwrap(), None);
        let first: Vec<u64> = (0..5).map(|_| c.allocate_blocking().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3, 4, 5]);
        c.close().unwrap();
        assert!(matches!(c.allocate_blocking(), Err(CounterError::Closed)));
        drop(c);

        let c = SerialCounter::open(&path, SerialRange::default(), SerialOrder::Sequential).unwrap();
        assert_eq!(c.last().unwrap(), Some(5));
        assert_eq!(c.allocate_blocking().unwrap(), 6);
        c.close().unwrap();
        drop(c);

        // A lower range does not reuse serials: it is used up.
        let low = SerialRange::new(1, 6).unwrap();
        assert!(matches!(
            SerialCounter::open(&path, low, SerialOrder::Sequential),
            Err(CounterError::Exhausted { last: Some(6), end: 6 })
        ));
        // A higher range skips ahead.
        let c = SerialCounter::open(&path, SerialRange::new(1000, 1002).unwrap(), SerialOrder::Sequential)
            .unwrap();
        assert_eq!(c.allocate_blocking().unwrap(), 1000);
        assert_eq!(c.allocate_blocking().unwrap(), 1001);
        let err = c.allocate_blocking().unwrap_err();
        assert!(matches!(err, CounterError::Exhausted { last: Some(1001), end: 1002 }), "{err:?}");
        assert!(err.to_string().contains("--serial-range-start"), "{err}");
        assert_eq!(c.last().unwrap(), Some(1001), "a refused allocation changes nothing");
    }

    fn keyed(byte: u8) -> SerialOrder {
        SerialOrder::Permuted(SerialKey::from_bytes(&[byte; 32]).unwrap())
    }

    fn draw(c: &SerialCounter, n: usize) -> Vec<u64> {
        (0..n).map(|_| c.allocate_blocking().unwrap()).collect()
    }

    #[test]
    fn a_keyed_counter_reopened_with_its_key_continues_without_repeating() {
        let dir = tempfile::tempdir().unwrap();
        let range = SerialRange::new(1, 2001).unwrap();
        let c = SerialCounter::open(dir.path(), range, keyed(1)).unwrap();
        let mut got = draw(&c, 700);
        assert_eq!(c.last().unwrap(), Some(700), "the counter itself still counts up");
        c.close().unwrap();
        drop(c);

        let c = SerialCounter::open(dir.path(), range, keyed(1)).unwrap();
        got.extend(draw(&c, 1300));
        assert!(matches!(
            c.allocate_blocking(),
            Err(CounterError::Exhausted { last: Some(2000), end: 2001 })
        ));
        c.close().unwrap();
        drop(c);

        // The same sequence as one uninterrupted counter under that key.
        let other = tempfile::tempdir().unwrap();
        let c = SerialCounter::open(other.path(), range, keyed(1)).unwrap();
        assert_eq!(draw(&c, 2000), got);
        // A bijection of the range: every serial exactly once, not in order.
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..2001).collect::<Vec<_>>());
        assert_ne!(got, sorted);
    }

    #[test]
    fn a_key_given_to_a_sequential_counter_never_reprints_its_serials() {
        let dir = tempfile::tempdir().unwrap();
        let range = SerialRange::new(1, 101).unwrap();
        let c = SerialCounter::open(dir.path(), range, SerialOrder::Sequential).unwrap();
        assert_eq!(draw(&c, 40), (1..41).collect::<Vec<_>>());
        c.close().unwrap();
        drop(c);

        let c = SerialCounter::open(dir.path(), range, keyed(1)).unwrap();
        let mut keyed_serials = draw(&c, 60);
        assert!(c.allocate_blocking().is_err(), "the range is used up");
        keyed_serials.sort_unstable();
        assert_eq!(keyed_serials, (41..101).collect::<Vec<_>>(), "only the unused serials, once each");
    }

    #[test]
    fn leaving_a_permuted_domain_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let range = SerialRange::new(1, 1001).unwrap();
        let c = SerialCounter::open(dir.path(), range, keyed(1)).unwrap();
        draw(&c, 10);
        c.close().unwrap();
        drop(c);

        let refused = |range, order| match SerialCounter::open(dir.path(), range, order) {
            Err(CounterError::DomainInUse { start: 1, end: 1001, change }) => change,
            other => panic!("{other:?}"),
        };
        assert!(refused(range, keyed(2)).contains("different key"));
        assert!(refused(range, SerialOrder::Sequential).contains("no --serial-key-file"));
        assert!(refused(SerialRange::new(1, 2001).unwrap(), keyed(1)).contains("--serial-range-end"));
        let err = SerialCounter::open(dir.path(), range, keyed(2)).unwrap_err().to_string();
        assert!(err.contains("--serial-range-start 1001"), "{err}");

        // A lower start continues the domain; a range past it starts afresh.
        let c = SerialCounter::open(dir.path(), SerialRange::new(0, 1001).unwrap(), keyed(1)).unwrap();
        assert_eq!(c.range(), SerialRange::new(1, 1001).unwrap());
        c.close().unwrap();
        drop(c);
        let c = SerialCounter::open(dir.path(), SerialRange::new(1001, 1011).unwrap(), keyed(2)).unwrap();
        let mut fresh = draw(&c, 10);
        fresh.sort_unstable();
        assert_eq!(fresh, (1001..1011).collect::<Vec<_>>());
        c.close().unwrap();
        drop(c);
        let c =
            SerialCounter::open(dir.path(), SerialRange::new(2000, 2002).unwrap(), SerialOrder::Sequential)
                .unwrap();
        assert_eq!(draw(&c, 2), vec![2000, 2001]);
    }

    #[test]
    fn a_corrupt_value_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(COUNTER_KEY, b"bad").unwrap();
            db.flush().unwrap();
        }
        let err =
            SerialCounter::open(dir.path(), SerialRange::default(), SerialOrder::Sequential).unwrap_err();
        assert!(matches!(err, CounterError::Corrupt { len: 3 }), "{err:?}");
    }

    #[test]
    fn a_sled_counter_is_carried_over_and_continues_above_its_last_serial() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::serial_key::SerialKey::from_bytes(&[7; 32]).unwrap();
        let range = SerialRange::new(1, 1_000_000).unwrap();
        // A counter of the sled version, keyed: last counter value 41 in a
        // permuted domain that began at 11.
        let domain = Domain { start: 11, end: range.end(), fingerprint: key.fingerprint() };
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(COUNTER_KEY, &41u64.to_be_bytes()).unwrap();
            db.insert(PERMUTED_DOMAIN_KEY, domain.encode().as_slice()).unwrap();
            db.flush().unwrap();
        }
        let c = SerialCounter::open(dir.path(), range, SerialOrder::Permuted(key.clone())).unwrap();
        assert_eq!(c.last().unwrap(), Some(41));
        let p = Permutation::new(key.clone(), 11, range.end());
        assert_eq!(draw(&c, 2), vec![p.apply(42), p.apply(43)], "continues in the same domain");
        assert!(!durable::has_sled(dir.path()), "the sled files were moved");
        assert!(durable::has_sled(&dir.path().join(durable::SLED_ASIDE_DIR)), "and kept");
        c.close().unwrap();
        let c = SerialCounter::open(dir.path(), range, SerialOrder::Permuted(key)).unwrap();
        assert_eq!(c.last().unwrap(), Some(43), "no second migration");
    }

    /// Power cuts this test makes (with the outbox's and the vault's, over
    /// 1,000).
    const COUNTER_POWER_CUTS: u64 = 350;

    #[test]
    fn serials_never_repeat_across_power_cuts() {
        use mpp_agency_kit::testing::power_cut::{self, Rng, SimDisk};
        let seed = power_cut::seed("counter");
        let mut rng = Rng::new(seed);
        let disk = SimDisk::new(rng.next_u64());
        let range = SerialRange::new(100, 1_000_000).unwrap();
        let mut issued = std::collections::BTreeSet::new();
        for cycle in 0..COUNTER_POWER_CUTS {
            let at = format!("seed {seed}, cycle {cycle}");
            let c = SerialCounter::open_in(disk.storage("counter"), range, keyed(3))
                .unwrap_or_else(|e| panic!("{at}: the counter does not reopen after a power cut: {e}"));
            // Counter values from 100 on, each handed out at most once: n
            // of them need a counter at 99 + n at least.
            let last = c.last().unwrap().unwrap_or(99);
            let counted_max = issued.len() as u64 + 99;
            assert!(last >= counted_max, "{at}: the counter ({last}) is behind what it handed out");
            disk.arm(rng.below(30));
            for _ in 0..1 + rng.below(6) {
                match c.allocate_blocking() {
                    Ok(serial) => assert!(issued.insert(serial), "{at}: serial {serial} handed out twice"),
                    Err(_) => break,
                }
            }
            disk.cut_now();
        }
        let stats = disk.stats();
        println!(
            "counter power cuts: {} cuts ({} tearing a write), {} serials, none twice, seed {seed}",
            stats.cuts,
            stats.torn_writes,
            issued.len()
        );
        assert!(stats.cuts >= COUNTER_POWER_CUTS && issued.len() as u64 > COUNTER_POWER_CUTS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_allocations_are_distinct_and_dense() {
        let dir = tempfile::tempdir().unwrap();
        let c =
            SerialCounter::open(dir.path(), SerialRange::new(100, 1000).unwrap(), SerialOrder::Sequential)
                .unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.allocate().await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (100..164).collect::<Vec<_>>());
        assert_eq!(c.last().unwrap(), Some(163));
    }
}
