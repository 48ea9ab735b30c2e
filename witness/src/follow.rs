//! Following one hub: poll its latest signed checkpoint over the audit API,
//! judge it against the last one cosigned ([`judge`]), then cosign or keep
//! evidence.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use mpp_core::log::Hash32;
use mpp_core::note;
use mpp_edge::auth::BearerToken;
use mpp_proto::v1 as pb;
use mpp_proto::v1::audit_service_client::AuditServiceClient;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing::{error, info, warn};

use crate::evidence::{verify_hub_note, Evidence, EvidenceKind, HubCheckpoint, EVIDENCE_FORMAT};
use crate::key::WitnessKey;
use crate::state::{Cosigned, StateDir, STATE_FORMAT};

/// How long connecting to a hub may take, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// How long one audit call may take, in milliseconds.
pub const CALL_TIMEOUT_MS: u64 = 30_000;

/// Most hashes in a consistency proof the witness reads (2 per level of a
/// tree of 2^64 leaves, with room).
pub const CONSISTENCY_PROOF_HASHES_MAX: usize = 130;

/// A hub to follow: `ORIGIN,KEY,URL` (the origin is the hub's key name;
/// the key its Ed25519 public key, 64 hex digits; the URL its gRPC
/// endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The hub's origin (`mpp-hub/<hub id>`).
    pub origin: String,
    /// Its checkpoint public key.
    pub key: [u8; 32],
    /// Its gRPC endpoint, e.g. `http://hub.example:50051`.
    pub url: String,
}

impl std::str::FromStr for HubConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim().splitn(3, ',');
        let (Some(origin), Some(key), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a hub is ORIGIN,KEY,URL (e.g. mpp-hub/jakarta-1,<64 hex>,https://hub:50051)".into());
        };
        if !note::valid_key_name(origin) {
            return Err(format!("{origin:?} is not an origin"));
        }
        let key = hex::decode(key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a hub's key is 64 hex digits (`mpp-hub export-public-key`)")?;
        Ok(HubConfig { origin: origin.to_owned(), key, url: url.to_owned() })
    }
}

/// What the witness does with a checkpoint of `size` and `root`, given the
/// last one it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The one already cosigned.
    Unchanged,
    /// The first checkpoint of this hub: cosign it (trust on first use).
    First,
    /// Larger: cosign once a consistency proof from `from` verifies.
    NeedsProof {
        /// The cosigned size.
        from: u64,
    },
    /// Same size, another root.
    SplitView,
    /// Smaller.
    Rollback,
}

/// The pure decision.
pub fn judge(last: Option<(u64, Hash32)>, size: u64, root: &Hash32) -> Judgement {
    match last {
        None => Judgement::First,
        Some((n, r)) if n == size && r == *root => Judgement::Unchanged,
        Some((n, _)) if n == size => Judgement::SplitView,
        Some((n, _)) if size < n => Judgement::Rollback,
        Some((n, _)) => Judgement::NeedsProof { from: n },
    }
}

/// Counters of one hub, for `/metrics`.
#[derive(Debug, Default)]
pub struct HubCounters {
    /// Cosignatures released.
    pub cosignatures: AtomicU64,
    /// Checkpoints refused, by kind (split view, rollback, inconsistent).
    pub refused: [AtomicU64; 3],
    /// Polls that failed (hub unreachable, bad signature, ...).
    pub poll_errors: AtomicU64,
}

/// What the witness serves: the cosigned checkpoints and the evidence.
#[derive(Debug)]
pub struct Shared {
    /// The witness's key.
    pub key: WitnessKey,
    /// Last cosigned checkpoint per origin.
    pub cosigned: RwLock<BTreeMap<String, Cosigned>>,
    /// Evidence, oldest first.
    pub evidence: RwLock<Vec<Evidence>>,
    /// Counters per origin (the configured ones: a closed set).
    pub counters: BTreeMap<String, HubCounters>,
    /// The state directory.
    pub state: StateDir,
}

impl Shared {
    /// Loads the state of `hubs` from `state`.
    pub fn load(key: WitnessKey, state: StateDir, hubs: &[HubConfig]) -> anyhow::Result<Shared> {
        let mut cosigned = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for h in hubs {
            if counters.insert(h.origin.clone(), HubCounters::default()).is_some() {
                bail!("hub {} is given twice", h.origin);
            }
            if let Some(c) = state.load(&h.origin)? {
                info!(origin = %h.origin, size = c.size, "Witness state loaded");
                cosigned.insert(h.origin.clone(), c);
            }
        }
        let evidence = state.evidence()?.into_iter().map(|(_, e)| e).collect();
        Ok(Shared { key, cosigned: RwLock::new(cosigned), evidence: RwLock::new(evidence), counters, state })
    }

