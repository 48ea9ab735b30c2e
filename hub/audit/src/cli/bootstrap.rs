//! `mpp-hub admin bootstrap`: a new replica from a copy of another's store,
//! verified against the source hub's signed checkpoint, instead of a
//! re-ingest of the whole stream.
//!
//! The source is a replica's data directory: a stopped replica (one of
//! several, taken out of service for the copy only), or a copy of one (a
//! file-level backup, a volume snapshot). Bootstrap takes the source's sled
//! lock while it copies the store's files, so the directory of a running hub
//! is refused instead of copied half-written; the source may start again as
//! soon as the copy is done (it catches up from the stream), while bootstrap
//! verifies the copy. A backup file (`admin backup`, an export) is accepted
//! too, and replayed like `admin restore` (as slow as a re-ingest).
//!
//! What is verified before the new directory exists (docs/OPERATIONS.md
//! "A new replica"):
//!
//! 1. The log: every entry's hash over its fields, the chain of `prev_hash`,
//!    dense sequences, increasing stream sequences, the Merkle tree (stored
//!    frontier and every stored subtree hash recomputed), and every stored
//!    checkpoint's tree size, root, head hash, stream sequence and entry
//!    time against the log.
//! 2. The trust anchor: every stored checkpoint's signature under the source
//!    hub's public key (`--hub-public-key`), and the latest one signs the
//!    whole log: its tree size is the head's, so its root, head hash and
//!    stream sequence are the snapshot's. A log with entries past its latest
//!    signed checkpoint is refused (a stopped hub signs its head when it
//!    stops).
//! 3. The projections (cases with their timelines, standards, registry,
//!    event-id index), in one of two ways:
//!
//!    * **By the signed commitment** (the default): the source's writer keeps
//!      a multiset hash (LtHash16, `mpp_store::commitment`) of every stored
//!      projection pair, updated in the same atomic write as the pairs, and
//!      every checkpoint of format version 2 signs its digest and the
//!      sequence the stored projection describes. Bootstrap recomputes it
//!      from the copy's pairs in one pass (hashed on every core) and
//!      requires the latest signed checkpoint's; then the entries after
//!      that sequence (at most a few batches, when the source crashed with
//!      case values held back) are judged again on top of it, as a starting
//!      hub does. This proves that the copied projection is, byte for byte,
//!      the one the source's writer committed and its key signed: an
//!      alteration at rest, at the source or in transit (not through the
//!      writer) is refused with [`PROJECTION_MISMATCH`]. It does not prove
//!      that the writer computed that projection correctly from the log: a
//!      hub whose code derives a wrong case value commits and signs it.
//!    * **By replay** (`--replay`, and automatically when the latest
//!      checkpoint is of format version 1, signed before hubs kept the
//!      commitment): every entry is judged again from scratch (as `audit
//!      rebuild` does; each verdict, reason and detail must hash like the
//!      stored entry), and the resulting cases, standards, registry and
//!      event-id index must equal the copied ones, key for key. Stronger
//!      (it also catches a writer that committed other values than the
//!      rules give, though replaying with the same code reproduces the
//!      source's own projection bugs anyway) and as slow as most of a
//!      re-ingest.
//!
//! The new directory is built beside the target as `<data-dir>.bootstrap-partial`
//! and renamed to `<data-dir>` only once everything verified; on any
//! failure it is removed, so a refused snapshot leaves nothing a hub could
//! start on. The hub started on the new directory resumes the stream at the
//! snapshot's sequence + 1 (its ingest checkpoint) like any restarted hub.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use mpp_core::checkpoint::ProjectionCommitment;
use mpp_core::decide::MemState;
use mpp_core::ids::EventId;
use mpp_ledger::trust::Trust;
use mpp_store::{SledStore, Store};

use super::rebuild::{diff_projections, DIFF_CASES_SHOWN_MAX};
use super::window::Windowed;
use super::{open_store, PublicKey};

/// Suffix of the directory a bootstrap builds before renaming it to the
/// target.
pub const PARTIAL_SUFFIX: &str = ".bootstrap-partial";

/// A file in the partial directory that marks it as bootstrap's own, so a
/// later run may remove what an interrupted one left (and nothing else).
pub const PARTIAL_MARKER: &str = "BOOTSTRAP-IN-PROGRESS";

/// Entries the replay reads per opening of the copied store (see
/// [`Windowed`]): the audit tools' window. Re-opening a large store every
/// 50,000 entries, as the audit tools once did, made the replay of 10M
/// entries 3.6 times slower (226 s against 62 s with this window,
/// BENCHMARKS.md "A new replica"). A bootstrap holds the whole re-derived
/// projection anyway.
pub const REPLAY_WINDOW_ENTRIES: u64 = super::window::WINDOW_ENTRIES;

/// Differences of the event-id index named in a refusal.
pub const INDEX_DIFFERENCES_SHOWN_MAX: usize = 5;

