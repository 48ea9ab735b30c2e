//! A disk that loses power, for the edges' power-cut tests (feature
//! `testing`; never in a production binary).
//!
//! Each file keeps two images: what the disk holds for sure (everything up
//! to the last `sync_data`) and what the process sees (plus every write
//! since). A power cut, at a seeded moment — the n-th storage call after
//! [`SimDisk::arm`] — throws the unsynced writes away; in some cuts the
//! last unsynced write is torn instead (a random whole number of 512-byte
//! sectors of it reached the platter, never all of it; a torn write past the
//! end of the file still grows the file by all of it, with zeros where its
//! sectors did not arrive). From the cut on,
//! every call through a handle made before it fails, as the process would
//! be dead; [`SimDisk::file`] makes handles for the next life. Directory
//! operations (create, rename, remove) are durable at once: the real
//! stores sync their directory after each.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::durable::Storage;

/// A sector: the unit a torn write is cut at, in bytes.
const SECTOR_BYTES: usize = 512;

/// The seed of power-cut test `what`: `MPP_POWER_CUT_SEED` when set (to
/// replay a failure), else a fresh one; printed either way.
pub fn seed(what: &str) -> u64 {
    let seed = std::env::var("MPP_POWER_CUT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        nanos.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    println!("{what} power cuts: seed {seed} (MPP_POWER_CUT_SEED={seed} replays)");
    seed
}

/// A seeded SplitMix64: a power-cut test replays from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    /// What survives a power cut.
    durable: Vec<u8>,
    /// What the process sees.
    current: Vec<u8>,
    /// Writes since the last sync: (offset, length), in order.
    pending: Vec<(usize, usize)>,
}

impl SimFile {
    fn sync(&mut self) {
        self.durable.resize(self.current.len(), 0);
        for &(at, len) in &self.pending {
            let end = (at + len).min(self.current.len());
            if at < end {
                self.durable[at..end].copy_from_slice(&self.current[at..end]);
            }
        }
        self.pending.clear();
    }

    /// The power goes out: keep the durable image, with `torn` sectors of
    /// the last unsynced write if any.
    fn cut(&mut self, rng: &mut Rng, tear: bool) -> bool {
        let mut torn = false;
        if let (true, Some(&(at, len))) = (tear, self.pending.last()) {
            let sectors = len.div_ceil(SECTOR_BYTES);
            if sectors > 1 {
                let keep = (1 + rng.below(sectors as u64 - 1) as usize) * SECTOR_BYTES;
                let end = (at + keep).min(self.current.len());
                // A write past the end grows the file by all of it (the size
                // is one metadata update); only the kept sectors hold data.
                let grown = (at + len).min(self.current.len());
                if self.durable.len() < grown {
                    self.durable.resize(grown, 0);
                }
                self.durable[at..end].copy_from_slice(&self.current[at..end]);
                torn = true;
            }
        }
        self.current = self.durable.clone();
        self.pending.clear();
        torn
    }
}

#[derive(Debug)]
struct Disk {
    files: BTreeMap<String, SimFile>,
    /// Incremented at every cut; a handle of an earlier life fails.
    life: u64,
    /// Storage calls left before the power goes out.
    calls_left: Option<u64>,
    rng: Rng,
    cuts: u64,
    torn: u64,
    io: IoCounts,
}

/// Write and sync calls, counted across files.
#[derive(Debug, Default)]
struct IoCounts {
    writes: u64,
    written_bytes: u64,
    syncs: u64,
    resizes: u64,
}

/// What happened on a [`SimDisk`] so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    /// Power cuts.
    pub cuts: u64,
    /// Cuts that tore a write.
    pub torn_writes: u64,
    /// Write calls, in every file (what a commit costs: see the outbox's
    /// commit-cost test).
    pub writes: u64,
    /// Bytes those writes carried.
    pub written_bytes: u64,
    /// `sync_data` calls.
    pub syncs: u64,
    /// `set_len` calls (a file grown or shrunk).
    pub resizes: u64,
}

/// The simulated disk. Cheap to clone (one disk).
#[derive(Clone)]
pub struct SimDisk {
    disk: Arc<Mutex<Disk>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDisk").field("stats", &self.stats()).finish()
    }
}

fn off() -> std::io::Error {
    std::io::Error::other("simulated power cut: the disk is off for this life")
}