    fn last(&self, origin: &str) -> Option<Cosigned> {
        self.cosigned.read().unwrap_or_else(|e| e.into_inner()).get(origin).cloned()
    }
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

type Client = AuditServiceClient<InterceptedService<Channel, BearerToken>>;

/// A lazily connecting client of a hub's audit API.
pub fn client(url: &str, token: &str, tls_ca_file: Option<&Path>) -> anyhow::Result<Client> {
    let bearer = BearerToken::new(token).context("the token is not ASCII")?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url:?} is not a URI"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .timeout(Duration::from_millis(CALL_TIMEOUT_MS));
    match tls_ca_file {
        Some(ca) => endpoint = endpoint.tls_config(mpp_edge::tls::client_tls_config(ca)?)?,
        None if endpoint.uri().scheme_str() == Some("https") => {
            bail!("{url:?} is https: give the CA of the hub's certificate with --tls-ca-file")
        }
        None => {}
    }
    Ok(AuditServiceClient::with_interceptor(endpoint.connect_lazy(), bearer))
}

fn status(what: &str, s: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {:?} {}", s.code(), s.message())
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No checkpoint yet, or the one already cosigned.
    Nothing,
    /// Cosigned this size.
    Cosigned(u64),
    /// Refused, with the evidence kept.
    Refused(EvidenceKind),
}