/// The stable start of the refusal of a copy whose projections do not hash
/// to the commitment its latest signed checkpoint signs.
pub const PROJECTION_MISMATCH: &str = "PROJECTION_COMMITMENT_MISMATCH";

/// How the copied projections were verified (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Recomputed and compared with the signed projection commitment.
    Commitment,
    /// Re-derived by a replay of the whole log and compared key for key.
    Replay,
}

/// Flags of `mpp-hub admin bootstrap`.
#[derive(Debug, Clone, Args)]
pub struct BootstrapArgs {
    /// The source: a replica's data directory (stopped: its lock is held
    /// while its store is copied), a copy of one, or a backup file of
    /// `admin backup` (replayed, as slow as a re-ingest).
    #[arg(long, env = "MPP_BOOTSTRAP_FROM")]
    pub from: PathBuf,
    /// The new data directory: must not exist, or be empty.
    #[arg(long, env = "MPP_BOOTSTRAP_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The source hub's checkpoint public key (`<data-dir>/keys/checkpoint.pub`
    /// of the source, or `mpp-hub export-public-key`): every signed
    /// checkpoint of the snapshot must verify under it.
    #[arg(long, env = "MPP_BOOTSTRAP_HUB_PUBLIC_KEY")]
    pub hub_public_key: PathBuf,
    /// Directory holding the hub's checkpoint key files
    /// (`checkpoint.ed25519`, `checkpoint.pub`), copied into
    /// `<data-dir>/keys/` with mode 0600, so the new replica signs with the
    /// same key; without it the new replica makes a key of its own.
    #[arg(long, env = "MPP_BOOTSTRAP_KEYS_FROM")]
    pub keys_from: Option<PathBuf>,
    /// The registrar keys the hub runs with (the replay judges registry
    /// statements with them).
    #[command(flatten)]
    pub registrar: super::RegistrarKeyArgs,
    /// Verify the copied projections by replaying the whole log and
    /// comparing every key (the stronger and much slower check) instead of
    /// by the projection commitment its latest signed checkpoint signs;
    /// snapshots whose latest checkpoint carries no commitment are replayed
    /// anyway.
    #[arg(long, env = "MPP_BOOTSTRAP_REPLAY")]
    pub replay: bool,
}

/// What a bootstrap verified and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrapped {
    /// Entries of the log.
    pub entries: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Cases re-derived and found equal ([`VerifyMode::Replay`]; 0 otherwise).
    pub cases: usize,
    /// Accepted event ids in the index, re-derived and found equal
    /// ([`VerifyMode::Replay`]; 0 otherwise).
    pub event_ids: usize,
    /// Hash of the last entry.
    pub head_hash: [u8; 32],
    /// The ingest checkpoint: the new hub resumes the stream after it.
    pub last_stream_seq: u64,
    /// Time spent copying the source.
    pub copy: Duration,
    /// Time spent verifying the copy.
    pub verify: Duration,
    /// How the projections were verified.
    pub mode: VerifyMode,
    /// Of which: the log (chain, Merkle tree, checkpoints; with
    /// [`VerifyMode::Replay`] every entry judged again too).
    pub replay: Duration,
    /// The projections: recomputing the commitment (on another thread,
    /// during the log's verification: not part of `verify` then), or
    /// comparing the re-derived projections and index with the copied ones
    /// (after the replay).
    pub compare: Duration,
}

/// Runs `mpp-hub admin bootstrap`.
pub fn run(a: &BootstrapArgs) -> anyhow::Result<()> {
    let trust = std::sync::Arc::new(a.registrar.trust()?);
    let key = PublicKey::read(&a.hub_public_key)?;
    let r = bootstrap_with(&a.from, &a.data_dir, &key, a.keys_from.as_deref(), &trust, a.replay)?;
    let (what, split) = match r.mode {
        VerifyMode::Commitment => (
            "projections hash to the signed projection commitment".to_owned(),
            format!(
                "chain {:.2} s, commitment {:.2} s alongside",
                r.replay.as_secs_f64(),
                r.compare.as_secs_f64()
            ),
        ),
        VerifyMode::Replay => (
            format!("{} cases and {} event ids re-derived and equal", r.cases, r.event_ids),
            format!("replay {:.2} s, compare {:.2} s", r.replay.as_secs_f64(), r.compare.as_secs_f64()),
        ),
    };
    println!(
        "bootstrapped {} from {}: {} entries, {} signed checkpoints, {what}; \
         head {} at stream seq {} (a hub started on it resumes the stream at {}); copy {:.2} s, verify {:.2} s ({split})",
        a.data_dir.display(),
        a.from.display(),
        r.entries,
        r.checkpoints,
        hex::encode(r.head_hash),
        r.last_stream_seq,
        r.last_stream_seq + 1,
        r.copy.as_secs_f64(),
        r.verify.as_secs_f64(),
    );
    Ok(())
}

