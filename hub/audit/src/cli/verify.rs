//! `mpp-hub audit verify`: recompute the hash chain and the Merkle tree of a
//! store or an export, check every signed checkpoint against them (and its
//! signature, given the public key), and name the first bad sequence.
//!
//! Guarantee: [`ChainVerifier`] accepts a sequence of entries only if their
//! sequences are dense from 1, each entry's hash is the hash of its own
//! fields, each `prev_hash` is the previous entry's hash, and stream
//! sequences increase; it accepts a checkpoint only at exactly its tree
//! size, with the root, head hash, stream sequence and entry time that the
//! entries give, in order after the previous checkpoint, and (with a key)
//! with a valid signature by that key. The first violation is reported with
//! the sequence of the first entry it implicates.
//!
//! Memory is bounded whatever the log's length: the verifier holds one
//! entry, the Merkle frontier (at most 64 hashes) and the previous
//! checkpoint; the store is read block by block (at most
//! `mpp_store::BLOCK_BYTES_MAX` of records at a time, plus sled's page cache
//! of [`super::AUDIT_CACHE_BYTES`]) and an export line by line.

use std::io::{BufRead, Write};

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::log::{Hash32, GENESIS_HASH};
use mpp_core::merkle::{entry_leaf_hash, MerkleFrontier, Subtree};
use mpp_core::LogEntry;
use mpp_store::{Store, BLOCK_ENTRIES_MAX};

use super::export::{CheckpointLine, EntryLine, ExportReader, Line, EXPORT_FORMAT};
use super::report::VerifyReport;
use super::{hex32, open_store, read_key, say, Progress, PublicKey, VerifyArgs, EXIT_FAILED};

/// The first thing wrong, with the sequence of the first entry it
/// implicates (for a checkpoint whose root differs: its tree size, the last
/// entry it covers; for a missing tail: the first missing sequence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FAIL at seq {seq}: {what}")]
pub struct Failure {
    /// The first bad sequence.
    pub seq: u64,
    /// What is wrong.
    pub what: String,
}

impl Failure {
    /// The entry of an export's line `at`, or why it is not one (the
    /// failure is at `next_seq`, the sequence the entry should have).
    pub(crate) fn entry_at(l: &EntryLine, at: u64, next_seq: u64) -> Result<(LogEntry, Hash32), Failure> {
        l.to_entry().map_err(|what| Failure {
            seq: next_seq,
            what: format!("line {at} (entry seq {}): {what}", l.seq),
        })
    }

    /// The checkpoint of an export's line `at`, or why it is not one.
    pub(crate) fn checkpoint_at(l: &CheckpointLine, at: u64) -> Result<SignedCheckpoint, Failure> {
        l.to_checkpoint().map_err(|what| Failure {
            seq: l.tree_size.max(1),
            what: format!("line {at} (checkpoint of tree size {}): {what}", l.tree_size),
        })
    }
}

/// The streaming verifier: feed it entries in order and checkpoints right
/// after the entry that ends their tree.
#[derive(Debug)]
pub struct ChainVerifier {
    size: u64,
    head_hash: Hash32,
    last_stream_seq: u64,
    last_time_ns: i64,
    frontier: MerkleFrontier,
    key: Option<PublicKey>,
    checkpoints: u64,
    latest: Option<SignedCheckpoint>,
    /// Complete aligned subtrees of at least this level are collected in
    /// `completed` (to compare with stored ones); `None`: not collected.
    subtree_level_min: Option<u32>,
    completed: Vec<Subtree>,
}

/// Reads the header line of an export: the failure (at sequence 1) when
/// it is missing, does not read, or names an unknown format.
pub(crate) fn read_header<R: BufRead>(reader: &mut ExportReader<R>) -> Result<(), Failure> {
    let what = match reader.next_line() {
        Some(Ok(Line::Header(h))) if h.format == EXPORT_FORMAT => return Ok(()),
        Some(Ok(Line::Header(h))) => format!("unknown export format {:?}", h.format),
        Some(Ok(_)) => "line 1 is not the export header".to_owned(),
        Some(Err(e)) => e.to_string(),
        None => "the export is empty".to_owned(),
    };
    Err(Failure { seq: 1, what })
}