/// Follows one hub until `stop`.
pub async fn follow(
    shared: Arc<Shared>,
    hub: HubConfig,
    mut client: Client,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match poll_once(&shared, &hub, &mut client).await {
            Ok(_) => {}
            Err(e) => {
                shared.counters[&hub.origin].poll_errors.fetch_add(1, Ordering::Relaxed);
                warn!(origin = %hub.origin, error = %format!("{e:#}"), "Polling the hub failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One poll of one hub.
pub async fn poll_once(shared: &Shared, hub: &HubConfig, client: &mut Client) -> anyhow::Result<Outcome> {
    let latest = match client.get_latest_checkpoint(pb::GetLatestCheckpointRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(Outcome::Nothing),
        Err(s) => return Err(status("GetLatestCheckpoint", &s)),
    };
    if latest.note.is_empty() {
        bail!("the hub's latest checkpoint has no signed note (a hub older than notes)");
    }
    let new = verify_hub_note(&latest.note, &hub.origin, &hub.key).map_err(|w| anyhow::anyhow!(w))?;
    let last = shared.last(&hub.origin);
    let last_key = match &last {
        Some(c) => Some((c.size, c.root_hash()?)),
        None => None,
    };
    match judge(last_key, new.size, &new.root) {
        Judgement::Unchanged => Ok(Outcome::Nothing),
        Judgement::First => cosign(shared, hub, &new, None).map(Outcome::Cosigned),
        Judgement::SplitView => refuse(shared, hub, last, &new, EvidenceKind::SplitView, Vec::new()),
        Judgement::Rollback => refuse(shared, hub, last, &new, EvidenceKind::Rollback, Vec::new()),
        Judgement::NeedsProof { from } => {
            let r = client
                .get_consistency_proof(pb::GetConsistencyProofRequest { old_size: from, new_size: new.size })
                .await
                .map_err(|s| status("GetConsistencyProof", &s))?
                .into_inner();
            if r.proof.len() > CONSISTENCY_PROOF_HASHES_MAX {
                bail!("a consistency proof of {} hashes", r.proof.len());
            }
            let proof: Vec<Hash32> = r.proof.iter().filter_map(|h| h.as_slice().try_into().ok()).collect();
            let (_, old_root) = last_key.expect("NeedsProof has a last checkpoint");
            let verified = proof.len() == r.proof.len()
                && mpp_core::merkle::verify_consistency(from, new.size, &old_root, &new.root, &proof).is_ok();
            if verified {
                return cosign(shared, hub, &new, last.as_ref()).map(Outcome::Cosigned);
            }
            // No proof: does the hub now sign another root for the size
            // already cosigned? That is a split view anyone can check.
            if let Ok(r) = client.get_checkpoint(pb::GetCheckpointRequest { tree_size: from }).await {
                let other = r.into_inner().note;
                if let Ok(cp) = verify_hub_note(&other, &hub.origin, &hub.key) {
                    if cp.size == from && cp.root != old_root {
                        return refuse(shared, hub, last, &cp, EvidenceKind::SplitView, Vec::new());
                    }
                }
            }
            let proof_b64 = r.proof.iter().map(|h| mpp_core::base64::encode(h)).collect();
            refuse(shared, hub, last, &new, EvidenceKind::Inconsistent, proof_b64)
        }
    }
}

/// Cosigns `new`: the state first, durably; then the served copy.
fn cosign(
    shared: &Shared,
    hub: &HubConfig,
    new: &HubCheckpoint,
    last: Option<&Cosigned>,
) -> anyhow::Result<u64> {
    // The invariant, checked right before the write: never a smaller size,
    // never another root for a size already cosigned.
    if let Some(l) = last {
        assert!(new.size > l.size, "cosigning size {} after {}", new.size, l.size);
    }
    let at = now_s();
    let cosignature = shared.key.cosign(&new.body, at);
    let c = Cosigned {
        format: STATE_FORMAT.to_owned(),
        origin: hub.origin.clone(),
        size: new.size,
        root: mpp_core::base64::encode(&new.root),
        note: note::render(&new.body, &[new.hub_signature.clone(), cosignature.to_note_signature()]),
        cosigned_at_s: at,
    };
    shared.state.commit(&c)?;
    shared.cosigned.write().unwrap_or_else(|e| e.into_inner()).insert(hub.origin.clone(), c);
    shared.counters[&hub.origin].cosignatures.fetch_add(1, Ordering::Relaxed);
    info!(origin = %hub.origin, size = new.size, "Checkpoint cosigned");
    Ok(new.size)
}

/// Refuses `new`, keeping the evidence against the last cosigned one.
fn refuse(
    shared: &Shared,
    hub: &HubConfig,
    last: Option<Cosigned>,
    new: &HubCheckpoint,
    kind: EvidenceKind,
    consistency_proof: Vec<String>,
) -> anyhow::Result<Outcome> {
    let last = last.context("a refusal needs a cosigned checkpoint")?;
    let e = Evidence {
        format: EVIDENCE_FORMAT.to_owned(),
        kind,
        origin: hub.origin.clone(),
        hub_key: hex::encode(hub.key),
        witness: shared.key.public().to_vkey(),
        observed_at_s: now_s(),
        cosigned: last.note.clone(),
        conflicting: note::render(&new.body, std::slice::from_ref(&new.hub_signature)),
        consistency_proof,
    };
    let index = match kind {
        EvidenceKind::SplitView => 0,
        EvidenceKind::Rollback => 1,
        EvidenceKind::Inconsistent => 2,
    };
    shared.counters[&hub.origin].refused[index].fetch_add(1, Ordering::Relaxed);
    if shared.state.put_evidence(&e)? {
        error!(
            origin = %hub.origin,
            kind = kind.as_str(),
            cosigned_size = last.size,
            served_size = new.size,
            evidence = %e.id(),
            "Hub misbehaviour: checkpoint refused, evidence kept (operator action needed)"
        );
        shared.evidence.write().unwrap_or_else(|e| e.into_inner()).push(e);
    }
    Ok(Outcome::Refused(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_cosigns_growth_only_and_names_each_misbehaviour() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(judge(None, 5, &a), Judgement::First);
        assert_eq!(judge(Some((5, a)), 5, &a), Judgement::Unchanged);
        assert_eq!(judge(Some((5, a)), 5, &b), Judgement::SplitView);
        assert_eq!(judge(Some((5, a)), 4, &a), Judgement::Rollback);
        assert_eq!(judge(Some((5, a)), 9, &b), Judgement::NeedsProof { from: 5 });
    }

    #[test]
    fn a_hub_is_origin_key_url() {
        let h: HubConfig = format!("mpp-hub/a,{},http://127.0.0.1:1", "ab".repeat(32)).parse().unwrap();
        assert_eq!(h.origin, "mpp-hub/a");
        assert_eq!(h.url, "http://127.0.0.1:1");
        assert!("mpp-hub/a,abc,http://x".parse::<HubConfig>().is_err());
        assert!("mpp-hub/a".parse::<HubConfig>().is_err());
    }
}