/// The partial directory of a target.
pub fn partial_dir(target: &Path) -> PathBuf {
    let mut p = target.as_os_str().to_owned();
    p.push(PARTIAL_SUFFIX);
    PathBuf::from(p)
}

/// Bootstraps `target` from `from` (see the module docs), verifying the
/// projections by the signed commitment where the snapshot has one: builds
/// and verifies the store in [`partial_dir`], then renames it to `target`;
/// on failure removes it and returns why.
pub fn bootstrap(
    from: &Path,
    target: &Path,
    key: &PublicKey,
    keys_from: Option<&Path>,
    trust: &Arc<Trust>,
) -> anyhow::Result<Bootstrapped> {
    bootstrap_with(from, target, key, keys_from, trust, false)
}

/// [`bootstrap`], verifying the projections by a replay of the whole log
/// if `replay`.
pub fn bootstrap_with(
    from: &Path,
    target: &Path,
    key: &PublicKey,
    keys_from: Option<&Path>,
    trust: &Arc<Trust>,
    replay: bool,
) -> anyhow::Result<Bootstrapped> {
    if target.exists() {
        let empty = std::fs::read_dir(target)
            .with_context(|| format!("reading {}", target.display()))?
            .next()
            .is_none();
        ensure!(empty, "{} exists and is not empty: bootstrap only into a new directory", target.display());
    }
    let partial = partial_dir(target);
    if partial.exists() {
        ensure!(
            partial.join(PARTIAL_MARKER).is_file(),
            "{} exists and is not a bootstrap's own: move it away",
            partial.display()
        );
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {} left by an interrupted bootstrap", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    std::fs::write(partial.join(PARTIAL_MARKER), b"an unfinished mpp-hub admin bootstrap: not a hub store\n")
        .with_context(|| format!("writing into {}", partial.display()))?;
    match build(from, &partial, key, keys_from, trust, replay) {
        Ok(r) => {
            std::fs::remove_file(partial.join(PARTIAL_MARKER))?;
            if target.exists() {
                std::fs::remove_dir(target)
                    .with_context(|| format!("replacing the empty {}", target.display()))?;
            }
            std::fs::rename(&partial, target)
                .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e.context(format!(
                "bootstrap refused: {} was not created (the partial copy was removed)",
                target.display()
            )))
        }
    }
}

fn build(
    from: &Path,
    dir: &Path,
    key: &PublicKey,
    keys_from: Option<&Path>,
    trust: &Arc<Trust>,
    replay: bool,
) -> anyhow::Result<Bootstrapped> {
    let started = Instant::now();
    if from.is_file() {
        let restored = super::admin::restore_with(from, dir, None, Arc::clone(trust))?;
        let copy = started.elapsed();
        let store = open_store(dir)?;
        let (head, _) = store.head_and_frontier()?;
        let (checkpoints, _) = check_signatures(&store, key, head.last_seq)?;
        drop(store);
        let mut r = verify_copy(dir, trust)?;
        ensure!(
            r.entries == restored.entries,
            "the restored log holds {} entries, not {}",
            r.entries,
            restored.entries
        );
        r.checkpoints = checkpoints;
        r.copy = copy;
        r.verify = started.elapsed() - copy;
        return finish(r, dir, keys_from);
    }
    copy_store(from, dir)?;
    let copy = started.elapsed();
    let store = open_store(dir)?;
    let (head, _) = store.head_and_frontier()?;
    let (checkpoints, signed) = check_signatures(&store, key, head.last_seq)?;
    let mut r = match signed.checkpoint.projection {
        Some(signed) if !replay => verify_by_commitment(store, dir, &signed, trust)?,
        _ => {
            drop(store);
            verify_copy(dir, trust)?
        }
    };
    r.checkpoints = checkpoints;
    r.copy = copy;
    r.verify = started.elapsed() - copy;
    finish(r, dir, keys_from)
}

fn finish(r: Bootstrapped, dir: &Path, keys_from: Option<&Path>) -> anyhow::Result<Bootstrapped> {
    if let Some(keys) = keys_from {
        super::admin::copy_keys(keys, &dir.join(mpp_ledger::signer::KEYS_DIR))?;
    }
    Ok(r)
}

/// The names of sled's files in a data directory: `conf`, `db`, `blobs/`,
/// `snap.*` (what `mpp_ledger::recover` moves aside too). Nothing else of
/// the source is copied: not its keys, access log or cosignatures.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Copies the sled files of `from` into `to` while holding the source's
/// lock (an open handle), so a running hub's directory is refused.
fn copy_store(from: &Path, to: &Path) -> anyhow::Result<()> {
    let source = open_store(from).context(
        "the source (a running hub's directory cannot be copied: stop it, or copy a replica that is stopped)",
    )?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if !is_sled_file(&name.to_string_lossy()) {
            continue;
        }
        copy_tree(&entry.path(), &to.join(&name))?;
    }
    drop(source);
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(from)?.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        std::fs::File::open(to)?.sync_all()?;
    }
    Ok(())
}

