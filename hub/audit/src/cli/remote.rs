//! Remote mode of `audit verify`, `audit export` and `audit prove`: the same
//! checks over the hub's audit gRPC service (`mpp.v1.AuditService`) instead
//! of a copy of its data directory, authenticated with an auditor's bearer
//! token.
//!
//! Nothing the hub answers is trusted: every entry's hash is recomputed from
//! its fields ([`LogEntry::new`]), the chain and the Merkle tree are
//! recomputed by [`ChainVerifier`], and the signed checkpoint is checked
//! against them (and against the public key). The hub lists no checkpoints,
//! so the remote log is read up to its latest signed checkpoint, which
//! commits to every entry before it: a remote export is the signed prefix of
//! the log.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::log::{Hash32, Verdict};
use mpp_core::{LogEntry, ReasonCode};
use mpp_proto::v1 as pb;
use mpp_proto::v1::audit_service_client::AuditServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::export::{CheckpointLine, EndLine, EntryLine, HeaderLine, Line};
use super::prove::ProofBundle;
use super::report::VerifyReport;
use super::verify::{ChainVerifier, Failure};
use super::{hex32, Progress, PublicKey, RemoteArgs};

/// Entries asked for per `Replay` page (the service's maximum).
pub const REPLAY_PAGE_ENTRIES: u32 = 10_000;

/// How long connecting to the hub may take, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Sends `authorization: Bearer <token>`.
pub use mpp_edge::auth::BearerToken as Bearer;

/// A connection to a hub's audit service.
#[derive(Debug, Clone)]
pub struct Remote {
    client: AuditServiceClient<InterceptedService<Channel, Bearer>>,
    url: String,
}

fn status(what: &str, s: tonic::Status) -> anyhow::Error {
    let code = s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    anyhow::anyhow!("{what}: {:?} {} {code}", s.code(), s.message())
}

impl Remote {
    /// Connects to `url` with `token` in plaintext (an `https://` URL is
    /// refused: use [`Remote::connect_with`] and a CA file).
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<Remote> {
        Remote::connect_with(url, token, None).await
    }