impl ChainVerifier {
    /// The next line of an export this verifier reads: the failure (at the
    /// next sequence) when it does not read, or when the export ends before
    /// its end line.
    pub(crate) fn next_line<R: BufRead>(&self, reader: &mut ExportReader<R>) -> Result<Line, Failure> {
        match reader.next_line() {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(Failure { seq: self.next_seq(), what: e.to_string() }),
            None => Err(Failure {
                seq: self.next_seq(),
                what: format!(
                    "the export ends after entry {} without its end line (truncated?)",
                    self.size()
                ),
            }),
        }
    }

    /// A verifier of an empty log; with `key`, checkpoint signatures are checked.
    pub fn new(key: Option<PublicKey>) -> Self {
        ChainVerifier {
            size: 0,
            head_hash: GENESIS_HASH,
            last_stream_seq: 0,
            last_time_ns: 0,
            frontier: MerkleFrontier::new(),
            key,
            checkpoints: 0,
            latest: None,
            subtree_level_min: None,
            completed: Vec::new(),
        }
    }

    /// Also collect every complete aligned subtree of `level_min` and above
    /// as entries complete it (see [`ChainVerifier::take_completed`]).
    pub fn collect_subtrees(mut self, level_min: u32) -> Self {
        self.subtree_level_min = Some(level_min);
        self
    }

    /// The subtrees completed since the last call.
    pub fn take_completed(&mut self) -> Vec<Subtree> {
        std::mem::take(&mut self.completed)
    }

    /// Entries accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The sequence the next entry must have.
    pub fn next_seq(&self) -> u64 {
        self.size + 1
    }

    /// Hash of the last entry accepted.
    pub fn head_hash(&self) -> Hash32 {
        self.head_hash
    }

    /// Merkle root of the entries accepted so far.
    pub fn root(&self) -> Hash32 {
        self.frontier.root()
    }

    /// The frontier of the entries accepted so far.
    pub fn frontier(&self) -> &MerkleFrontier {
        &self.frontier
    }

    /// Accepts the next entry. `claimed_hash` is the hash stored with it;
    /// `e.hash` must be recomputed from its fields (as [`LogEntry::new`]
    /// and [`LogEntry::decode`] do).
    pub fn push(&mut self, e: &LogEntry, claimed_hash: &Hash32) -> Result<(), Failure> {
        let want = self.next_seq();
        if e.seq != want {
            let what = if e.seq > want {
                format!("entry {want} is missing (found seq {} in its place)", e.seq)
            } else {
                format!("found seq {} where seq {want} belongs (entries out of order or repeated)", e.seq)
            };
            return Err(Failure { seq: want, what });
        }
        if e.hash != *claimed_hash {
            return Err(Failure {
                seq: want,
                what: format!(
                    "the stored hash {} is not the hash of the entry's content ({})",
                    hex32(claimed_hash),
                    hex32(&e.hash)
                ),
            });
        }
        if e.prev_hash != self.head_hash {
            return Err(Failure { seq: want, what: "prev_hash is not the previous entry's hash".to_owned() });
        }
        if e.stream_seq <= self.last_stream_seq {
            return Err(Failure {
                seq: want,
                what: format!(
                    "stream seq {} is not above the previous {}",
                    e.stream_seq, self.last_stream_seq
                ),
            });
        }
        let (level_min, completed) = (self.subtree_level_min, &mut self.completed);
        self.frontier
            .push_with(entry_leaf_hash(&e.hash), |s| {
                if level_min.is_some_and(|min| s.level >= min) {
                    completed.push(s);
                }
            })
            .map_err(|_| Failure { seq: want, what: "the Merkle tree is full".to_owned() })?;
        self.size = want;
        self.head_hash = e.hash;
        self.last_stream_seq = e.stream_seq;
        self.last_time_ns = e.stream_time_ns;
        Ok(())
    }

