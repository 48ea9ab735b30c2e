//! `mpp-hub audit rebuild`: fold the log from scratch and diff the result
//! against the live projection.
//!
//! The fold is [`mpp_ledger::ledger::rebuild`], the ledger's own replay: every
//! entry is decoded, validated, deduplicated, decided and applied again, and
//! each replayed entry must hash exactly like the stored one (so a verdict
//! the rules would not give is found too). An export is first loaded into a
//! scratch store ([`import_export`], which verifies it on the way, signatures
//! included when a key is given) and folded the same way.
//!
//! Memory: the fold holds the whole projection it builds (every case and
//! standard) and the dedupe index (about 40 bytes per accepted event); the
//! log itself is streamed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::decide::MemState;
use mpp_core::ids::{AgencyId, EventId, ServiceId, TrackingNumber};
use mpp_core::log::Hash32;
use mpp_core::merkle::{MerkleFrontier, NodeSource};
use mpp_core::{Case, LogEntry, ServiceStandard};
use mpp_store::{push_entry, Cases, Checkpoints, CommitBatch, Entries, Head, SledStore, Store, StoreError};
use serde_json::Value;

use super::export::{ExportReader, Line};
use super::report::VerifyReport;
use super::verify::{read_header, ChainVerifier, Failure};
use super::window::Windowed;
use super::{open_store, say, Progress, PublicKey, RebuildArgs, EXIT_FAILED};

/// Entries per commit when loading an export into a scratch store.
pub const IMPORT_BATCH_ENTRIES_MAX: usize = 4096;

/// Differing cases listed by a diff.
pub const DIFF_CASES_SHOWN_MAX: usize = 10;

/// A store wrapper that counts the entries read through
/// [`Store::entries`] on a shared [`Progress`], so a fold that only takes a
/// `&impl Store` still reports progress. Everything else is delegated.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    progress: Arc<Mutex<Progress>>,
}

impl<S: Store> Counted<S> {
    /// Wraps `inner`, counting on `progress`.
    pub fn new(inner: S, progress: Progress) -> Self {
        Counted { inner, progress: Arc::new(Mutex::new(progress)) }
    }

    /// Prints the closing progress line.
    pub fn finish(&self) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).finish();
    }
}

impl<S: Store> NodeSource for Counted<S> {
    type Error = StoreError;

    fn leaf_hash(&self, index: u64) -> Result<Hash32, StoreError> {
        self.inner.leaf_hash(index)
    }

    fn leaf_hashes(&self, start: u64, out: &mut [Hash32]) -> Result<(), StoreError> {
        self.inner.leaf_hashes(start, out)
    }

    fn stored_subtree_hash(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.inner.stored_subtree_hash(level, index)
    }
}

impl<S: Store> Store for Counted<S> {
    fn head(&self) -> Result<Head, StoreError> {
        self.inner.head()
    }

    fn head_and_frontier(&self) -> Result<(Head, MerkleFrontier), StoreError> {
        self.inner.head_and_frontier()
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.inner.subtree(level, index)
    }

    fn checkpoint(&self, tree_size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.inner.checkpoint(tree_size)
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.inner.latest_checkpoint()
    }

    fn checkpoints(&self, from_size: u64, to_size: u64) -> Checkpoints<'_> {
        self.inner.checkpoints(from_size, to_size)
    }

    fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(checkpoint)
    }

    fn case(&self, id: &TrackingNumber) -> Result<Option<Case>, StoreError> {
        self.inner.case(id)
    }

    fn cases(&self) -> Cases<'_> {
        self.inner.cases()
    }

    fn standard(
        &self,
        agency: &AgencyId,
        service: &ServiceId,
    ) -> Result<Option<ServiceStandard>, StoreError> {
        self.inner.standard(agency, service)
    }

    fn standards(&self) -> Result<Vec<ServiceStandard>, StoreError> {
        self.inner.standards()
    }

    fn registry(&self) -> Result<mpp_core::registry::Registry, StoreError> {
        self.inner.registry()
    }

    fn event_seq(&self, id: &EventId) -> Result<Option<u64>, StoreError> {
        self.inner.event_seq(id)
    }

    fn event_seqs(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, StoreError> {
        self.inner.event_seqs(ids)
    }

    fn entry(&self, seq: u64) -> Result<Option<LogEntry>, StoreError> {
        self.inner.entry(seq)
    }

    fn entries(&self, from_seq: u64) -> Entries<'_> {
        let progress = self.progress.clone();
        Box::new(self.inner.entries(from_seq).inspect(move |_| {
            progress.lock().unwrap_or_else(|p| p.into_inner()).tick(1);
        }))
    }

    fn parallel_entries(&self) -> bool {
        self.inner.parallel_entries()
    }

    fn commit_returning_cases(&self, batch: CommitBatch) -> Result<Vec<std::sync::Arc<Case>>, StoreError> {
        self.inner.commit_returning_cases(batch)
    }

    fn projected_through(&self) -> Result<u64, StoreError> {
        self.inner.projected_through()
    }

    fn stage_replayed(&self, cases: Vec<Case>) -> Result<(), StoreError> {
        self.inner.stage_replayed(cases)
    }

    fn flush_projection(&self) -> Result<(), StoreError> {
        self.inner.flush_projection()
    }

    fn projection_commitment(
        &self,
    ) -> Result<Option<mpp_core::checkpoint::ProjectionCommitment>, StoreError> {
        self.inner.projection_commitment()
    }
}

