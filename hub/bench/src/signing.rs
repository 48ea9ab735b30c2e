//! The bench's participant registry and signatures: a bench registrar (a
//! fixed, public seed) registers every participant of the workload with a
//! signing key, and every envelope of the corpus is signed the way the
//! agencies' outbox relays sign, one Ed25519 signature per batch of one
//! participant's envelopes. The hubs the bench runs trust the registrar, so
//! they verify every signature, as a province's hub does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use mpp_agency_kit::signing::{EnvelopeSigner, ToSign};
use mpp_core::event::EventKind;
use mpp_core::ids::{AgencyId, RegionCode};
use mpp_core::registry::REGISTRY_SUBJECT;
use mpp_ledger::trust::Trust;
use mpp_proto::v1 as pb;
use mpp_registrar::{key_added, registration, statement_id, Registrar, VALID_UNTIL_MS_DEFAULT};
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::workload::{FRONT_OFFICE_SERVICE, REGION};

/// The bench registrar's private key seed (public: a benchmark only).
const BENCH_REGISTRAR_SEED: [u8; 32] = [0xbe; 32];

/// Stream messages signed together: each participant's envelopes among them
/// are one batch (split at 256), about what a busy relay sends at once
/// (it refills when half of its 256-entry window is free).
pub(crate) const SIGN_WINDOW_MESSAGES: usize = 1024;

/// One message to publish: subject, `Nats-Msg-Id`, payload.
pub(crate) type Outgoing = (String, String, Bytes);

fn registrar() -> Registrar {
    Registrar::from_seed(&BENCH_REGISTRAR_SEED)
}

/// What the bench's hubs trust.
pub(crate) fn trust() -> Trust {
    Trust::new(vec![registrar().public_key()])
}

/// The registrar's public key, 64 hex digits (for `mpp-bench-peer --registrar-key`).
pub(crate) fn registrar_key_hex() -> String {
    registrar().public_key().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the registrar's public key file (for `mpp-hub serve`) into `dir`.
pub(crate) fn write_registrar_key_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("registrar.pub");
    std::fs::write(&path, format!("{}\n", registrar_key_hex())).context("writing the registrar key file")?;
    Ok(path)
}

/// Every participant of the workload with its signing key.
#[derive(Debug)]
pub(crate) struct Signers {
    by_participant: BTreeMap<AgencyId, EnvelopeSigner>,
    services: BTreeMap<AgencyId, Vec<&'static str>>,
}

impl Signers {
    /// The agencies of the journeys and the front office of the bench's region.
    pub(crate) fn new() -> Result<Self> {
        let mut services: BTreeMap<AgencyId, Vec<&'static str>> = BTreeMap::new();
        for (a, s) in crate::workload::services() {
            services.entry(parse(a)?).or_default().push(s);
        }
        services.entry(parse(&format!("mpp-{REGION}"))?).or_default().push(FRONT_OFFICE_SERVICE);
        let by_participant = services
            .keys()
            .map(|p| {
                let seed: [u8; 32] = Sha256::digest(format!("mpp-bench-signing-key/{p}")).into();
                (p.clone(), EnvelopeSigner::from_seed(p.clone(), &seed))
            })
            .collect();
        Ok(Signers { by_participant, services })
    }

    /// The registry statements: each participant registered for its
    /// services (every event type) in `region`, with its key.
    pub(crate) fn statements(&self, region: RegionCode, now_ms: i64) -> Result<Vec<Outgoing>> {
        let registrar = registrar();
        let region = region.to_string();
        let mut out = Vec::new();
        for (p, signer) in &self.by_participant {
            let services: Vec<(&str, &[EventKind])> =
                self.services[p].iter().map(|s| (*s, EventKind::ALL)).collect();
            let kind = if p.as_str().starts_with("mpp-") { "front_office" } else { "agency" };
            for body in [
                registration(p.as_str(), kind, "daerah", &[region.as_str()], &services),
                key_added(p.as_str(), &signer.public_key(), 0, VALID_UNTIL_MS_DEFAULT),
            ] {
                let signed: pb::SignedRegistryStatement = registrar.sign(body, now_ms);
                let id = statement_id(&signed)?;
                out.push((REGISTRY_SUBJECT.to_owned(), id, Bytes::from(signed.encode_to_vec())));
            }
        }
        Ok(out)
    }

    /// The signing key of `participant`.
    pub(crate) fn signer_of(&self, participant: &str) -> Result<&EnvelopeSigner> {
        self.by_participant
            .iter()
            .find(|(p, _)| p.as_str() == participant)
            .map(|(_, s)| s)
            .ok_or_else(|| anyhow!("no bench signer for {participant}"))
    }

    /// Signs envelopes, in order: each participant's among them as one batch.
    pub(crate) fn sign(&self, envelopes: Vec<(String, pb::Envelope)>) -> Result<Vec<Outgoing>> {
        let mut batches: BTreeMap<&str, Vec<(usize, ToSign)>> = BTreeMap::new();
        let n = envelopes.len();
        for (i, (subject, env)) in envelopes.into_iter().enumerate() {
            let to_sign = ToSign { subject, event_id: env.event_id.clone(), payload: env.encode_to_vec() };
            let participant = self
                .by_participant
                .keys()
                .find(|p| p.as_str() == env.agency_id)
                .ok_or_else(|| anyhow!("no bench signer for {}", env.agency_id))?;
            batches.entry(participant.as_str()).or_default().push((i, to_sign));
        }
        let mut out: Vec<Option<Outgoing>> = vec![None; n];
        for (participant, batch) in batches {
            let signer = self.by_participant.iter().find(|(p, _)| p.as_str() == participant).map(|(_, s)| s);
            let signer = signer.ok_or_else(|| anyhow!("no bench signer for {participant}"))?;
            let (places, mut to_sign): (Vec<usize>, Vec<ToSign>) = batch.into_iter().unzip();
            signer.sign_batch(&mut to_sign);
            for (i, e) in places.into_iter().zip(to_sign) {
                out[i] = Some((e.subject, e.event_id, Bytes::from(e.payload)));
            }
        }
        out.into_iter().map(|o| o.ok_or_else(|| anyhow!("an envelope was not signed"))).collect()
    }
}

fn parse(id: &str) -> Result<AgencyId> {
    AgencyId::parse(id).map_err(|e| anyhow!("participant {id}: {e}"))
}