impl SimDisk {
    /// An empty disk whose cuts draw from `seed`.
    pub fn new(seed: u64) -> Self {
        let disk = Disk {
            files: BTreeMap::new(),
            life: 0,
            calls_left: None,
            rng: Rng::new(seed),
            cuts: 0,
            torn: 0,
            io: IoCounts::default(),
        };
        Self { disk: Arc::new(Mutex::new(disk)) }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes out after `calls` more storage calls.
    pub fn arm(&self, calls: u64) {
        self.lock().calls_left = Some(calls);
    }

    /// The power goes out now, if it is armed and has not gone out yet.
    pub fn cut_now(&self) {
        let mut d = self.lock();
        if d.calls_left.is_some() {
            Self::cut(&mut d);
        }
    }

    fn cut(d: &mut Disk) {
        let tear = d.rng.below(2) == 0;
        let Disk { files, rng, .. } = d;
        let mut torn = 0;
        for f in files.values_mut() {
            torn += u64::from(f.cut(rng, tear));
        }
        d.torn += torn.min(1);
        d.cuts += 1;
        d.life += 1;
        d.calls_left = None;
    }

    /// Counts a storage call of a handle of life `life`: fails if that life
    /// is over, or if this call is the one the power goes out at.
    fn call(d: &mut Disk, life: u64) -> std::io::Result<()> {
        if d.life != life {
            return Err(off());
        }
        match d.calls_left {
            Some(0) => {
                Self::cut(d);
                Err(off())
            }
            Some(n) => {
                d.calls_left = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Cuts and torn writes so far.
    pub fn stats(&self) -> DiskStats {
        let d = self.lock();
        DiskStats {
            cuts: d.cuts,
            torn_writes: d.torn,
            writes: d.io.writes,
            written_bytes: d.io.written_bytes,
            syncs: d.io.syncs,
            resizes: d.io.resizes,
        }
    }

    /// A handle on file `name` for this life (the file is created empty if
    /// missing), as a store's [`Storage`].
    pub fn storage(&self, name: &str) -> Storage {
        let mut d = self.lock();
        let life = d.life;
        d.files.entry(name.to_owned()).or_default();
        Storage::Backend(Box::new(SimBackend { disk: self.clone(), name: name.to_owned(), life }))
    }

    /// Whether file `name` exists.
    pub fn exists(&self, name: &str) -> std::io::Result<bool> {
        let mut d = self.lock();
        let life = d.life;
        Self::call(&mut d, life)?;
        Ok(d.files.contains_key(name))
    }

    /// Renames `from` to `to`, replacing it (durable at once).
    pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        let mut d = self.lock();
        let life = d.life;
        Self::call(&mut d, life)?;
        let f = d.files.remove(from).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        d.files.insert(to.to_owned(), f);
        Ok(())
    }

    /// Removes `name` (durable at once); nothing if missing.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        let mut d = self.lock();
        let life = d.life;
        Self::call(&mut d, life)?;
        d.files.remove(name);
        Ok(())
    }

    /// Every byte the disk holds durably, file by file (a forensic view).
    pub fn durable_images(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().files.iter().map(|(n, f)| (n.clone(), f.durable.clone())).collect()
    }
}

/// One life's handle on one file.
struct SimBackend {
    disk: SimDisk,
    name: String,
    life: u64,
}

impl fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBackend").field("name", &self.name).field("life", &self.life).finish()
    }
}

impl SimBackend {
    fn with<T>(&self, f: impl FnOnce(&mut SimFile) -> std::io::Result<T>) -> std::io::Result<T> {
        self.with_disk(|_, file| f(file))
    }

    /// Like [`SimBackend::with`], with the disk's counters at hand.
    fn with_disk<T>(
        &self,
        f: impl FnOnce(&mut IoCounts, &mut SimFile) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let mut guard = self.disk.lock();
        let d = &mut *guard;
        SimDisk::call(d, self.life)?;
        let Disk { files, io, .. } = d;
        let file =
            files.get_mut(&self.name).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        f(io, file)
    }
}

impl redb::StorageBackend for SimBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.with(|f| Ok(f.current.len() as u64))
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.with(|f| {
            let at = usize::try_from(offset).map_err(std::io::Error::other)?;
            f.current
                .get(at..at + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
        })
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.with_disk(|io, f| {
            io.resizes += 1;
            let len = usize::try_from(len).map_err(std::io::Error::other)?;
            f.current.resize(len, 0);
            f.pending.retain(|&(at, _)| at < len);
            Ok(())
        })
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        self.with_disk(|io, f| {
            io.syncs += 1;
            f.sync();
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.with_disk(|io, f| {
            io.writes += 1;
            io.written_bytes += data.len() as u64;
            let at = usize::try_from(offset).map_err(std::io::Error::other)?;
            if f.current.len() < at + data.len() {
                f.current.resize(at + data.len(), 0);
            }
            f.current[at..at + data.len()].copy_from_slice(data);
            f.pending.push((at, data.len()));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(disk: &SimDisk, name: &str) -> Box<dyn redb::StorageBackend> {
        match disk.storage(name) {
            Storage::Backend(b) => b,
            Storage::File(_) => unreachable!(),
        }
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_tears_at_most_the_last_write() {
        for seed in 0..64 {
            let disk = SimDisk::new(seed);
            let f = backend(&disk, "f");
            f.write(0, &[1; 2048]).unwrap();
            f.sync_data(false).unwrap();
            f.write(0, &[2; 2048]).unwrap();
            f.write(4096, &[3; 2048]).unwrap();
            disk.arm(0);
            assert!(f.len().is_err(), "seed {seed}: the cut call fails");
            assert!(f.read(0, 1).is_err(), "seed {seed}: the old life stays dead");
            let f = backend(&disk, "f");
            let all = f.read(0, f.len().unwrap() as usize).unwrap();
            assert_eq!(
                &all[..2048],
                &[1; 2048],
                "seed {seed}: the synced write survives, the unsynced one not"
            );
            let tail = all.get(4096..).unwrap_or_default();
            let arrived = tail.iter().take_while(|&&b| b == 3).count();
            assert!(arrived < 2048 && arrived % SECTOR_BYTES == 0, "seed {seed}: at most a torn prefix");
            assert!(tail[arrived..].iter().all(|&b| b == 0), "seed {seed}: zeros where nothing arrived");
        }
        let stats = (0..64).map(|seed| {
            let disk = SimDisk::new(seed);
            let f = backend(&disk, "f");
            f.write(0, &[3; 2048]).unwrap();
            disk.arm(1);
            disk.cut_now();
            disk.stats()
        });
        assert!(stats.clone().any(|s| s.torn_writes == 1) && stats.clone().any(|s| s.torn_writes == 0));
    }
}