/// Checks every stored checkpoint's signature under `key`, and that the
/// latest signs the whole log (`last_seq` entries). Returns how many, and
/// the latest.
fn check_signatures(
    store: &SledStore,
    key: &PublicKey,
    last_seq: u64,
) -> anyhow::Result<(u64, mpp_core::checkpoint::SignedCheckpoint)> {
    let mut n = 0u64;
    let mut latest = None;
    for cp in store.checkpoints(0, u64::MAX) {
        let cp = cp.context("reading a signed checkpoint")?;
        key.verify_checkpoint(&cp).map_err(|e| {
            anyhow::anyhow!(
                "the signed checkpoint of tree size {} does not verify under the hub's public key {}: {e}",
                cp.checkpoint.tree_size,
                key.key_id()
            )
        })?;
        n += 1;
        latest = Some(cp);
    }
    match latest {
        None => bail!("the snapshot holds no signed checkpoint: nothing to verify it against"),
        Some(cp) if cp.checkpoint.tree_size != last_seq => bail!(
            "the latest signed checkpoint covers {} entries, the log holds {last_seq}: entries past the signed \
             checkpoint are not verified (a hub signs its head when it stops: copy a stopped replica)",
            cp.checkpoint.tree_size
        ),
        Some(cp) => Ok((n, cp)),
    }
}

/// Verifies the copy in `dir` (whose open handle is `store`) by the signed
/// projection commitment (step 3, first way, of the module docs): the
/// commitment recomputed from the copied pairs must be `signed`, then the
/// log is verified (chain, Merkle tree, checkpoints), then the entries
/// after the signed projection are judged again on top of it and written.
fn verify_by_commitment(
    store: SledStore,
    dir: &Path,
    signed: &ProjectionCommitment,
    trust: &Arc<Trust>,
) -> anyhow::Result<Bootstrapped> {
    let started = Instant::now();
    drop(store);
    // The log's verification and the commitment's recomputation run on
    // two threads over one open store.
    let mut progress = super::Progress::quiet("bootstrap");
    let (report, (got, compare)) = super::verify::verify_dir_reopening_alongside(
        dir,
        None,
        REPLAY_WINDOW_ENTRIES,
        &mut progress,
        |store| {
            let t = Instant::now();
            (store.recompute_projection_commitment(), t.elapsed())
        },
    )?;
    let got = got.context("reading the snapshot's projection")?;
    ensure!(
        got == *signed,
        "{PROJECTION_MISMATCH}: the snapshot's projection (cases, timelines, standards, registry, event-id index) \
         hashes to {} as of entry {}, its latest signed checkpoint signs {} as of entry {}: it was altered \
         after its writer committed it (use --replay to find the differences)",
        hex::encode(got.digest),
        got.projected_through,
        hex::encode(signed.digest),
        signed.projected_through
    );
    let report = report
        .map_err(|f| anyhow::anyhow!("the snapshot's log does not verify: entry {}: {}", f.seq, f.what))?;
    let replay = started.elapsed();
    let store = open_store(dir)?;
    let head = store.head()?;
    ensure!(
        head.last_seq == report.entries && head.head_hash == report.head_hash,
        "the store's head {head:?} moved while it was verified"
    );
    // A source that stopped with case values held back (a crash): the
    // entries after the signed projection are judged again on top of it,
    // as a starting hub does, and written.
    let ledger = mpp_ledger::ledger::Ledger::open_with(store.clone(), Arc::clone(trust))
        .map_err(|e| anyhow::anyhow!("catching the projection up with the log: {e}"))?;
    ledger.flush_projection().map_err(|e| anyhow::anyhow!("writing the projection: {e}"))?;
    Ok(Bootstrapped {
        entries: head.last_seq,
        checkpoints: 0,
        cases: 0,
        event_ids: 0,
        head_hash: head.head_hash,
        last_stream_seq: head.last_stream_seq,
        copy: Duration::ZERO,
        verify: Duration::ZERO,
        mode: VerifyMode::Commitment,
        replay,
        compare,
    })
}

