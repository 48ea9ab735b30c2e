//! `mpp-hub audit prove` and `audit check-proof`: an inclusion proof bundle
//! for one log entry, and its verification with the hub's public key alone.
//!
//! A bundle (`mpp-hub-proof/v1`, JSON) holds the entry (as an export entry
//! line, so its hash can be recomputed from its fields), its canonical
//! bytes, its leaf index, the tree size, the RFC 9162 inclusion proof, the
//! root, and the signed checkpoint of that tree size. [`check_bundle`]
//! recomputes the entry's hash and leaf, walks the proof up to the root, and
//! checks that the root is the one the hub signed, with the hub's key: the
//! hub cannot later deny having recorded the entry at that position, and
//! cannot show another version of it to anyone else.

use std::io::Write;

use anyhow::{bail, Context};
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::ids::EventId;
use mpp_core::log::Hash32;
use mpp_core::merkle::{entry_leaf_hash, inclusion_proof, root_from_inclusion};
use mpp_core::LogEntry;
use mpp_store::Store;
use serde::{Deserialize, Serialize};

use super::export::{CheckpointLine, EntryLine};
use super::{
    base64_decode, base64_encode, hex32, open_store, parse_hex32, say, CheckProofArgs, ProveArgs, PublicKey,
    EXIT_FAILED,
};

/// The bundle format name.
pub const PROOF_FORMAT: &str = "mpp-hub-proof/v1";

/// Largest bundle file `check-proof` reads, in bytes (a bundle holds one
/// entry line, at most [`super::export::EXPORT_LINE_BYTES_MAX`]).
pub const BUNDLE_BYTES_MAX: u64 = super::export::EXPORT_LINE_BYTES_MAX as u64 + 64 * 1024;

/// An inclusion proof bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The entry, as an export entry line.
    pub entry: EntryLine,
    /// The entry's canonical bytes (what its hash covers after the domain
    /// tag), standard base64.
    pub canonical_b64: String,
    /// `seq - 1`.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// `SHA-256(0x00 || entry hash)`, hex.
    pub leaf_hash: String,
    /// The inclusion proof, lowest sibling first, hex.
    pub inclusion_proof: Vec<String>,
    /// Merkle root of the tree of `tree_size` entries, hex.
    pub root_hash: String,
    /// The hub's signed checkpoint of that tree size (`None`: the hub has not
    /// signed that size; the bundle then proves nothing to an outsider).
    pub checkpoint: Option<CheckpointLine>,
}

/// Builds the bundle for the entry `seq` in the tree of `tree_size`
/// (default: the latest signed checkpoint if it covers the entry, else the
/// head).
pub fn prove<S: Store>(store: &S, seq: u64, tree_size: Option<u64>) -> anyhow::Result<ProofBundle> {
    let head = store.head().context("reading the head")?;
    if seq == 0 || seq > head.last_seq {
        bail!("entry {seq} is not in the log (head at seq {})", head.last_seq);
    }
    let tree_size = match tree_size {
        Some(n) if n < seq || n > head.last_seq => {
            bail!("tree size {n} must be between the entry's seq {seq} and the head's {}", head.last_seq)
        }
        Some(n) => n,
        None => match store.latest_checkpoint().context("reading the latest checkpoint")? {
            Some(cp) if cp.checkpoint.tree_size >= seq => cp.checkpoint.tree_size,
            _ => head.last_seq,
        },
    };
    let e =
        store.entry(seq).context("reading the entry")?.with_context(|| format!("entry {seq} is missing"))?;
    let proof =
        inclusion_proof(store, seq - 1, tree_size).map_err(|e| anyhow::anyhow!("building the proof: {e}"))?;
    let leaf = entry_leaf_hash(&e.hash);
    let root = root_from_inclusion(&leaf, seq - 1, tree_size, &proof)
        .map_err(|e| anyhow::anyhow!("the proof just built does not verify: {e}"))?;
    let checkpoint = store.checkpoint(tree_size).context("reading the checkpoint")?;
    if let Some(cp) = &checkpoint {
        if cp.checkpoint.root_hash != root {
            bail!("the stored checkpoint of tree size {tree_size} signs another root than the log's");
        }
    }
    Ok(ProofBundle::new(&e, tree_size, &leaf, &proof, &root, checkpoint.as_ref()))
}