/// A scratch store in a directory of its own, read and written through
/// [`Windowed`] (so neither loading nor folding a long log holds it in
/// memory), closed and removed with the directory when dropped.
#[derive(Debug)]
pub struct Scratch(ScratchDir);

impl Scratch {
    /// Creates a new, empty scratch store under `parent` (the system's
    /// temporary directory by default).
    pub fn create(parent: Option<&Path>) -> anyhow::Result<Scratch> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = parent.join(format!("mpp-audit-scratch-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating scratch dir {}", dir.display()))?;
        let store = Windowed::new(&dir);
        // Create the store now, so that a problem shows here.
        let scratch = Scratch(ScratchDir(dir, store));
        scratch
            .store()
            .head()
            .with_context(|| format!("opening a scratch store in {}", scratch.0 .0.display()))?;
        Ok(scratch)
    }

    /// The scratch store.
    pub fn store(&self) -> &Windowed {
        &self.0 .1
    }

    /// The store, and the directory (closed and removed when dropped).
    pub fn into_windowed(self) -> (Windowed, ScratchDir) {
        (self.0 .1.clone(), self.0)
    }
}

/// Loads the export at `path` into a new scratch store, verifying it as it
/// goes, and hands back its log (read in windows) with the directory that
/// holds it. `None`: the export does not verify, which was said to `out`.
pub(crate) fn load_verified_export(
    path: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<Option<(Windowed, ScratchDir)>> {
    let scratch = Scratch::create(None)?;
    let mut load = Progress::new("load export");
    match import_export(&mut ExportReader::open(path)?, scratch.store(), None, &mut load) {
        Ok(_) => {}
        Err(ImportError::Invalid(f)) => {
            say(out, &format!("the export does not verify: {f}"))?;
            return Ok(None);
        }
        Err(ImportError::Store(e)) => return Err(e).context("loading the export"),
    }
    load.finish();
    Ok(Some(scratch.into_windowed()))
}

/// The directory of a scratch store, closed and removed when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf, Windowed);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = self.1.close() {
            eprintln!("warning: closing the scratch store {}: {e}", self.0.display());
        }
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove scratch dir {}: {e}", self.0.display());
        }
    }
}

/// Why an export could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The export does not verify.
    #[error(transparent)]
    Invalid(#[from] Failure),
    /// The scratch store failed.
    #[error("scratch store: {0}")]
    Store(#[from] StoreError),
}

/// Verifies an export (as [`super::verify::verify_export`] does) while
/// loading its entries and checkpoints into `store`, which must be empty:
/// the log only, no projection. Returns the verification report.
pub fn import_export<R: BufRead, S: Store>(
    reader: &mut ExportReader<R>,
    store: &S,
    key: Option<PublicKey>,
    progress: &mut Progress,
) -> Result<VerifyReport, ImportError> {
    let mut v = ChainVerifier::new(key);
    let mut frontier = MerkleFrontier::new();
    let mut batch = CommitBatch::default();
    let commit = |batch: &mut CommitBatch, frontier: &MerkleFrontier| -> Result<(), StoreError> {
        if let Some(last) = batch.entries.last() {
            batch.head = Head { last_seq: last.seq, last_stream_seq: last.stream_seq, head_hash: last.hash };
            batch.frontier = frontier.clone();
            store.commit(std::mem::take(batch))?;
        }
        Ok(())
    };
    read_header(reader)?;
    loop {
        let at = reader.line() + 1;
        let line = v.next_line(reader)?;
        match line {
            Line::Entry(l) => {
                let (e, claimed) = Failure::entry_at(&l, at, v.next_seq())?;
                v.push(&e, &claimed)?;
                push_entry(&mut frontier, &e.hash, &mut batch.subtrees)
                    .map_err(|_| Failure { seq: e.seq, what: "the Merkle tree is full".to_owned() })?;
                batch.entries.push(e);
                if batch.entries.len() >= IMPORT_BATCH_ENTRIES_MAX {
                    commit(&mut batch, &frontier)?;
                }
                progress.tick(1);
            }
            Line::Checkpoint(l) => {
                let cp = Failure::checkpoint_at(&l, at)?;
                v.checkpoint(&cp)?;
                commit(&mut batch, &frontier)?;
                store.put_checkpoint(&cp)?;
            }
            Line::End(end) => {
                commit(&mut batch, &frontier)?;
                let report = v.report();
                if end.entries != report.entries || reader.next_line().is_some() {
                    return Err(Failure {
                        seq: v.next_seq(),
                        what: format!("line {at}: the end line does not close the export"),
                    }
                    .into());
                }
                return Ok(report);
            }
            Line::Header(_) => {
                return Err(Failure { seq: v.next_seq(), what: format!("line {at}: a second header") }.into())
            }
        }
    }
}

/// The result of a rebuild and its comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Entries replayed.
    pub entries: u64,
    /// Cases and standards rebuilt.
    pub cases: usize,
    /// Standards in force rebuilt.
    pub standards: usize,
    /// SHA-256 digest of the rebuilt projection ([`projection_digest`]).
    pub digest: Hash32,
    /// Differences from the live projection (empty: identical), at most
    /// [`DIFF_CASES_SHOWN_MAX`] lines plus a count line.
    pub differences: Vec<String>,
}