    /// Connects to `url` with `token`; with `tls_ca_file`, over TLS
    /// trusting exactly the CA(s) in that PEM file (`url` must then be
    /// `https://`).
    pub async fn connect_with(url: &str, token: &str, tls_ca_file: Option<&Path>) -> anyhow::Result<Remote> {
        // The token is never part of an error: only whether it parses.
        let bearer =
            Bearer::new(token).ok_or_else(|| anyhow::anyhow!("the token is not valid ASCII metadata"))?;
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("--hub-grpc {url:?} is not a URI"))?
            .connect_timeout(std::time::Duration::from_millis(CONNECT_TIMEOUT_MS));
        match tls_ca_file {
            Some(ca) => {
                if endpoint.uri().scheme_str() != Some("https") {
                    bail!("--hub-grpc {url:?} must be an https:// URL with --tls-ca-file");
                }
                let tls = mpp_edge::tls::client_tls_config(ca)?;
                endpoint = endpoint.tls_config(tls).context("setting up TLS")?;
            }
            None if endpoint.uri().scheme_str() == Some("https") => {
                bail!("--hub-grpc {url:?} is https: give the CA of the hub's certificate with --tls-ca-file")
            }
            None => {}
        }
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {url}"))?;
        Ok(Remote { client: AuditServiceClient::with_interceptor(channel, bearer), url: url.to_owned() })
    }

    /// Connects as `--hub-grpc` and `--auditor-token` say.
    pub async fn from_args(args: &RemoteArgs) -> anyhow::Result<Remote> {
        let Some(url) = &args.hub_grpc else { bail!("--hub-grpc is required in remote mode") };
        let Some(token) = &args.auditor_token else {
            bail!("--auditor-token (MPP_AUDITOR_TOKEN) is required with --hub-grpc")
        };
        Remote::connect_with(url, token, args.tls_ca_file.as_deref()).await
    }

    /// The hub's latest signed checkpoint, `None` before the first.
    pub async fn latest_checkpoint(&mut self) -> anyhow::Result<Option<SignedCheckpoint>> {
        match self.client.get_latest_checkpoint(pb::GetLatestCheckpointRequest {}).await {
            Ok(r) => decode_checkpoint(&r.into_inner()).map(Some),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(status("GetLatestCheckpoint", s)),
        }
    }

    /// The note of the hub's latest checkpoint (with the cosignatures it
    /// holds), `None` before the first.
    pub async fn latest_note(&mut self) -> anyhow::Result<Option<String>> {
        match self.client.get_latest_checkpoint(pb::GetLatestCheckpointRequest {}).await {
            Ok(r) => Ok(Some(r.into_inner().note)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(status("GetLatestCheckpoint", s)),
        }
    }

    /// The hub's consistency proof from `old_size` to `new_size` (not
    /// verified here).
    pub async fn consistency_proof(&mut self, old_size: u64, new_size: u64) -> anyhow::Result<Vec<Hash32>> {
        let r = self
            .client
            .get_consistency_proof(pb::GetConsistencyProofRequest { old_size, new_size })
            .await
            .map_err(|s| status("GetConsistencyProof", s))?
            .into_inner();
        r.proof
            .iter()
            .map(|h| {
                <Hash32>::try_from(h.as_slice()).map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))
            })
            .collect()
    }

    /// Reads entries `1..=to_seq` page by page, handing each (with the hash
    /// recomputed from its fields, and the hash the hub claimed) to `each`.
    pub async fn replay(
        &mut self,
        to_seq: u64,
        progress: &mut Progress,
        mut each: impl FnMut(LogEntry, Hash32) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut next = 1u64;
        while next <= to_seq {
            let req = pb::ReplayRequest {
                from_seq: next,
                to_seq,
                max_entries: REPLAY_PAGE_ENTRIES,
                ..Default::default()
            };
            let mut stream = self.client.replay(req).await.map_err(|s| status("Replay", s))?.into_inner();
            let mut got = 0u32;
            while let Some(e) = stream.message().await.map_err(|s| status("Replay", s))? {
                let (entry, claimed) =
                    from_wire(&e).with_context(|| format!("entry {} from the hub", e.seq))?;
                next = entry.seq.saturating_add(1);
                each(entry, claimed)?;
                progress.tick(1);
                got += 1;
            }
            if got == 0 {
                bail!("the hub returned no entries from seq {next} although {to_seq} are signed");
            }
        }
        Ok(())
    }

    /// Verifies the remote log up to its latest signed checkpoint.
    pub async fn verify(
        &mut self,
        key: Option<PublicKey>,
        progress: &mut Progress,
    ) -> anyhow::Result<Result<VerifyReport, Failure>> {
        let Some(cp) = self.latest_checkpoint().await? else {
            bail!("{} has signed no checkpoint yet: nothing to verify against", self.url);
        };
        let mut v = ChainVerifier::new(key);
        let mut failure = None;
        self.replay(cp.checkpoint.tree_size, progress, |e, claimed| {
            if failure.is_none() {
                if let Err(f) = v.push(&e, &claimed) {
                    failure = Some(f);
                }
            }
            Ok(())
        })
        .await?;
        if let Some(f) = failure {
            return Ok(Err(f));
        }
        Ok(v.checkpoint(&cp).map(|()| v.report()))
    }

    /// Writes the signed prefix of the remote log as an export.
    pub async fn export(
        &mut self,
        out: &mut impl Write,
        decode: bool,
        progress: &mut Progress,
    ) -> anyhow::Result<u64> {
        let Some(cp) = self.latest_checkpoint().await? else {
            bail!("{} has signed no checkpoint yet: nothing to export", self.url);
        };
        let write = |line: &Line, out: &mut dyn Write| -> anyhow::Result<()> {
            serde_json::to_writer(&mut *out, line)?;
            out.write_all(b"\n")?;
            Ok(())
        };
        write(&Line::Header(HeaderLine::current()), out)?;
        let mut v = ChainVerifier::new(None);
        self.replay(cp.checkpoint.tree_size, progress, |e, claimed| {
            v.push(&e, &claimed).map_err(|f| anyhow::anyhow!("the hub's log is broken: {f}"))?;
            write(&Line::Entry(EntryLine::of(&e, decode)), out)
        })
        .await?;
        v.checkpoint(&cp).map_err(|f| anyhow::anyhow!("the hub's checkpoint does not match its log: {f}"))?;
        write(&Line::Checkpoint(CheckpointLine::of(&cp)), out)?;
        let r = v.report();
        write(
            &Line::End(EndLine {
                entries: r.entries,
                checkpoints: 1,
                head_hash: hex32(&r.head_hash),
                root_hash: hex32(&r.root_hash),
            }),
            out,
        )?;
        out.flush()?;
        Ok(r.entries)
    }

    /// The proof bundle of entry `seq` (or the accepted event `event_id`) in
    /// the tree of `tree_size` (0: the latest checkpoint's).
    pub async fn prove(
        &mut self,
        seq: Option<u64>,
        event_id: Option<&str>,
        tree_size: u64,
    ) -> anyhow::Result<ProofBundle> {
        use pb::get_inclusion_proof_request::Entry;
        let entry = match (seq, event_id) {
            (Some(s), _) => Entry::Seq(s),
            (None, Some(id)) => Entry::EventId(id.to_owned()),
            (None, None) => bail!("give --event-id or --seq"),
        };
        let r = self
            .client
            .get_inclusion_proof(pb::GetInclusionProofRequest { entry: Some(entry), tree_size })
            .await
            .map_err(|s| status("GetInclusionProof", s))?
            .into_inner();
        let wire_entry = r.entry.context("the hub sent no entry")?;
        let (e, claimed) = from_wire(&wire_entry)?;
        if e.hash != claimed {
            bail!("the hub sent entry {} with a hash that is not its content's", e.seq);
        }
        let proof = r
            .proof
            .iter()
            .map(|h| {
                <Hash32>::try_from(h.as_slice()).map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let leaf = mpp_core::merkle::entry_leaf_hash(&e.hash);
        let root = mpp_core::merkle::root_from_inclusion(&leaf, e.seq - 1, r.tree_size, &proof)
            .map_err(|err| anyhow::anyhow!("the hub's proof does not verify: {err}"))?;
        let checkpoint = r.checkpoint.as_ref().map(decode_checkpoint).transpose()?;
        let cosigned = r.checkpoint.as_ref().map(|c| c.note.clone()).filter(|n| !n.is_empty());
        Ok(ProofBundle::new(&e, r.tree_size, &leaf, &proof, &root, checkpoint.as_ref())
            .with_cosigned_note(cosigned))
    }
}

/// The checkpoint in its stored form (the fields beside it are copies).
fn decode_checkpoint(cp: &pb::SignedCheckpoint) -> anyhow::Result<SignedCheckpoint> {
    SignedCheckpoint::decode(&cp.encoded)
        .map_err(|e| anyhow::anyhow!("the hub sent a checkpoint that does not decode: {e}"))
}

/// A wire entry as the core's, its hash recomputed from the fields; and the
/// hash the hub sent.
pub fn from_wire(e: &pb::LogEntry) -> anyhow::Result<(LogEntry, Hash32)> {
    let verdict = match pb::Verdict::try_from(e.verdict) {
        Ok(pb::Verdict::Accepted) => Verdict::Accepted,
        Ok(pb::Verdict::Rejected) => Verdict::Rejected,
        Ok(pb::Verdict::Duplicate) => Verdict::Duplicate,
        _ => bail!("unknown verdict {}", e.verdict),
    };
    let reason = match e.reason_code.as_str() {
        "" => None,
        code => Some(ReasonCode::from_code(code).with_context(|| format!("unknown reason code {code:?}"))?),
    };
    let prev: Hash32 =
        e.prev_hash.as_slice().try_into().map_err(|_| anyhow::anyhow!("prev_hash is not 32 bytes"))?;
    let claimed: Hash32 =
        e.hash.as_slice().try_into().map_err(|_| anyhow::anyhow!("hash is not 32 bytes"))?;
    let entry = LogEntry::new(
        e.seq,
        e.stream_seq,
        e.stream_time_ns,
        verdict,
        reason,
        &e.detail,
        &e.subject,
        e.payload.clone(),
        prev,
    )
    .with_redrive(
        (e.redrive_of != 0)
            .then(|| mpp_core::Redrive { of_seq: e.redrive_of, operator: e.redrive_operator.clone() }),
    );
    Ok((entry, claimed))
}

/// `mpp-hub audit verify --hub-grpc …`.
pub(crate) async fn run_verify(args: &super::VerifyArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let key = super::read_key(args.public_key.as_deref())?;
    let policy = args.witnesses.policy(key.as_ref())?;
    let mut remote = Remote::from_args(&args.remote).await?;
    // The cosigned checkpoint: the file given, else the latest one's note
    // (asked before the log, so it is never beyond the part verified).
    let cosigned = match (&policy, args.witnesses.read_file()?) {
        (None, _) => None,
        (Some(p), Some(text)) => Some(p.check(&text)),
        (Some(p), None) => Some(match remote.latest_note().await? {
            Some(text) => p.check(&text),
            None => Err("the hub has signed no checkpoint yet".to_owned()),
        }),
    };
    let mut progress = Progress::new("verify");
    let result = remote.verify(key, &mut progress).await?;
    progress.finish();
    let report = match result {
        Ok(report) => report,
        Err(f) => {
            super::say(out, &f.to_string())?;
            return Ok(super::EXIT_FAILED);
        }
    };
    // The cosigned tree is a prefix of the verified one if the hub can
    // prove it consistent with the root just recomputed.
    let proof = match cosigned.as_ref() {
        Some(Ok(c)) if c.size > 0 && c.size <= report.entries => {
            Some(remote.consistency_proof(c.size, report.entries).await?)
        }
        _ => None,
    };
    let (entries, root) = (report.entries, report.root_hash);
    let cosigned_root = cosigned.as_ref().and_then(|c| c.as_ref().ok()).map(|c| c.root);
    let root_at = move |size: u64| -> anyhow::Result<Hash32> {
        let claimed = match &cosigned_root {
            Some(r) => *r,
            None => anyhow::bail!("no cosigned root"),
        };
        let proof = proof.unwrap_or_default();
        mpp_core::merkle::verify_consistency(size, entries, &claimed, &root, &proof).map_err(|e| {
            anyhow::anyhow!("the hub cannot prove the cosigned tree a prefix of its log: {e}")
        })?;
        Ok(claimed)
    };
    super::verify::report_witnessed(
        out,
        &report,
        cosigned,
        policy.as_ref().map_or(0, |p| p.quorum()),
        root_at,
    )
}

/// `mpp-hub audit export --hub-grpc …`.
pub(crate) async fn run_export(args: &super::ExportArgs) -> anyhow::Result<u8> {
    let mut remote = Remote::from_args(&args.remote).await?;
    let mut progress = Progress::new("export");
    let entries = if args.out.as_os_str() == "-" {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        remote.export(&mut w, !args.no_decode, &mut progress).await?
    } else {
        let file =
            std::fs::File::options().write(true).create_new(true).open(&args.out).with_context(|| {
                format!("creating {} (an existing file is never overwritten)", args.out.display())
            })?;
        let mut w = std::io::BufWriter::new(file);
        let n = remote.export(&mut w, !args.no_decode, &mut progress).await?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        n
    };
    progress.finish();
    eprintln!("exported the {entries} signed entries of {} to {}", remote.url, args.out.display());
    Ok(0)
}

/// `mpp-hub audit prove --hub-grpc …`.
pub(crate) async fn run_prove(args: &super::ProveArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut remote = Remote::from_args(&args.remote).await?;
    let bundle = remote.prove(args.seq, args.event_id.as_deref(), args.tree_size.unwrap_or(0)).await?;
    super::prove::write_bundle(&bundle, args.out.as_deref(), out)?;
    Ok(0)
}
