//! The durable tracking-number counter of one front office.
//!
//! Guarantees, first:
//!
//! - **No serial twice.** Each allocation increments the counter under a
//!   lock, and the allocated serial is handed out only after the counter was
//!   flushed to disk (`sled::Db::flush`). The front office enqueues the
//!   `case_opened` event only after that, so after a crash and restart the
//!   counter is at or past every serial that any event carries.
//! - **Never backwards.** The next serial is the larger of the last one + 1
//!   and the start of the configured range; changing the range can skip
//!   serials, never reuse them. A counter past the end of its range refuses
//!   to allocate (and the service refuses to start) instead of wrapping.
//! - **Disjoint from the random serials.** Ranges lie below
//!   [`RANDOM_SERIAL_MIN`], the start of the serials agency services draw at
//!   random for walk-in cases (see `mpp_agency_kit::ids`).
//!
//! Known limits: a serial allocated for a call that then fails (the outbox
//! refused it) is never used, leaving a gap. sled 0.34's `flush` writes
//! with `sync_file_range`: it survives a process crash, a power loss may
//! lose what the disk cache held (as for the outbox, see docs/DESIGN.md).
//!
//! One front office per region allocates serials. Should a region ever run
//! several, each gets its own disjoint `--serial-range-start` /
//! `--serial-range-end`; nothing else coordinates them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mpp_agency_kit::ids::RANDOM_SERIAL_MIN;

/// The counter's directory inside the service's data directory. (The data
/// directory is also the outbox's sled directory; sled only uses its own
/// `conf`, `db`, `blobs/` and `snap.*` entries and ignores this one.)
pub const COUNTER_DIR: &str = "counter";

/// The key of the last allocated serial (8 bytes, big-endian).
pub const COUNTER_KEY: &[u8] = b"last_serial";

/// sled's page cache for the counter, in bytes: it holds one key.
pub const COUNTER_CACHE_BYTES: u64 = 1024 * 1024;

/// Default of `--serial-range-start`: the first serial of a fresh counter.
pub const SERIAL_RANGE_START_DEFAULT: u64 = 1;

