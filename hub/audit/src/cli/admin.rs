//! `mpp-hub admin …`: backup and restore of a hub's log.
//!
//! The hub's store is derived from its log, and the log is a deterministic
//! function of the stream (docs/DESIGN.md): a backup is therefore an **export**
//! of the log (the JSON-lines format of `mpp-hub audit export`, docs/AUDIT.md)
//! and a restore **replays** it through the same ledger that ingest uses,
//! which rebuilds the log byte for byte together with every projection,
//! index and Merkle subtree. A restore that does not reproduce every entry's
//! hash stops at the first that differs.
//!
//! | subcommand | does |
//! |---|---|
//! | `backup --hub-grpc URL --auditor-token-file F --out FILE` | a running hub: its log up to its latest signed checkpoint, read over the audit gRPC service (a consistent snapshot: the log is append-only and the checkpoint fixes the point) |
//! | `backup --data-dir D --out FILE` | a stopped hub's data directory (or a copy): its log up to its head, with every signed checkpoint |
//! | `restore --from FILE --data-dir NEW [--keys-from DIR]` | a fresh data directory from a backup; refuses a directory that holds a store |
//! | `bootstrap --from DIR --data-dir NEW --hub-public-key F [--keys-from DIR]` | a new replica from a stopped replica's store (or a copy), verified, without a replay ([`super::bootstrap`]) |
//!
//! What a backup does not hold: the checkpoint signing key (`<data-dir>/keys/`,
//! a secret: keep it in the province's secret store, and give it back with
//! `--keys-from`, or the restored hub makes a new key) and the citizens'
//! access log (`<data-dir>/access`, outside the hash chain). Entries the hub
//! committed after the backup's point are not lost: the stream keeps them,
//! and the restored hub re-reads the stream from its checkpoint + 1.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use mpp_store::{SledStore, Store};

use super::export::{export_store, ExportReader, Line, EXPORT_FORMAT};
use super::remote::Remote;
use super::{open_store, Progress};
use mpp_ledger::ledger::{Ledger, RawMessage};

/// Entries replayed per ledger batch during a restore.
pub const RESTORE_BATCH_ENTRIES_MAX: usize = 1_000;

/// Largest token file read, in bytes.
pub const TOKEN_FILE_BYTES_MAX: u64 = 4096;

/// Largest key file copied by `--keys-from`, in bytes.
pub const KEY_FILE_BYTES_MAX: u64 = 4096;

/// `mpp-hub admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a backup (an export of the log) of a running hub (--hub-grpc)
    /// or of a stopped hub's data directory (--data-dir).
    Backup(BackupArgs),
    /// Rebuild a fresh data directory from a backup by replaying it through
    /// the ledger; every entry must hash as in the backup.
    Restore(RestoreArgs),
    /// A new replica's data directory from a stopped replica's (or a copy
    /// of it), verified against the source hub's signed checkpoint and
    /// re-derived projections, without re-reading the stream
    /// (docs/OPERATIONS.md "A new replica").
    Bootstrap(super::bootstrap::BootstrapArgs),
}

/// Flags of `mpp-hub admin backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// A stopped hub's data directory, or a copy of it (sled locks the
    /// directory of a running hub: use --hub-grpc for that).
    #[arg(
        long,
        env = "MPP_BACKUP_DATA_DIR",
        conflicts_with = "hub_grpc",
        required_unless_present = "hub_grpc"
    )]
    pub data_dir: Option<PathBuf>,
    /// A running hub's gRPC endpoint, e.g. http://127.0.0.1:50051: the
    /// backup reads its audit service up to the latest signed checkpoint.
    #[arg(long, env = "MPP_HUB_GRPC")]
    pub hub_grpc: Option<String>,
    /// File holding an auditor token of that hub (--auditor-tokens-file of
    /// `mpp-hub serve` lists its SHA-256).
    #[arg(long, env = "MPP_AUDITOR_TOKEN_FILE", requires = "hub_grpc")]
    pub auditor_token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the hub's TLS certificate; with it
    /// --hub-grpc must be an https:// URL (see docs/TLS.md).
    #[arg(long, env = "MPP_TLS_CA_FILE", requires = "hub_grpc")]
    pub tls_ca_file: Option<PathBuf>,
    /// The backup file to create (never overwritten).
    #[arg(long, env = "MPP_BACKUP_OUT")]
    pub out: PathBuf,
}