impl ProofBundle {
    /// The bundle of entry `e`: its leaf hash `leaf`, inclusion `proof` in
    /// the tree of `tree_size` entries whose root is `root`, and the hub's
    /// checkpoint of that size if it signed one.
    pub(crate) fn new(
        e: &LogEntry,
        tree_size: u64,
        leaf: &Hash32,
        proof: &[Hash32],
        root: &Hash32,
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Self {
        let mut canonical = Vec::new();
        e.write_canonical(&mut canonical);
        ProofBundle {
            format: PROOF_FORMAT.to_owned(),
            entry: EntryLine::of(e, true),
            canonical_b64: base64_encode(&canonical),
            leaf_index: e.seq - 1,
            tree_size,
            leaf_hash: hex32(leaf),
            inclusion_proof: proof.iter().map(hex32).collect(),
            root_hash: hex32(root),
            checkpoint: checkpoint.map(CheckpointLine::of),
        }
    }

    /// The bundle with its checkpoint's note replaced by `cosigned`, the
    /// same note with the witnesses' cosignatures, when it is of exactly
    /// that checkpoint's body (anything else is left out).
    pub fn with_cosigned_note(mut self, cosigned: Option<String>) -> Self {
        let (Some(line), Some(text)) = (self.checkpoint.as_mut(), cosigned) else { return self };
        let same_body = match (line.note.as_deref().map(mpp_core::note::parse), mpp_core::note::parse(&text))
        {
            (Some(Ok((own, _))), Ok((theirs, _))) => own == theirs,
            _ => false,
        };
        if same_body {
            line.note = Some(text);
        }
        self
    }
}

/// What a bundle proves, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The entry's sequence.
    pub seq: u64,
    /// The size of the signed tree.
    pub tree_size: u64,
    /// The entry's verdict.
    pub verdict: String,
    /// The event id in the payload, if it decodes.
    pub event_id: Option<String>,
    /// Who signed (origin) and with which key.
    pub signed_by: String,
}

/// Checks a bundle with the public key alone (see the module docs).
pub fn check_bundle(b: &ProofBundle, key: &PublicKey) -> Result<Proven, String> {
    if b.format != PROOF_FORMAT {
        return Err(format!("unknown bundle format {:?}", b.format));
    }
    let (e, claimed) = b.entry.to_entry()?;
    if e.hash != claimed {
        return Err(format!("the entry's hash is not the hash of its fields (seq {})", e.seq));
    }
    let mut canonical = Vec::new();
    e.write_canonical(&mut canonical);
    if base64_decode(&b.canonical_b64).as_deref() != Some(canonical.as_slice()) {
        return Err("canonical_b64 is not the canonical encoding of the entry".to_owned());
    }
    if e.seq == 0 || b.leaf_index != e.seq - 1 {
        return Err(format!("leaf index {} is not the entry's seq {} - 1", b.leaf_index, e.seq));
    }
    let leaf = entry_leaf_hash(&e.hash);
    if b.leaf_hash != hex32(&leaf) {
        return Err("leaf_hash is not SHA-256(0x00 || entry hash)".to_owned());
    }
    let proof = b
        .inclusion_proof
        .iter()
        .map(|h| parse_hex32(h).ok_or_else(|| format!("proof hash {h:?} is not 64 lowercase hex digits")))
        .collect::<Result<Vec<_>, _>>()?;
    let root = root_from_inclusion(&leaf, b.leaf_index, b.tree_size, &proof).map_err(|e| e.to_string())?;
    if b.root_hash != hex32(&root) {
        return Err("the proof leads to another root than root_hash".to_owned());
    }
    let Some(line) = &b.checkpoint else {
        return Err(format!(
            "the bundle carries no signed checkpoint for tree size {}: the inclusion is consistent but unsigned",
            b.tree_size
        ));
    };
    let cp = line.to_checkpoint()?;
    let c = &cp.checkpoint;
    if c.tree_size != b.tree_size || c.root_hash != root {
        return Err(format!("the checkpoint signs tree size {} with another root", c.tree_size));
    }
    key.verify_checkpoint(&cp).map_err(|e| e.to_string())?;
    Ok(Proven {
        seq: e.seq,
        tree_size: b.tree_size,
        verdict: e.verdict.as_str().to_owned(),
        event_id: b
            .entry
            .envelope
            .as_ref()
            .and_then(|v| v.get("event_id"))
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        signed_by: format!("{} (key {}, signed at {} ms)", c.origin, c.key_id, c.signed_at_ms),
    })
}