/// Default, and largest allowed value, of `--serial-range-end` (exclusive):
/// the counters' half of the serial space ends where the random serials
/// begin.
pub const SERIAL_RANGE_END_MAX: u64 = RANDOM_SERIAL_MIN;

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
    /// The directory could not be created.
    #[error("cannot create the counter directory {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// sled refused to open the directory (e.g. another process holds it).
    #[error("cannot open the tracking-number counter in {dir}: {source}")]
    Open {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: sled::Error,
    },
    /// Reading, writing or flushing the counter failed.
    #[error("tracking-number counter storage failed: {0}")]
    Storage(#[from] sled::Error),
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

#[derive(Debug)]
struct Inner {
    /// `None` once closed. The lock also serialises read-increment-write.
    db: Mutex<Option<sled::Db>>,
    range: SerialRange,
}

/// The counter. Cheap to clone; [`SerialCounter::close`] releases the
/// directory for every clone.
#[derive(Debug, Clone)]
pub struct SerialCounter {
    inner: Arc<Inner>,
}

fn decode(value: Option<sled::IVec>) -> Result<Option<u64>, CounterError> {
    match value {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| CounterError::Corrupt { len: v.len() })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

impl SerialCounter {
    /// Opens (or creates) the counter in `dir`. Fails if no serial is left in
    /// `range` (so the service does not start to refuse every call).
    pub fn open(dir: &Path, range: SerialRange) -> Result<Self, CounterError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| CounterError::CreateDir { dir: dir.to_owned(), source })?;
        let db = mpp_edge::sled_open::open_waiting_for_lock(
            &sled::Config::new().path(dir).cache_capacity(COUNTER_CACHE_BYTES),
        )
        .map_err(|source| CounterError::Open { dir: dir.to_owned(), source })?;
        let last = decode(db.get(COUNTER_KEY)?)?;
        let next = range.next_after(last).ok_or(CounterError::Exhausted { last, end: range.end })?;
        tracing::info!(
            dir = %dir.display(),
            last_serial = ?last,
            next_serial = next,
            range_start = range.start,
            range_end = range.end,
            "Tracking-number counter opened"
        );
        Ok(Self { inner: Arc::new(Inner { db: Mutex::new(Some(db)), range }) })
    }

    /// The configured range.
    pub fn range(&self) -> SerialRange {
        self.inner.range
    }

    /// The last allocated serial, if any.
    pub fn last(&self) -> Result<Option<u64>, CounterError> {
        let guard = self.inner.db.lock().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or(CounterError::Closed)?;
        decode(db.get(COUNTER_KEY)?)
    }

    /// Allocates the next serial, durably (blocks on the flush; see
    /// [`SerialCounter::allocate`] for async callers).
    pub fn allocate_blocking(&self) -> Result<u64, CounterError> {
        let (db, serial) = {
            let guard = self.inner.db.lock().unwrap_or_else(|e| e.into_inner());
            let db = guard.as_ref().ok_or(CounterError::Closed)?;
            let last = decode(db.get(COUNTER_KEY)?)?;
            let serial = self
                .inner
                .range
                .next_after(last)
                .ok_or(CounterError::Exhausted { last, end: self.inner.range.end })?;
            db.insert(COUNTER_KEY, &serial.to_be_bytes())?;
            (db.clone(), serial)
        };
        // Outside the lock, so concurrent allocations share flushes. The flush
        // covers this insert (it happened before); until it returns, the serial
        // is not handed out. If it fails, the serial stays taken in memory and
        // is never handed out by this process.
        db.flush()?;
        Ok(serial)
    }

    /// Allocates the next serial, durably, on the blocking thread pool.
    pub async fn allocate(&self) -> Result<u64, CounterError> {
        let counter = self.clone();
        tokio::task::spawn_blocking(move || counter.allocate_blocking())
            .await
            .map_err(|e| CounterError::Task(e.to_string()))?
    }

    /// Flushes and releases the directory; every later allocation fails
    /// with [`CounterError::Closed`]. An allocation still flushing finishes
    /// first (it holds its own handle until then).
    pub fn close(&self) -> Result<(), CounterError> {
        let db = self.inner.db.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(db) = db {
            db.flush()?;
        }
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
        let c = SerialCounter::open(&path, SerialRange::default()).unwrap();
        assert_eq!(c.last().unwrap(), None);
        let first: Vec<u64> = (0..5).map(|_| c.allocate_blocking().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3, 4, 5]);
        c.close().unwrap();
        assert!(matches!(c.allocate_blocking(), Err(CounterError::Closed)));
        drop(c);

        let c = SerialCounter::open(&path, SerialRange::default()).unwrap();
        assert_eq!(c.last().unwrap(), Some(5));
        assert_eq!(c.allocate_blocking().unwrap(), 6);
        c.close().unwrap();
        drop(c);

        // A lower range does not reuse serials: it is used up.
        let low = SerialRange::new(1, 6).unwrap();
        assert!(matches!(
            SerialCounter::open(&path, low),
            Err(CounterError::Exhausted { last: Some(6), end: 6 })
        ));
        // A higher range skips ahead.
        let c = SerialCounter::open(&path, SerialRange::new(1000, 1002).unwrap()).unwrap();
        assert_eq!(c.allocate_blocking().unwrap(), 1000);
        assert_eq!(c.allocate_blocking().unwrap(), 1001);
        let err = c.allocate_blocking().unwrap_err();
        assert!(matches!(err, CounterError::Exhausted { last: Some(1001), end: 1002 }), "{err:?}");
        assert!(err.to_string().contains("--serial-range-start"), "{err}");
        assert_eq!(c.last().unwrap(), Some(1001), "a refused allocation changes nothing");
    }

    #[test]
    fn a_corrupt_value_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(COUNTER_KEY, b"bad").unwrap();
            db.flush().unwrap();
        }
        let err = SerialCounter::open(dir.path(), SerialRange::default()).unwrap_err();
        assert!(matches!(err, CounterError::Corrupt { len: 3 }), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_allocations_are_distinct_and_dense() {
        let dir = tempfile::tempdir().unwrap();
        let c = SerialCounter::open(dir.path(), SerialRange::new(100, 1000).unwrap()).unwrap();
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