    /// Checks a checkpoint whose tree size is the number of entries accepted
    /// so far.
    pub fn checkpoint(&mut self, cp: &SignedCheckpoint) -> Result<(), Failure> {
        let c = &cp.checkpoint;
        let fail = |what: String| Err(Failure { seq: c.tree_size.max(1), what });
        if c.tree_size != self.size {
            return fail(format!(
                "a checkpoint of tree size {} appears after entry {} (out of place)",
                c.tree_size, self.size
            ));
        }
        if let Some(prev) = &self.latest {
            if let Err(e) = c.check_follows(&prev.checkpoint) {
                return fail(format!(
                    "checkpoint of tree size {} cannot follow the previous one: {e}",
                    c.tree_size
                ));
            }
        }
        let last_verified = self.latest.as_ref().map_or(0, |p| p.checkpoint.tree_size);
        if c.root_hash != self.frontier.root() {
            return fail(format!(
                "the Merkle root of entries 1..={} is {}, but the checkpoint signed {}: an entry after seq \
                 {last_verified} (the last matching checkpoint) and at or before seq {} was changed",
                c.tree_size,
                hex32(&self.frontier.root()),
                hex32(&c.root_hash),
                c.tree_size
            ));
        }
        if c.head_hash != self.head_hash {
            return fail(format!("the checkpoint's head hash is not the hash of entry {}", c.tree_size));
        }
        if c.last_stream_seq != self.last_stream_seq
            || (c.tree_size > 0 && c.last_entry_time_ns != self.last_time_ns)
        {
            return fail(format!(
                "the checkpoint's stream seq {} or entry time {} is not that of entry {}",
                c.last_stream_seq, c.last_entry_time_ns, c.tree_size
            ));
        }
        if let Some(key) = &self.key {
            if let Err(e) = key.verify_checkpoint(cp) {
                return fail(format!("checkpoint of tree size {}: {e}", c.tree_size));
            }
        }
        self.checkpoints += 1;
        self.latest = Some(cp.clone());
        Ok(())
    }

    /// The report of a verification that passed.
    pub fn report(&self) -> VerifyReport {
        VerifyReport {
            entries: self.size,
            head_hash: self.head_hash,
            root_hash: self.frontier.root(),
            checkpoints: self.checkpoints,
            signatures_checked: self.key.is_some(),
            latest_checkpoint: self.latest.clone(),
        }
    }
}

/// Verifies a store: every entry up to the head (as read when called), the
/// stored head and Merkle frontier against what the entries give, every
/// stored Merkle subtree hash, and every stored checkpoint. An entry that
/// cannot be read (a damaged block) is named by its own sequence: the damaged
/// block is re-read entry by entry.
pub fn verify_store<S: Store>(
    store: &S,
    key: Option<PublicKey>,
    progress: &mut Progress,
) -> Result<VerifyReport, Failure> {
    let (head, frontier) = read_head(store)?;
    let mut v = ChainVerifier::new(key).collect_subtrees(mpp_store::STORED_SUBTREE_LEVEL_MIN);
    verify_window(store, &mut v, head.last_seq, progress)?;
    verify_end(store, &v, &head, &frontier)
}

/// Entries verified between two re-openings of the store by [`verify_dir`].
/// sled 0.34 keeps every log block it has read in memory (they are stored as
/// blobs, which its cache bound does not count), so a long verification
/// re-opens the store to let them go.
pub const REOPEN_EVERY_ENTRIES: u64 = super::window::WINDOW_ENTRIES;

/// [`verify_store`] on the store in `dir`, re-opened every
/// [`REOPEN_EVERY_ENTRIES`] entries so that memory stays bounded whatever
/// the log's length.
pub fn verify_dir(
    dir: &std::path::Path,
    key: Option<PublicKey>,
    progress: &mut Progress,
) -> anyhow::Result<Result<VerifyReport, Failure>> {
    verify_dir_reopening(dir, key, REOPEN_EVERY_ENTRIES, progress)
}

/// [`verify_dir`], re-opening the store every `reopen_every` entries (at
/// least 1).
pub fn verify_dir_reopening(
    dir: &std::path::Path,
    key: Option<PublicKey>,
    reopen_every: u64,
    progress: &mut Progress,
) -> anyhow::Result<Result<VerifyReport, Failure>> {
    verify_dir_reopening_alongside(dir, key, reopen_every, progress, |_| ()).map(|(report, ())| report)
}