/// Rebuilds the projection from `log` (a store, or a scratch store loaded
/// from an export) and, given a way to open the live store, diffs it
/// against the live store's stored projection, opened after the fold (the
/// fold may read the same directory). The two must be at the same head.
pub fn rebuild_and_compare<L: Store, V: Store>(
    log: &L,
    live: Option<&dyn Fn() -> anyhow::Result<V>>,
    progress: Progress,
) -> anyhow::Result<Result<RebuildReport, String>> {
    rebuild_and_compare_with(log, live, progress, &mpp_ledger::trust::Trust::default())
}

/// [`rebuild_and_compare`], judging registry statements with the registrar
/// keys of `trust`.
pub fn rebuild_and_compare_with<L: Store, V: Store>(
    log: &L,
    live: Option<&dyn Fn() -> anyhow::Result<V>>,
    progress: Progress,
    trust: &mpp_ledger::trust::Trust,
) -> anyhow::Result<Result<RebuildReport, String>> {
    let counted = Counted::new(log.clone(), progress);
    let rebuilt = mpp_ledger::ledger::rebuild_with(&counted, trust);
    counted.finish();
    let (rebuilt, head) = match rebuilt {
        Ok(r) => r,
        Err(e) => return Ok(Err(format!("the log does not replay: {e}"))),
    };
    let mut report = RebuildReport {
        entries: head.last_seq,
        cases: rebuilt.cases.len(),
        standards: rebuilt.standards.len(),
        digest: projection_digest(&rebuilt)?,
        differences: Vec::new(),
    };
    if let Some(open_live) = live {
        let live = open_live()?;
        let live_head = live.head().context("reading the live head")?;
        if live_head != head {
            bail!(
                "the log replayed ends at seq {} (hash {}), the live store at seq {} (hash {}): compare like with like",
                head.last_seq,
                hex::encode(head.head_hash),
                live_head.last_seq,
                hex::encode(live_head.head_hash)
            );
        }
        // The store writes case values behind the log; after a crash the
        // newest (at most PROJECTION_EVERY_COMMITS batches) are re-derived
        // from their entries first, as the hub does when it starts.
        mpp_ledger::ledger::Ledger::open(live.clone())
            .map_err(|e| anyhow::anyhow!("catching the live projection up with its log: {e}"))?;
        let stored = mpp_ledger::ledger::projection(&live).context("reading the live projection")?;
        report.differences = diff_projections(&stored, &rebuilt, DIFF_CASES_SHOWN_MAX)?;
    }
    Ok(Ok(report))
}