/// `mpp-hub audit prove`.
pub(crate) fn run_prove(args: &ProveArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let Some(dir) = &args.data_dir else { bail!("--data-dir is required") };
    let store = open_store(dir)?;
    let seq = match (&args.event_id, args.seq) {
        (_, Some(seq)) => seq,
        (Some(id), None) => {
            let id = EventId::parse(id).map_err(|r| anyhow::anyhow!("--event-id {id:?}: {}", r.detail))?;
            store.event_seq(&id).context("reading the event index")?.with_context(|| {
                format!("no accepted entry has event id {id} (rejected events: use --seq)")
            })?
        }
        (None, None) => bail!("give --event-id or --seq"),
    };
    let bundle = prove(&store, seq, args.tree_size)?;
    // The witnesses' cosignatures the hub kept for that size, if any.
    let kept = crate::cosign::read_file(dir)?.remove(&bundle.tree_size);
    write_bundle(&bundle.with_cosigned_note(kept), args.out.as_deref(), out)?;
    Ok(0)
}

/// Writes a bundle to `path`, or to `out` (pretty JSON).
pub(crate) fn write_bundle(
    bundle: &ProofBundle,
    path: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if bundle.checkpoint.is_none() {
        eprintln!(
            "warning: the hub has signed no checkpoint of tree size {}: this bundle is not checkable by an outsider",
            bundle.tree_size
        );
    }
    let text = serde_json::to_string_pretty(bundle)?;
    match path {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote the proof of entry {} in the tree of {} entries to {}",
                bundle.leaf_index + 1,
                bundle.tree_size,
                path.display()
            );
        }
        None => say(out, &text)?,
    }
    Ok(())
}

/// `mpp-hub audit check-proof`.
pub(crate) fn run_check(args: &CheckProofArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let key = PublicKey::read(&args.public_key)?;
    let text = mpp_edge::files::read_at_most(&args.bundle, BUNDLE_BYTES_MAX)
        .with_context(|| format!("reading the bundle {}", args.bundle.display()))?;
    if text.len() as u64 > BUNDLE_BYTES_MAX {
        bail!("the bundle is larger than {BUNDLE_BYTES_MAX} bytes");
    }
    let bundle: ProofBundle = match serde_json::from_slice(&text) {
        Ok(b) => b,
        Err(e) => {
            say(out, &format!("FAIL: not a proof bundle: {e}"))?;
            return Ok(EXIT_FAILED);
        }
    };
    let policy = args.witnesses.policy(Some(&key))?;
    match check_bundle(&bundle, &key) {
        Ok(p) => {
            // With witness keys: the bundle's tree must be cosigned by the
            // quorum (the bundle's own note, or --cosigned-checkpoint).
            let witnessed = match &policy {
                None => None,
                Some(policy) => {
                    let note = match args.witnesses.read_file()? {
                        Some(text) => Some(text),
                        None => bundle.checkpoint.as_ref().and_then(|l| l.note.clone()),
                    };
                    let checked = note
                        .ok_or_else(|| "the bundle carries no cosigned checkpoint".to_owned())
                        .and_then(|n| policy.check(&n))
                        .and_then(|c| {
                            if c.size == p.tree_size && hex32(&c.root) == bundle.root_hash {
                                Ok(c)
                            } else {
                                Err(format!(
                                    "the cosigned checkpoint is of tree size {}, not the bundle's",
                                    c.size
                                ))
                            }
                        });
                    match checked {
                        Ok(c) => Some(format!(
                            "witnesses: tree size {} cosigned by {} witnesses ({} required): {}",
                            c.size,
                            c.witnesses.len(),
                            policy.quorum(),
                            c.witnesses.join(", ")
                        )),
                        Err(w) => {
                            say(out, &format!("FAIL: witnesses: {w}"))?;
                            return Ok(EXIT_FAILED);
                        }
                    }
                }
            };
            say(
                out,
                &format!(
                    "OK: entry {} ({}{}) is in the log of {} entries signed by {}",
                    p.seq,
                    p.verdict,
                    p.event_id.map(|id| format!(", event {id}")).unwrap_or_default(),
                    p.tree_size,
                    p.signed_by
                ),
            )?;
            if let Some(w) = witnessed {
                say(out, &w)?;
            }
            Ok(0)
        }
        Err(what) => {
            say(out, &format!("FAIL: {what}"))?;
            Ok(EXIT_FAILED)
        }
    }
}