/// Flags of `mpp-hub admin restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup file (from `admin backup` or `audit export`).
    #[arg(long, env = "MPP_RESTORE_FROM")]
    pub from: PathBuf,
    /// The new data directory: must not hold a store yet.
    #[arg(long, env = "MPP_RESTORE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Directory holding the hub's checkpoint key files
    /// (`checkpoint.ed25519`, `checkpoint.pub`), copied into
    /// `<data-dir>/keys/` with mode 0600, so the restored hub keeps signing
    /// with the same key.
    #[arg(long, env = "MPP_RESTORE_KEYS_FROM")]
    pub keys_from: Option<PathBuf>,
    /// The registrar keys the hub ran with (the replay judges registry
    /// statements with them).
    #[command(flatten)]
    pub registrar: super::RegistrarKeyArgs,
}

/// Runs an admin subcommand.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Backup(a) => backup(&a).await,
        AdminCommand::Restore(a) => {
            let trust = std::sync::Arc::new(a.registrar.trust()?);
            let r = restore_with(&a.from, &a.data_dir, a.keys_from.as_deref(), trust)?;
            println!(
                "restored {} entries and {} checkpoints into {}: head {} (stream seq {})",
                r.entries,
                r.checkpoints,
                a.data_dir.display(),
                hex::encode(r.head_hash),
                r.last_stream_seq
            );
            Ok(())
        }
        AdminCommand::Bootstrap(a) => super::bootstrap::run(&a),
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut s))
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let t = s.trim();
    ensure!(!t.is_empty(), "the token file {} is empty", path.display());
    Ok(t.to_owned())
}