/// [`verify_dir_reopening`] while `alongside` runs on another thread with
/// the same open store (sled lets one process hold a directory once, so
/// the two share a handle): the store is re-opened at a window's end only
/// once `alongside` has returned (until then the windows continue on the
/// shared handle). Returns both results.
pub fn verify_dir_reopening_alongside<T: Send>(
    dir: &std::path::Path,
    key: Option<PublicKey>,
    reopen_every: u64,
    progress: &mut Progress,
    alongside: impl FnOnce(&mpp_store::SledStore) -> T + Send,
) -> anyhow::Result<(Result<VerifyReport, Failure>, T)> {
    let first = open_store(dir)?;
    let (head, frontier) = match read_head(&first) {
        Ok(h) => h,
        Err(f) => return Ok((Err(f), alongside(&first))),
    };
    let mut v = ChainVerifier::new(key).collect_subtrees(mpp_store::STORED_SUBTREE_LEVEL_MIN);
    std::thread::scope(|scope| {
        let shared = first.clone();
        let mut other = Some(scope.spawn(move || alongside(&shared)));
        let mut done = None;
        let mut store = Some(first);
        let mut failed = None;
        while v.size() < head.last_seq {
            let s = match store.take() {
                Some(s) => s,
                None => open_store(dir)?,
            };
            let to = head.last_seq.min(v.size().saturating_add(reopen_every.max(1)));
            if let Err(f) = verify_window(&s, &mut v, to, progress) {
                failed = Some(f);
                store = Some(s);
                break;
            }
            // Keep the handle while the other thread still reads it, and
            // at the end.
            if to == head.last_seq || other.as_ref().is_some_and(|t| !t.is_finished()) {
                store = Some(s);
            } else if let Some(t) = other.take() {
                done = Some(t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
        }
        let result = match other.take() {
            Some(t) => t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            None => done.take().ok_or_else(|| anyhow::anyhow!("the verification alongside did not run"))?,
        };
        if let Some(f) = failed {
            return Ok((Err(f), result));
        }
        let s = match store.take() {
            Some(s) => s,
            None => open_store(dir)?,
        };
        Ok((verify_end(&s, &v, &head, &frontier), result))
    })
}

fn read_head<S: Store>(store: &S) -> Result<(mpp_store::Head, MerkleFrontier), Failure> {
    store.head_and_frontier().map_err(|e| Failure { seq: 0, what: format!("reading the head: {e}") })
}

/// Verifies entries `v.next_seq()..=to` and the checkpoints up to tree size
/// `to` (those of size 0 too, on the first window).
fn verify_window<S: Store>(
    store: &S,
    v: &mut ChainVerifier,
    to: u64,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let from_size = match &v.latest {
        Some(cp) => cp.checkpoint.tree_size + 1,
        None if v.size() == 0 => 0,
        None => v.size() + 1,
    };
    let mut checkpoints = store.checkpoints(from_size, to).peekable();
    let mut feed_checkpoints = |v: &mut ChainVerifier| -> Result<(), Failure> {
        while let Some(next) =
            checkpoints.next_if(|c| c.as_ref().map_or(true, |c| c.checkpoint.tree_size <= v.size()))
        {
            let cp = next
                .map_err(|e| Failure { seq: v.size().max(1), what: format!("reading a checkpoint: {e}") })?;
            v.checkpoint(&cp)?;
        }
        Ok(())
    };
    feed_checkpoints(v)?;
    let mut entries = store.entries(v.next_seq());
    while v.size() < to {
        match entries.next() {
            Some(Ok(e)) => {
                let claimed = e.hash;
                v.push(&e, &claimed)?;
                check_subtrees(store, v)?;
                progress.tick(1);
                feed_checkpoints(v)?;
            }
            Some(Err(err)) => return Err(first_unreadable(store, v, &err.to_string())),
            None => {
                return Err(Failure {
                    seq: v.next_seq(),
                    what: format!("the log ends after entry {} but the head is at seq {to}", v.size()),
                })
            }
        }
    }
    Ok(())
}

/// The checks after the last entry: no checkpoint beyond the log, the
/// stored head and frontier describe the end of the log, nothing past it.
fn verify_end<S: Store>(
    store: &S,
    v: &ChainVerifier,
    head: &mpp_store::Head,
    frontier: &MerkleFrontier,
) -> Result<VerifyReport, Failure> {
    // A checkpoint beyond the log means signed entries were removed.
    if let Some(next) = store.checkpoints(head.last_seq.saturating_add(1), u64::MAX).next() {
        return Err(match next {
            Ok(cp) => Failure {
                seq: v.next_seq(),
                what: format!(
                    "a checkpoint signs {} entries but the log ends at seq {}: signed entries are missing",
                    cp.checkpoint.tree_size,
                    v.size()
                ),
            },
            Err(e) => Failure { seq: v.next_seq(), what: format!("reading a checkpoint: {e}") },
        });
    }
    if head.head_hash != v.head_hash() || head.last_stream_seq != v.last_stream_seq {
        return Err(Failure {
            seq: head.last_seq.max(1),
            what: format!("the stored head {head:?} does not describe entry {}", head.last_seq),
        });
    }
    if *frontier != *v.frontier() {
        return Err(Failure {
            seq: head.last_seq.max(1),
            what: format!(
                "the stored Merkle frontier (root {}) differs from the one the entries give (root {})",
                hex32(&frontier.root()),
                hex32(&v.root())
            ),
        });
    }
    match store.entry(head.last_seq + 1) {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => {
            return Err(Failure {
                seq: head.last_seq + 1,
                what: format!("the log holds data past its head (seq {})", head.last_seq),
            })
        }
    }
    Ok(v.report())
}

/// Compares the subtrees the last entry completed with the stored hashes.
fn check_subtrees<S: Store>(store: &S, v: &mut ChainVerifier) -> Result<(), Failure> {
    for s in v.take_completed() {
        let seq = v.size();
        match store.subtree(s.level, s.index) {
            Ok(Some(h)) if h == s.hash => {}
            Ok(Some(_)) => {
                return Err(Failure {
                    seq,
                    what: format!(
                        "the stored hash of the Merkle subtree of entries {}..={} is not the one the entries give",
                        (s.index << s.level) + 1,
                        seq
                    ),
                })
            }
            Ok(None) => {
                return Err(Failure {
                    seq,
                    what: format!("the hash of the Merkle subtree at level {}, index {} is not stored", s.level, s.index),
                })
            }
            Err(e) => return Err(Failure { seq, what: format!("reading a Merkle subtree hash: {e}") }),
        }
    }
    Ok(())
}

/// After reading the log block by block failed at `v.next_seq()`, reads the
/// damaged block entry by entry (pushing the readable ones, so a broken link
/// before the damage is reported first) and names the first entry that
/// cannot be read.
fn first_unreadable<S: Store>(store: &S, v: &mut ChainVerifier, block_error: &str) -> Failure {
    for _ in 0..BLOCK_ENTRIES_MAX {
        let seq = v.next_seq();
        match store.entry(seq) {
            Ok(Some(e)) => {
                let claimed = e.hash;
                if let Err(f) = v.push(&e, &claimed) {
                    return f;
                }
            }
            Ok(None) => return Failure { seq, what: "entry is missing".to_owned() },
            Err(e) => return Failure { seq, what: format!("entry cannot be read: {e}") },
        }
    }
    Failure { seq: v.next_seq(), what: format!("the log cannot be read: {block_error}") }
}

/// Verifies an export: the header, every entry and checkpoint line in
/// order, and the end line.
pub fn verify_export<R: BufRead>(
    reader: &mut ExportReader<R>,
    key: Option<PublicKey>,
    progress: &mut Progress,
) -> Result<VerifyReport, Failure> {
    let mut v = ChainVerifier::new(key);
    read_header(reader)?;
    loop {
        let line = v.next_line(reader)?;
        let at = reader.line();
        match line {
            Line::Entry(l) => {
                let (e, claimed) = Failure::entry_at(&l, at, v.next_seq())?;
                v.push(&e, &claimed).map_err(|f| Failure { what: format!("line {at}: {}", f.what), ..f })?;
                progress.tick(1);
            }
            Line::Checkpoint(l) => {
                let cp = Failure::checkpoint_at(&l, at)?;
                v.checkpoint(&cp).map_err(|f| Failure { what: format!("line {at}: {}", f.what), ..f })?;
            }
            Line::End(end) => {
                let report = v.report();
                let fail =
                    |what: String| Err(Failure { seq: v.next_seq(), what: format!("line {at}: {what}") });
                if end.entries != report.entries {
                    return fail(format!(
                        "the end line counts {} entries, the export holds {} (entries missing at the end?)",
                        end.entries, report.entries
                    ));
                }
                if end.checkpoints != report.checkpoints
                    || end.head_hash != hex32(&report.head_hash)
                    || end.root_hash != hex32(&report.root_hash)
                {
                    return fail(
                        "the end line's checkpoints, head or root differ from the export's".to_owned(),
                    );
                }
                if reader.next_line().is_some() {
                    return fail("lines after the end line".to_owned());
                }
                return Ok(report);
            }
            Line::Header(_) => {
                return Err(Failure { seq: v.next_seq(), what: format!("line {at}: a second header") });
            }
        }
    }
}

/// `mpp-hub audit verify`.
pub(crate) fn run(args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let key = read_key(args.public_key.as_deref())?;
    let policy = args.witnesses.policy(key.as_ref())?;
    // The cosigned checkpoint to end at, chosen before the log is read.
    let cosigned = match (&policy, args.witnesses.read_file()?, &args.data_dir) {
        (None, _, _) => None,
        (Some(p), Some(text), _) => Some(p.check(&text)),
        (Some(p), None, Some(dir)) if args.export.is_none() => {
            Some(p.newest_in(&crate::cosign::read_file(dir)?))
        }
        (Some(_), None, _) => {
            anyhow::bail!("with --export, give the cosigned checkpoint: --cosigned-checkpoint")
        }
    };
    let mut progress = Progress::new("verify");
    let result = match (&args.export, &args.data_dir) {
        (Some(path), _) => verify_export(&mut ExportReader::open(path)?, key, &mut progress),
        (None, Some(dir)) => verify_dir_reopening(dir, key, args.reopen_every, &mut progress)?,
        (None, None) => anyhow::bail!("give --data-dir or --export"),
    };
    progress.finish();
    let report = match result {
        Ok(report) => report,
        Err(f) => {
            say(out, &f.to_string())?;
            return Ok(EXIT_FAILED);
        }
    };
    let root_at = |size: u64| -> anyhow::Result<Hash32> {
        match (&args.export, &args.data_dir) {
            (Some(path), _) => export_prefix_root(path, size),
            (None, Some(dir)) => Ok(crate::audit::root_at(&open_store(dir)?, size)?),
            (None, None) => anyhow::bail!("give --data-dir or --export"),
        }
    };
    report_witnessed(out, &report, cosigned, policy.as_ref().map_or(0, |p| p.quorum()), root_at)
}

/// Prints the summary and what the witnesses vouch for (or the warning
/// about unsigned entries without them); the exit status.
pub(crate) fn report_witnessed(
    out: &mut dyn Write,
    report: &VerifyReport,
    cosigned: Option<Result<super::witnessed::Cosigned, String>>,
    quorum: usize,
    root_at: impl FnOnce(u64) -> anyhow::Result<Hash32>,
) -> anyhow::Result<u8> {
    let Some(cosigned) = cosigned else {
        say(out, &report.summary())?;
        if let Some(w) = super::witnessed::unsigned_tail(report) {
            say(out, &w)?;
            eprintln!("{w}");
        }
        return Ok(0);
    };
    match super::witnessed::conclude(report, cosigned, quorum, root_at) {
        Ok(lines) => {
            say(out, &report.summary())?;
            for l in lines {
                if l.starts_with("WARNING") {
                    eprintln!("{l}");
                }
                say(out, &l)?;
            }
            Ok(0)
        }
        Err(failure) => {
            say(out, &failure)?;
            Ok(EXIT_FAILED)
        }
    }
}

/// The Merkle root of the first `size` entries of an export (already
/// verified whole).
fn export_prefix_root(path: &std::path::Path, size: u64) -> anyhow::Result<Hash32> {
    let mut reader = ExportReader::open(path)?;
    let mut frontier = MerkleFrontier::new();
    let mut n = 0u64;
    while n < size {
        let Some(line) = reader.next_line() else { anyhow::bail!("the export ends before entry {size}") };
        if let Line::Entry(l) = line.map_err(|e| anyhow::anyhow!("{e}"))? {
            let (e, _) = Failure::entry_at(&l, reader.line(), n + 1).map_err(|f| anyhow::anyhow!("{f}"))?;
            frontier
                .push(entry_leaf_hash(&e.hash))
                .map_err(|_| anyhow::anyhow!("the Merkle tree is full"))?;
            n += 1;
        }
    }
    Ok(frontier.root())
}