/// Re-derives everything from the copied log and compares it with the
/// copied projections and index (steps 1 and 3 of the module docs); writes
/// the held-back case values of a copy that had any, so the directory is
/// complete.
pub(crate) fn verify_copy(dir: &Path, trust: &Arc<Trust>) -> anyhow::Result<Bootstrapped> {
    let started = Instant::now();
    let log = Windowed::with_window(dir, REPLAY_WINDOW_ENTRIES);
    let rebuilt = mpp_ledger::ledger::rebuild_with_ids(&log, trust)
        .map_err(|e| anyhow::anyhow!("the snapshot's log does not verify: {e}"))?;
    log.close().context("closing the store")?;
    drop(log);
    let replay = started.elapsed();
    let store = open_store(dir)?;
    let head = store.head()?;
    ensure!(head == rebuilt.head, "the store's head {head:?} moved while it was verified");
    // A copy of a store whose last case values were held back: the newest
    // (at most PROJECTION_EVERY_COMMITS batches) are derived from their
    // entries first, as a starting hub does.
    let ledger = mpp_ledger::ledger::Ledger::open_with(store.clone(), Arc::clone(trust))
        .map_err(|e| anyhow::anyhow!("catching the projection up with the log: {e}"))?;
    let cases = compare_projection(&store, &rebuilt.state)?;
    compare_index(&store, &rebuilt.event_ids)?;
    ledger.flush_projection().map_err(|e| anyhow::anyhow!("writing the projection: {e}"))?;
    Ok(Bootstrapped {
        entries: head.last_seq,
        checkpoints: 0,
        cases,
        event_ids: rebuilt.event_ids.len(),
        head_hash: head.head_hash,
        last_stream_seq: head.last_stream_seq,
        copy: Duration::ZERO,
        verify: Duration::ZERO,
        mode: VerifyMode::Replay,
        replay,
        compare: started.elapsed() - replay,
    })
}

/// The copied projection (cases with their timelines, standards in force,
/// registry) is the re-derived one. Streams the copied cases one at a time
/// against the re-derived map (no second copy of the projection in
/// memory); names the first differences, field by field. Returns the
/// number of cases.
fn compare_projection(store: &SledStore, rebuilt: &MemState) -> anyhow::Result<usize> {
    let mut differences = Vec::new();
    let note = |differences: &mut Vec<String>, live: MemState, rebuilt: MemState| -> anyhow::Result<()> {
        differences.extend(diff_projections(&live, &rebuilt, DIFF_CASES_SHOWN_MAX)?);
        Ok(())
    };
    let mut cases = 0usize;
    for case in store.cases() {
        let case = case.context("reading the snapshot's projection")?;
        cases += 1;
        match rebuilt.cases.get(&case.tracking_number) {
            Some(r) if *r == case => {}
            other => {
                let mut live = MemState::default();
                let mut again = MemState::default();
                if let Some(r) = other {
                    again.cases.insert(r.tracking_number, r.clone());
                }
                live.cases.insert(case.tracking_number, case);
                note(&mut differences, live, again)?;
            }
        }
        if differences.len() >= DIFF_CASES_SHOWN_MAX {
            break;
        }
    }
    if differences.is_empty() && cases != rebuilt.cases.len() {
        for (tn, r) in &rebuilt.cases {
            if store.case(tn).context("reading the snapshot's projection")?.is_none() {
                let mut again = MemState::default();
                again.cases.insert(*tn, r.clone());
                note(&mut differences, MemState::default(), again)?;
                if differences.len() >= DIFF_CASES_SHOWN_MAX {
                    break;
                }
            }
        }
    }
    let mut live = MemState::default();
    for standard in store.standards().context("reading the snapshot's standards")? {
        live.standards.insert((standard.agency.clone(), standard.service.clone()), standard);
    }
    let again = MemState { standards: rebuilt.standards.clone(), ..Default::default() };
    note(&mut differences, live, again)?;
    ensure!(
        differences.is_empty(),
        "the snapshot's projection (\"live\") differs from the one its log gives (\"rebuilt\"):\n  {}",
        differences.join("\n  ")
    );
    ensure!(
        store.registry().context("reading the snapshot's registry")? == rebuilt.registry,
        "the snapshot's participant registry differs from the one its log gives"
    );
    Ok(cases)
}