/// Writes the backup to `<out>.partial`, renamed to `out` only once it is
/// complete and synced, so a failed run never leaves a file that looks like
/// a backup.
async fn backup(a: &BackupArgs) -> anyhow::Result<()> {
    ensure!(!a.out.exists(), "{} exists (an existing file is never overwritten)", a.out.display());
    let mut partial = a.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    match backup_to(a, &partial).await {
        Ok(()) => std::fs::rename(&partial, &a.out)
            .with_context(|| format!("renaming {} to {}", partial.display(), a.out.display())),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

async fn backup_to(a: &BackupArgs, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut progress = Progress::new("backup");
    let (entries, head) = match (&a.hub_grpc, &a.data_dir) {
        (Some(url), _) => {
            let Some(token_file) = &a.auditor_token_file else {
                bail!("--auditor-token-file is required with --hub-grpc")
            };
            let mut remote =
                Remote::connect_with(url, &read_token(token_file)?, a.tls_ca_file.as_deref()).await?;
            let n = remote.export(&mut out, true, &mut progress).await?;
            (n, None)
        }
        (None, Some(dir)) => {
            let store = open_store(dir)?;
            let s = export_store(&store, &mut out, true, &mut progress)?;
            (s.entries, Some(s.head_hash))
        }
        (None, None) => bail!("give --hub-grpc (a running hub) or --data-dir (a stopped one)"),
    };
    out.into_inner().map_err(|e| e.into_error())?.sync_all().context("writing the backup")?;
    progress.finish();
    eprintln!(
        "backed up {entries} entries to {}{}",
        a.out.display(),
        head.map(|h| format!(": head {}", hex::encode(h))).unwrap_or_default()
    );
    Ok(())
}

/// What a restore rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Entries replayed.
    pub entries: u64,
    /// Signed checkpoints stored.
    pub checkpoints: u64,
    /// Hash of the last entry.
    pub head_hash: [u8; 32],
    /// The last stream sequence (the restored hub resumes after it).
    pub last_stream_seq: u64,
}

fn replay(
    ledger: &mut Ledger<SledStore>,
    batch: &mut Vec<(RawMessage, [u8; 32], u64)>,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let msgs: Vec<RawMessage> = batch.iter().map(|(m, _, _)| m.clone()).collect();
    let outcome = ledger.commit_batch(&msgs).context("replaying the backup through the ledger")?;
    ensure!(
        outcome.gap.is_none() && outcome.skipped == 0,
        "the backup's stream sequences are not contiguous"
    );
    for (_, hash, seq) in batch.iter() {
        let got = ledger.store().entry(*seq)?.map(|e| e.hash);
        ensure!(
            got == Some(*hash),
            "entry {seq} replays to another hash than the backup's: the backup was altered, or this build \
             decides differently than the hub that wrote it"
        );
    }
    batch.clear();
    Ok(())
}

/// Restores `from` into the fresh data directory `dir` (see the module docs).
pub fn restore(from: &Path, dir: &Path, keys_from: Option<&Path>) -> anyhow::Result<Restored> {
    restore_with(from, dir, keys_from, std::sync::Arc::new(mpp_ledger::trust::Trust::default()))
}

/// [`restore`], judging registry statements with the registrar keys of
/// `trust`.
pub fn restore_with(
    from: &Path,
    dir: &Path,
    keys_from: Option<&Path>,
    trust: std::sync::Arc<mpp_ledger::trust::Trust>,
) -> anyhow::Result<Restored> {
    ensure!(
        !dir.join("db").exists() && !dir.join("conf").exists(),
        "{} already holds a store: restore only into a fresh data directory",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut reader = ExportReader::new(BufReader::new(file));
    let store = SledStore::open(dir).with_context(|| format!("creating a store in {}", dir.display()))?;
    let mut ledger = Ledger::open_with(store, trust).context("opening the new store")?;
    match reader.next_line() {
        Some(Ok(Line::Header(h))) if h.format == EXPORT_FORMAT => {}
        _ => bail!("{} does not start with an export header", from.display()),
    }
    let mut batch = Vec::with_capacity(RESTORE_BATCH_ENTRIES_MAX);
    let mut checkpoints = Vec::new();
    let mut progress = Progress::new("restore");
    let mut r = Restored { entries: 0, checkpoints: 0, head_hash: [0; 32], last_stream_seq: 0 };
    let end = loop {
        let line = match reader.next_line() {
            Some(l) => l.map_err(|e| anyhow::anyhow!("{}: {e}", from.display()))?,
            None => bail!("{} ends without its end line (truncated?)", from.display()),
        };
        match line {
            Line::Entry(l) => {
                let (e, claimed) = l.to_entry().map_err(|what| anyhow::anyhow!("entry {}: {what}", l.seq))?;
                ensure!(e.hash == claimed, "entry {}: its hash does not match its fields", e.seq);
                ensure!(e.seq == r.entries + 1, "entry {} follows entry {}", e.seq, r.entries);
                r.entries = e.seq;
                r.head_hash = e.hash;
                r.last_stream_seq = e.stream_seq;
                batch.push((
                    RawMessage {
                        stream_seq: e.stream_seq,
                        stream_time_ns: e.stream_time_ns,
                        subject: e.subject,
                        payload: Bytes::from(e.payload),
                        redrive: e.redrive,
                    },
                    e.hash,
                    e.seq,
                ));
                if batch.len() == RESTORE_BATCH_ENTRIES_MAX {
                    replay(&mut ledger, &mut batch)?;
                }
                progress.tick(1);
            }
            Line::Checkpoint(l) => {
                checkpoints.push(l.to_checkpoint().map_err(|what| anyhow::anyhow!("checkpoint: {what}"))?)
            }
            Line::End(end) => break end,
            Line::Header(_) => bail!("{}: a second header", from.display()),
        }
    };
    replay(&mut ledger, &mut batch)?;
    progress.finish();
    ensure!(
        end.entries == r.entries,
        "the end line counts {} entries, the backup holds {}",
        end.entries,
        r.entries
    );
    ensure!(
        end.head_hash == hex::encode(r.head_hash) || r.entries == 0,
        "the end line's head hash differs from the last entry's"
    );
    let store = ledger.store();
    for cp in &checkpoints {
        ensure!(
            cp.checkpoint.tree_size <= r.entries,
            "a checkpoint of tree size {} lies beyond the backup's {} entries",
            cp.checkpoint.tree_size,
            r.entries
        );
        store.put_checkpoint(cp)?;
        r.checkpoints += 1;
    }
    if let Some(keys) = keys_from {
        copy_keys(keys, &dir.join(mpp_ledger::signer::KEYS_DIR))?;
    }
    Ok(r)
}

pub(crate) fn copy_keys(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    }
    for name in [mpp_ledger::signer::PRIVATE_KEY_FILE, mpp_ledger::signer::PUBLIC_KEY_FILE] {
        let src = from.join(name);
        let mut bytes = Vec::new();
        std::fs::File::open(&src)
            .and_then(|f| f.take(KEY_FILE_BYTES_MAX).read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", src.display()))?;
        let dst = to.join(name);
        let mut opts = std::fs::File::options();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&dst).with_context(|| format!("creating {}", dst.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::fixture::{fill, Generator};

    #[test]
    fn restore_of_a_backup_gives_the_same_head_and_projection() {
        let src = tempfile::tempdir().unwrap();
        let store = SledStore::open(src.path()).unwrap();
        fill_fixture(&store);
        let head = store.head().unwrap();
        assert!(head.last_seq > 100, "{head:?}");
        let out = src.path().join("backup.jsonl");
        {
            let mut w = BufWriter::new(std::fs::File::create(&out).unwrap());
            export_store(&store, &mut w, true, &mut Progress::quiet("t")).unwrap();
            w.flush().unwrap();
        }
        let dst = tempfile::tempdir().unwrap();
        let restored_dir = dst.path().join("restored");
        let r = restore(&out, &restored_dir, None).unwrap();
        assert_eq!(r.entries, head.last_seq);
        assert_eq!(r.head_hash, head.head_hash);
        let restored = SledStore::open(&restored_dir).unwrap();
        assert_eq!(restored.head().unwrap(), head);
        mpp_ledger::ledger::verify_chain(&restored).unwrap();
        assert_eq!(
            mpp_ledger::ledger::projection(&restored).unwrap(),
            mpp_ledger::ledger::projection(&store).unwrap()
        );
        // A second restore into the same directory is refused.
        drop(restored);
        assert!(restore(&out, &restored_dir, None).is_err());
    }

    #[test]
    fn an_altered_backup_is_refused() {
        let src = tempfile::tempdir().unwrap();
        let store = SledStore::open(src.path()).unwrap();
        fill_fixture(&store);
        let mut text = Vec::new();
        export_store(&store, &mut text, true, &mut Progress::quiet("t")).unwrap();
        let text = String::from_utf8(text).unwrap();
        // Drop one entry line: the next entry no longer follows.
        let mut lines: Vec<&str> = text.lines().collect();
        let i = lines.iter().position(|l| l.contains("\"seq\":5,")).unwrap();
        lines.remove(i);
        let out = src.path().join("bad.jsonl");
        std::fs::write(&out, lines.join("\n") + "\n").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let err = restore(&out, &dst.path().join("r"), None).unwrap_err();
        assert!(format!("{err:#}").contains("entry"), "{err:#}");
    }

    fn fill_fixture(store: &SledStore) {
        fill(store, &mut Generator::new(7), 300, None, &mut Progress::quiet("t")).unwrap();
    }
}