/// SHA-256 over the JSON of every case, then every standard, in key order:
/// equal projections have equal digests, on any machine.
pub fn projection_digest(state: &MemState) -> anyhow::Result<Hash32> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for c in state.cases.values() {
        ctx.update(&serde_json::to_vec(c).context("encoding a case")?);
        ctx.update(b"\n");
    }
    ctx.update(b"standards\n");
    for s in state.standards.values() {
        ctx.update(&serde_json::to_vec(s).context("encoding a standard")?);
        ctx.update(b"\n");
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The differences between a live and a rebuilt projection, one line each
/// (the first differing field of each differing case), at most `max` cases
/// and standards, then a count of the rest.
pub fn diff_projections(live: &MemState, rebuilt: &MemState, max: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut note = |line: String, out: &mut Vec<String>| {
        total += 1;
        if out.len() < max {
            out.push(line);
        }
    };
    let keys: std::collections::BTreeSet<_> = live.cases.keys().chain(rebuilt.cases.keys()).collect();
    for k in keys {
        match (live.cases.get(k), rebuilt.cases.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let (a, b) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
                let what = first_difference(&a, &b, String::new()).unwrap_or_else(|| "differs".to_owned());
                note(format!("case {k}: {what}"), &mut out);
            }
            (Some(_), None) => note(format!("case {k}: in the live projection only"), &mut out),
            (None, Some(_)) => note(format!("case {k}: in the rebuilt projection only"), &mut out),
            (None, None) => {}
        }
    }
    let keys: std::collections::BTreeSet<_> = live.standards.keys().chain(rebuilt.standards.keys()).collect();
    for k in keys {
        let (a, b) = (live.standards.get(k), rebuilt.standards.get(k));
        if a != b {
            let (a, b) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
            let what = first_difference(&a, &b, String::new()).unwrap_or_else(|| "differs".to_owned());
            note(format!("standard {}/{}: {what}", k.0, k.1), &mut out);
        }
    }
    if total > out.len() {
        out.push(format!("... and {} more differences", total - out.len()));
    }
    Ok(out)
}

/// The path and both values of the first place two JSON values differ.
fn first_difference(live: &Value, rebuilt: &Value, path: String) -> Option<String> {
    match (live, rebuilt) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            let common = a
                .iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]")));
            common.or_else(|| {
                (a.len() != b.len())
                    .then(|| format!("{path}: live has {} items, rebuilt {}", a.len(), b.len()))
            })
        }
        (a, b) if a == b => None,
        (a, b) => {
            let short = |v: &Value| {
                let s = v.to_string();
                if s.len() > 80 {
                    format!("{}…", s.chars().take(80).collect::<String>())
                } else {
                    s
                }
            };
            Some(format!("{}: live {}, rebuilt {}", path.trim_start_matches('.'), short(a), short(b)))
        }
    }
}

/// `mpp-hub audit rebuild`.
pub(crate) fn run(args: &RebuildArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    // The live store is opened only after the fold, which reads the log in
    // windows through handles of its own (see `Windowed`); but fail early on
    // a directory that holds no store.
    if let Some(dir) = &args.data_dir {
        drop(open_store(dir)?);
    }
    let open_live = args.data_dir.as_ref().map(|dir| move || open_store(dir));
    let live = open_live.as_ref().map(|f| f as &dyn Fn() -> anyhow::Result<SledStore>);
    let trust = args.registrar.trust()?;
    let result = match &args.export {
        Some(path) => {
            let scratch = Scratch::create(None)?;
            let mut progress = Progress::new("load export");
            let loaded = import_export(&mut ExportReader::open(path)?, scratch.store(), None, &mut progress);
            progress.finish();
            match loaded {
                Ok(_) => {}
                Err(ImportError::Invalid(f)) => {
                    say(out, &format!("the export does not verify: {f}"))?;
                    return Ok(EXIT_FAILED);
                }
                Err(ImportError::Store(e)) => {
                    return Err(e).context("loading the export into a scratch store")
                }
            }
            let (log, _dir) = scratch.into_windowed();
            rebuild_and_compare_with(&log, live, Progress::new("rebuild"), &trust)?
        }
        None => {
            let Some(dir) = &args.data_dir else { bail!("give --data-dir, --export or both") };
            let log = Windowed::new(dir);
            let open_live = || {
                log.close().context("closing the store")?;
                open_store(dir)
            };
            rebuild_and_compare_with(&log, Some(&open_live), Progress::new("rebuild"), &trust)?
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(what) => {
            say(out, &format!("FAIL: {what}"))?;
            return Ok(EXIT_FAILED);
        }
    };
    if args.json {
        let v = serde_json::json!({
            "entries": report.entries,
            "cases": report.cases,
            "standards": report.standards,
            "projection_sha256": hex::encode(report.digest),
            "compared_with_live": args.data_dir.is_some(),
            "identical": report.differences.is_empty(),
            "differences": report.differences,
        });
        say(out, &v.to_string())?;
    } else if report.differences.is_empty() {
        let vs = if args.data_dir.is_some() {
            "identical to the live projection"
        } else {
            "replayed without a difference"
        };
        say(
            out,
            &format!(
                "identical: {} entries replayed, {} cases and {} standards {vs}; projection sha-256 {}",
                report.entries,
                report.cases,
                report.standards,
                hex::encode(report.digest)
            ),
        )?;
    } else {
        say(
            out,
            &format!(
                "DIFFERENT: the rebuilt projection differs from the live one ({} entries)",
                report.entries
            ),
        )?;
        for d in &report.differences {
            say(out, &format!("  {d}"))?;
        }
    }
    Ok(if report.differences.is_empty() { 0 } else { EXIT_FAILED })
}