/// The copied event-id index holds exactly the ids the replay accepted,
/// each with its accepting entry's sequence.
fn compare_index(store: &SledStore, rebuilt: &HashMap<EventId, u64>) -> anyhow::Result<()> {
    let mut differences = Vec::new();
    let mut seen = 0usize;
    for record in store.event_index() {
        let (id, seq) = record.context("reading the event-id index")?;
        match rebuilt.get(&id) {
            Some(s) if *s == seq => seen += 1,
            Some(s) => differences.push(format!("event {id}: index says entry {seq}, the log {s}")),
            None => differences.push(format!("event {id}: in the index (entry {seq}), accepted by no entry")),
        }
        if differences.len() >= INDEX_DIFFERENCES_SHOWN_MAX {
            break;
        }
    }
    if differences.is_empty() && seen != rebuilt.len() {
        differences.push(format!(
            "the index holds {seen} event ids, the log accepted {}: ids are missing",
            rebuilt.len()
        ));
    }
    ensure!(
        differences.is_empty(),
        "the snapshot's event-id index differs from the one its log gives:\n  {}",
        differences.join("\n  ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::fixture::{fill, FixtureKey, Generator};
    use crate::cli::Progress;

    /// A stopped source replica: a fixture log with signed checkpoints
    /// every 100 entries and at its head.
    fn source(dir: &Path) -> FixtureKey {
        let key = FixtureKey::new(11, "bootstrap-test").unwrap();
        let store = SledStore::open(dir).unwrap();
        fill(&store, &mut Generator::new(11), 700, Some((&key, 100)), &mut Progress::quiet("t")).unwrap();
        key
    }

    /// The store's key of a case (`"C"` and its 15 digits).
    fn layout_case_key(case: &mpp_core::Case) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[0] = b'C';
        k[1..].copy_from_slice(&case.tracking_number.digits());
        k
    }

    fn trust() -> Arc<Trust> {
        Arc::new(Trust::default())
    }

    /// Changes the source's sled keys directly, as someone with the files
    /// could.
    fn tamper(dir: &Path, f: impl FnOnce(&sled::Db)) {
        // Waits for the lock of a handle just dropped (sled lets go of it
        // from a thread of its own).
        let db = mpp_edge::sled_open::open_waiting_for_lock(&sled::Config::new().path(dir)).unwrap();
        f(&db);
        db.flush().unwrap();
    }

    fn first_key_with(db: &sled::Db, prefix: u8, nth: usize) -> sled::IVec {
        db.scan_prefix([prefix]).nth(nth).unwrap().unwrap().0
    }

    fn refused(src: &Path, key: &PublicKey) -> String {
        let err = refused_quietly(src, key);
        eprintln!("refused: {err}");
        err
    }

    /// A fresh source, tampered with by `f`, refused: the refusal.
    fn refused_after_tamper(f: impl FnOnce(&sled::Db)) -> String {
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        tamper(src.path(), f);
        refused(src.path(), &key.public())
    }

    fn refused_quietly(src: &Path, key: &PublicKey) -> String {
        refused_in_mode(src, key, false)
    }

    fn refused_in_mode(src: &Path, key: &PublicKey, replay: bool) -> String {
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("new");
        let err = bootstrap_with(src, &target, key, None, &trust(), replay).unwrap_err();
        assert!(!target.exists(), "nothing at the target after a refusal");
        assert!(!partial_dir(&target).exists(), "the partial copy is removed");
        format!("{err:#}")
    }

    /// The refusal by replay of the same source (left as it was by the
    /// first refusal).
    fn refused_replaying(src: &Path, key: &PublicKey) -> String {
        let err = refused_in_mode(src, key, true);
        eprintln!("refused (replay): {err}");
        err
    }

    /// A fresh source, tampered with by `f`: the refusals by commitment and
    /// by replay.
    fn refused_both_after_tamper(f: impl FnOnce(&sled::Db)) -> (String, String) {
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        tamper(src.path(), f);
        (refused(src.path(), &key.public()), refused_replaying(src.path(), &key.public()))
    }

    fn is_mismatch(err: &str) -> bool {
        err.contains(PROJECTION_MISMATCH)
    }

    #[test]
    fn a_bootstrapped_store_equals_its_source_and_keeps_the_ingest_checkpoint() {
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("new");
        let r = bootstrap(src.path(), &target, &key.public(), None, &trust()).unwrap();
        assert_eq!(r.mode, VerifyMode::Commitment);
        let (a, b) = (SledStore::open(src.path()).unwrap(), SledStore::open(&target).unwrap());
        let head = a.head().unwrap();
        assert_eq!(b.head().unwrap(), head);
        assert_eq!(
            (r.entries, r.last_stream_seq, r.head_hash),
            (head.last_seq, head.last_stream_seq, head.head_hash)
        );
        assert_eq!(r.checkpoints, 7, "every 100 entries, the last at the head");
        assert_eq!((r.cases, r.event_ids), (0, 0), "not counted without a replay: {r:?}");
        assert_eq!(mpp_ledger::ledger::projection(&a).unwrap(), mpp_ledger::ledger::projection(&b).unwrap());
        assert_eq!(b.projected_through().unwrap(), head.last_seq);
        assert!(!target.join(PARTIAL_MARKER).exists());
        // The target now holds a store: a second bootstrap is refused
        // before anything is copied, and leaves it as it was.
        drop(b);
        let err = bootstrap(src.path(), &target, &key.public(), None, &trust()).unwrap_err();
        assert!(format!("{err:#}").contains("not empty"), "{err:#}");
        assert_eq!(SledStore::open(&target).unwrap().head().unwrap(), head);
        // The commitment the new replica keeps is the one its pairs give,
        // and the source's.
        let b = SledStore::open(&target).unwrap();
        let kept = b.projection_commitment().unwrap().unwrap();
        assert_eq!(kept, b.recompute_projection_commitment().unwrap());
        assert_eq!(Some(kept), a.latest_checkpoint().unwrap().unwrap().checkpoint.projection);
        // By replay, the same.
        drop((a, b));
        let target = out.path().join("replayed");
        let r = bootstrap_with(src.path(), &target, &key.public(), None, &trust(), true).unwrap();
        assert_eq!(r.mode, VerifyMode::Replay);
        assert!(r.cases > 10 && r.event_ids > 100, "{r:?}");
        assert_eq!(SledStore::open(&target).unwrap().head().unwrap(), head);
    }

    /// A store of before the commitment: checkpoints of format version 1,
    /// no commitment key. Bootstrap replays it (the commitment cannot vouch
    /// for it), and the new replica keeps a commitment of its own.
    #[test]
    fn a_snapshot_signed_without_a_commitment_is_replayed() {
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        tamper(src.path(), |db| {
            db.remove(b"D").unwrap();
            for kv in db.scan_prefix(b"K") {
                let (k, v) = kv.unwrap();
                let mut cp = mpp_core::checkpoint::SignedCheckpoint::decode(&v).unwrap();
                assert!(cp.checkpoint.projection.is_some(), "hubs sign version 2");
                cp.checkpoint.projection = None;
                db.insert(k, key.sign(cp.checkpoint).encode()).unwrap();
            }
        });
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("new");
        let r = bootstrap(src.path(), &target, &key.public(), None, &trust()).unwrap();
        assert_eq!(r.mode, VerifyMode::Replay);
        assert!(r.cases > 10, "{r:?}");
        let b = SledStore::open(&target).unwrap();
        assert_eq!(b.projection_commitment().unwrap().unwrap(), b.recompute_projection_commitment().unwrap());
    }

    /// One case value altered at rest (written into sled directly, not
    /// through the writer), still decoding: refused by the commitment with
    /// its stable reason, and by replay with the differences.
    #[test]
    fn a_case_value_altered_at_rest_is_refused_by_the_commitment() {
        let (by_commitment, by_replay) = refused_both_after_tamper(|db| {
            let k = first_key_with(db, b'C', 2);
            let mut v = db.get(&k).unwrap().unwrap().to_vec();
            // The last byte of a case value is inside its last bincode
            // field (a timestamp or count): a change keeps it decodable
            // more often than not, and the commitment refuses either way.
            *v.last_mut().unwrap() ^= 0x01;
            db.insert(&k, v).unwrap();
        });
        assert!(is_mismatch(&by_commitment), "{by_commitment}");
        assert!(by_commitment.contains("latest signed checkpoint signs"), "{by_commitment}");
        assert!(
            by_replay.contains("differs from the one its log gives") || by_replay.contains("corrupt store"),
            "{by_replay}"
        );
    }

    /// A source that crashed with case values held back: its latest
    /// checkpoint signs a projection behind the log, which the copy holds;
    /// bootstrap accepts it by the commitment and judges the entries after
    /// it again, so the new replica's projection is the log's.
    #[test]
    fn a_source_stopped_with_case_values_held_back_bootstraps_by_the_commitment() {
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        {
            let store = SledStore::open(src.path()).unwrap();
            let mut ledger = mpp_ledger::ledger::Ledger::open(store.clone()).unwrap();
            let mut generator = Generator::new(11);
            for _ in 0..700 {
                generator.next();
            }
            let batch: Vec<_> = generator.by_ref().take(50).collect();
            ledger.commit_batch(&batch).unwrap();
            let head = store.head().unwrap().last_seq;
            assert!(store.projected_through().unwrap() < head, "the batch's cases are held back");
            let signed = key.sign_head(&store).unwrap();
            let p = signed.checkpoint.projection.unwrap();
            assert_eq!(p.projected_through, 700);
            // Dropped without writing the held-back values: a crash.
        }
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("new");
        let r = bootstrap(src.path(), &target, &key.public(), None, &trust()).unwrap();
        assert_eq!((r.mode, r.entries), (VerifyMode::Commitment, 750));
        let b = SledStore::open(&target).unwrap();
        assert_eq!(b.projected_through().unwrap(), 750);
        let a = SledStore::open(src.path()).unwrap();
        let rebuilt = mpp_ledger::ledger::rebuild_with_ids(&a, &trust()).unwrap();
        assert_eq!(mpp_ledger::ledger::projection(&b).unwrap(), rebuilt.state);
    }

    /// The log verified in windows (re-opening the store between them once
    /// the other thread is done) while the commitment is recomputed on the
    /// shared handle: the same report as alone, and the signed commitment.
    #[test]
    fn the_log_verifies_in_windows_alongside_the_commitment() {
        let src = tempfile::tempdir().unwrap();
        source(src.path());
        let mut p = Progress::quiet("t");
        let (report, got) =
            crate::cli::verify::verify_dir_reopening_alongside(src.path(), None, 50, &mut p, |s| {
                s.recompute_projection_commitment().unwrap()
            })
            .unwrap();
        let report = report.unwrap();
        assert_eq!((report.entries, report.checkpoints), (700, 7));
        let alone = crate::cli::verify::verify_dir_reopening(src.path(), None, 50, &mut p).unwrap().unwrap();
        assert_eq!((alone.head_hash, alone.root_hash), (report.head_hash, report.root_hash));
        let store = SledStore::open(src.path()).unwrap();
        assert_eq!(Some(got), store.latest_checkpoint().unwrap().unwrap().checkpoint.projection);
    }

    #[test]
    fn an_altered_entry_is_refused_and_nothing_is_left() {
        let err = refused_after_tamper(|db| {
            let k = first_key_with(db, b'L', 1);
            let mut v = db.get(&k).unwrap().unwrap().to_vec();
            // The last byte of an LZ4 block is always a literal: one byte
            // of the block's last entry changes.
            *v.last_mut().unwrap() ^= 0x01;
            db.insert(&k, v).unwrap();
        });
        assert!(err.contains("log does not verify"), "{err}");
    }

    #[test]
    fn an_altered_case_is_refused() {
        // One case's value replaced by another's.
        let (commitment, err) = refused_both_after_tamper(|db| {
            let (a, b) = (first_key_with(db, b'C', 3), first_key_with(db, b'C', 4));
            let v = db.get(&b).unwrap().unwrap();
            db.insert(&a, v).unwrap();
        });
        assert!(is_mismatch(&commitment), "{commitment}");
        assert!(err.contains("differs from the one its log gives") || err.contains("corrupt store"), "{err}");
        // One field of one case changed, the value still decoding: the
        // first single-bit change from its end that decodes to another case.
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        let (k, original) = {
            let store = SledStore::open(src.path()).unwrap();
            let case = store.cases().nth(6).unwrap().unwrap();
            (layout_case_key(&case), case)
        };
        let mut changed = false;
        for back in 1..64 {
            let mut tried = false;
            tamper(src.path(), |db| {
                let mut v = db.get(k).unwrap().unwrap().to_vec();
                if back <= v.len() {
                    let i = v.len() - back;
                    v[i] ^= 0x01;
                    db.insert(k, v).unwrap();
                    tried = true;
                }
            });
            let store = SledStore::open(src.path()).unwrap();
            match store.case(&original.tracking_number) {
                Ok(Some(c)) if c != original => {
                    changed = true;
                    break;
                }
                _ => {}
            }
            drop(store);
            if tried {
                // Undo, try the next byte.
                tamper(src.path(), |db| {
                    let mut v = db.get(k).unwrap().unwrap().to_vec();
                    let i = v.len() - back;
                    v[i] ^= 0x01;
                    db.insert(k, v).unwrap();
                });
            }
        }
        assert!(changed, "no single-bit change of the case decodes");
        let commitment = refused(src.path(), &key.public());
        assert!(is_mismatch(&commitment), "{commitment}");
        let err = refused_replaying(src.path(), &key.public());
        assert!(
            err.contains("differs from the one its log gives")
                && err.contains(&original.tracking_number.to_string()),
            "{err}"
        );
        // One case removed.
        let (commitment, err) = refused_both_after_tamper(|db| {
            db.remove(first_key_with(db, b'C', 5)).unwrap();
        });
        assert!(is_mismatch(&commitment), "{commitment}");
        assert!(
            err.contains("differs from the one its log gives") && err.contains("rebuilt projection only"),
            "{err}"
        );
    }

    #[test]
    fn an_altered_event_index_is_refused() {
        let (commitment, err) = refused_both_after_tamper(|db| {
            db.remove(first_key_with(db, b'E', 0)).unwrap();
        });
        assert!(is_mismatch(&commitment), "{commitment}");
        assert!(err.contains("event-id index differs"), "{err}");
    }

    #[test]
    fn another_key_or_an_unsigned_tail_is_refused() {
        let src = tempfile::tempdir().unwrap();
        source(src.path());
        let other = FixtureKey::new(12, "bootstrap-test").unwrap();
        let err = refused(src.path(), &other.public());
        assert!(err.contains("does not verify under the hub's public key"), "{err}");
        // Entries committed after the latest signed checkpoint.
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        let store = SledStore::open(src.path()).unwrap();
        let mut generator = Generator::new(11);
        for _ in 0..700 {
            generator.next();
        }
        fill(&store, &mut generator, 10, None, &mut Progress::quiet("t")).unwrap();
        drop(store);
        let err = refused(src.path(), &key.public());
        assert!(err.contains("entries past the signed checkpoint"), "{err}");
    }

    #[test]
    fn a_running_hubs_directory_is_refused() {
        let src = tempfile::tempdir().unwrap();
        let key = source(src.path());
        let running = SledStore::open(src.path()).unwrap();
        let err = refused(src.path(), &key.public());
        assert!(err.contains("sled locks the directory"), "{err}");
        drop(running);
    }
}
