//! The province registrar's tool: key files, registry statements signed
//! with the registrar's Ed25519 key, and their publication on
//! [`REGISTRY_SUBJECT`] (docs/OPERATIONS.md "Participant registry").
//!
//! The registrar's private key is meant to stay offline: [`sign_registry`]
//! and [`sign_revocation`] need only files, and write signed statements to
//! a file (each a length-delimited `mpp.v1.SignedRegistryStatement`) that
//! [`publish`] later sends from a machine that reaches NATS.
//!
//! # Registry file
//!
//! ```toml
//! [[participant]]
//! id = "dukcapil"                 # the agency_id of its envelopes
//! kind = "agency"                 # or "front_office"
//! category = "daerah"             # daerah, pusat, vertikal, bumn, bumd, swasta
//! regions = ["1771"]              # MPP regions it serves
//! services_from_catalogue = "../catalogue/dukcapil.toml"  # every [[service]] id, every event type
//! services = { kk = ["application_filed", "issued"] }     # and/or listed; "*" = every event type
//!
//! [[participant.follow]]         # other participants' events it may follow on its cases
//! participant = "dpmptsp"
//! service = "pbg"
//! event_types = ["issued"]        # application event types only
//!
//! [[participant.key]]
//! public_key_file = "keys/dukcapil.key.pub"   # relative to this file
//! valid_from_ms = 0                           # default: 0
//! valid_until_ms = 4102444800000              # default: 2100-01-01
//! ```

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use mpp_agency_kit::signing::{read_public_key, read_seed};
use mpp_core::checkpoint::KeyId;
use mpp_core::event::EventKind;
use mpp_core::registry::{statement_signed_bytes, REGISTRY_SUBJECT, STATEMENT_SCHEMA_VERSION};
use mpp_proto::v1 as pb;
use pb::registry_statement::Body;
use prost::Message as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Deserialize;

/// Default end of a key's validity: 2100-01-01T00:00:00Z, Unix ms.
pub const VALID_UNTIL_MS_DEFAULT: i64 = 4_102_444_800_000;

/// Most statements in one statements file.
pub const STATEMENTS_PER_FILE_MAX: usize = 10_000;

/// Largest statements or registry file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// How long one statement's PubAck may take, in milliseconds.
pub const PUBACK_TIMEOUT_MS: u64 = 10_000;

/// The registrar's signing key.
pub struct Registrar {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar").field("public_key", &hex::encode(self.public_key())).finish()
    }
}

impl Registrar {
    /// The registrar with this private key seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        match Ed25519KeyPair::from_seed_unchecked(seed) {
            Ok(pair) => Registrar { pair },
            Err(_) => unreachable!("ring refuses no 32-byte Ed25519 seed"),
        }
    }

    /// Loads the registrar's private key file (the kit's key file format).
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self::from_seed(&read_seed(path)?))
    }

    /// The registrar's public key (what the hub's `--registrar-key-file` holds).
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// Signs a statement body under a fresh UUIDv7 statement id.
    pub fn sign(&self, body: Body, issued_at_ms: i64) -> pb::SignedRegistryStatement {
        let statement = pb::RegistryStatement {
            schema_version: STATEMENT_SCHEMA_VERSION,
            statement_id: uuid::Uuid::now_v7().hyphenated().to_string(),
            issued_at_ms,
            body: Some(body),
        }
        .encode_to_vec();
        let signature = self.pair.sign(&statement_signed_bytes(&statement)).as_ref().to_vec();
        pb::SignedRegistryStatement { statement, registrar_public_key: self.public_key().to_vec(), signature }
    }
}

/// A statement registering a participant.
pub fn registration(
    id: &str,
    kind: &str,
    category: &str,
    regions: &[&str],
    services: &[(&str, &[EventKind])],
) -> Body {
    Body::ParticipantRegistered(pb::ParticipantRegistered {
        participant_id: id.to_owned(),
        kind: kind.to_owned(),
        category: category.to_owned(),
        region_codes: regions.iter().map(|r| (*r).to_owned()).collect(),
        services: services
            .iter()
            .map(|(s, kinds)| pb::RegisteredService {
                service_id: (*s).to_owned(),
                event_types: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
            })
            .collect(),
        follows: vec![],
    })
}

/// A statement registering a participant that may follow other
/// participants' events: `follows` lists (participant, service, event
/// types) (see `mpp.v1.FollowGrant`).
pub fn registration_following(
    id: &str,
    kind: &str,
    category: &str,
    regions: &[&str],
    services: &[(&str, &[EventKind])],
    follows: &[(&str, &str, &[EventKind])],
) -> Body {
    let mut body = registration(id, kind, category, regions, services);
    if let Body::ParticipantRegistered(p) = &mut body {
        p.follows = follows
            .iter()
            .map(|(participant, service, kinds)| pb::FollowGrant {
                participant_id: (*participant).to_owned(),
                service_id: (*service).to_owned(),
                event_types: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
            })
            .collect();
    }
    body
}

/// A statement adding a signing key.
pub fn key_added(participant: &str, public_key: &[u8; 32], valid_from_ms: i64, valid_until_ms: i64) -> Body {
    Body::SigningKeyAdded(pb::SigningKeyAdded {
        participant_id: participant.to_owned(),
        public_key: public_key.to_vec(),
        valid_from_ms,
        valid_until_ms,
    })
}

/// A statement revoking a signing key.
pub fn key_revoked(participant: &str, key_id: &KeyId) -> Body {
    Body::SigningKeyRevoked(pb::SigningKeyRevoked {
        participant_id: participant.to_owned(),
        key_id: key_id.0.to_vec(),
    })
}

/// The event types an agency publishes: everything but the front office's
/// case-level events.
pub fn agency_event_types() -> Vec<EventKind> {
    EventKind::ALL.iter().copied().filter(|k| !k.is_case_event()).collect()
}

/// The event types a front office publishes: the case-level events.
pub fn front_office_event_types() -> Vec<EventKind> {
    EventKind::ALL.iter().copied().filter(|k| k.is_case_event()).collect()
}

/// The registry file (see the module docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// The participants.
    #[serde(default)]
    pub participant: Vec<ParticipantEntry>,
}

/// One participant of the registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantEntry {
    /// Its id.
    pub id: String,
    /// `agency` or `front_office`.
    pub kind: String,
    /// Its category.
    pub category: String,
    /// MPP regions it serves.
    pub regions: Vec<String>,
    /// A service catalogue whose service ids it may publish, each with
    /// every event type (an agency's counter opens a case when the citizen
    /// comes to it first).
    #[serde(default)]
    pub services_from_catalogue: Option<PathBuf>,
    /// Services and their event types (`"*"`: every type).
    #[serde(default)]
    pub services: BTreeMap<String, Vec<String>>,
    /// Other participants' events it may follow (default: none).
    #[serde(default)]
    pub follow: Vec<FollowEntry>,
    /// Its keys.
    #[serde(default)]
    pub key: Vec<KeyEntry>,
}

/// One follow grant of a participant (`mpp.v1.FollowGrant`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowEntry {
    /// The participant followed.
    pub participant: String,
    /// Its service.
    pub service: String,
    /// The application event types.
    pub event_types: Vec<String>,
}

/// One key of a participant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The public key file (64 hex digits), relative to the registry file.
    pub public_key_file: PathBuf,
    /// Start of validity, Unix ms.
    #[serde(default)]
    pub valid_from_ms: i64,
    /// End of validity, Unix ms.
    #[serde(default = "valid_until_default")]
    pub valid_until_ms: i64,
}

fn valid_until_default() -> i64 {
    VALID_UNTIL_MS_DEFAULT
}

#[derive(Deserialize)]
struct Catalogue {
    service: Vec<CatalogueService>,
}

#[derive(Deserialize)]
struct CatalogueService {
    id: String,
}

fn read_text(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if len > FILE_BYTES_MAX {
        bail!("{} is larger than {FILE_BYTES_MAX} bytes", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Signs the statements of a registry file: for each participant its
/// registration, then each of its keys.
pub fn sign_registry(
    registrar: &Registrar,
    registry_file: &Path,
    now_ms: i64,
) -> Result<Vec<pb::SignedRegistryStatement>> {
    let base = registry_file.parent().unwrap_or(Path::new("."));
    let file: RegistryFile = toml::from_str(&read_text(registry_file)?)
        .with_context(|| format!("parsing {}", registry_file.display()))?;
    let mut out = Vec::new();
    for p in &file.participant {
        let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(cat) = &p.services_from_catalogue {
            let path = base.join(cat);
            let c: Catalogue = toml::from_str(&read_text(&path)?)
                .with_context(|| format!("parsing the catalogue {}", path.display()))?;
            for s in c.service {
                services.insert(s.id, EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect());
            }
        }
        for (s, types) in &p.services {
            let types = if types.iter().any(|t| t == "*") {
                EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect()
            } else {
                types.clone()
            };
            services.insert(s.clone(), types);
        }
        let body = Body::ParticipantRegistered(pb::ParticipantRegistered {
            participant_id: p.id.clone(),
            kind: p.kind.clone(),
            category: p.category.clone(),
            region_codes: p.regions.clone(),
            services: services
                .into_iter()
                .map(|(service_id, event_types)| pb::RegisteredService { service_id, event_types })
                .collect(),
            follows: p
                .follow
                .iter()
                .map(|f| pb::FollowGrant {
                    participant_id: f.participant.clone(),
                    service_id: f.service.clone(),
                    event_types: f.event_types.clone(),
                })
                .collect(),
        });
        out.push(registrar.sign(body, now_ms));
        for k in &p.key {
            let public_key = read_public_key(&base.join(&k.public_key_file))?;
            out.push(
                registrar.sign(key_added(&p.id, &public_key, k.valid_from_ms, k.valid_until_ms), now_ms),
            );
        }
    }
    Ok(out)
}

/// Signs the revocation of a participant's key.
pub fn sign_revocation(
    registrar: &Registrar,
    participant: &str,
    key_id: &KeyId,
    now_ms: i64,
) -> pb::SignedRegistryStatement {
    registrar.sign(key_revoked(participant, key_id), now_ms)
}

/// Writes statements to a file (each length-delimited).
pub fn write_statements(path: &Path, statements: &[pb::SignedRegistryStatement]) -> Result<()> {
    let mut buf = Vec::new();
    for s in statements {
        s.encode_length_delimited(&mut buf).context("encoding a statement")?;
    }
    std::fs::write(path, buf).with_context(|| format!("writing {}", path.display()))
}

/// Reads a statements file.
pub fn read_statements(path: &Path) -> Result<Vec<pb::SignedRegistryStatement>> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if len > FILE_BYTES_MAX {
        bail!("{} is larger than {FILE_BYTES_MAX} bytes", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = bytes.as_slice();
    let mut out = Vec::new();
    while !buf.is_empty() {
        if out.len() >= STATEMENTS_PER_FILE_MAX {
            bail!("{} holds more than {STATEMENTS_PER_FILE_MAX} statements", path.display());
        }
        out.push(
            pb::SignedRegistryStatement::decode_length_delimited(&mut buf)
                .with_context(|| format!("{} is not a statements file", path.display()))?,
        );
    }
    Ok(out)
}

/// The statement id inside a signed statement (its `Nats-Msg-Id`).
pub fn statement_id(s: &pb::SignedRegistryStatement) -> Result<String> {
    Ok(pb::RegistryStatement::decode(s.statement.as_slice()).context("decoding a statement")?.statement_id)
}

/// Publishes statements in order on [`REGISTRY_SUBJECT`], each with
/// `Nats-Msg-Id` = its statement id, waiting for each PubAck.
pub async fn publish(client: &async_nats::Client, statements: &[pb::SignedRegistryStatement]) -> Result<()> {
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_millis(PUBACK_TIMEOUT_MS))
        .build(client.clone());
    for s in statements {
        let id = statement_id(s)?;
        let msg = PublishMessage::build()
            .payload(Bytes::from(s.encode_to_vec()))
            .message_id(&id)
            .expected_stream(mpp_agency_kit::STREAM_NAME);
        js.send_publish(REGISTRY_SUBJECT, msg)
            .await
            .with_context(|| format!("publishing statement {id}"))?
            .await
            .with_context(|| format!("the PubAck of statement {id}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_file_signs_registrations_then_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("dukcapil.key");
        mpp_agency_kit::signing::generate_key_file(&key).unwrap();
        std::fs::write(
            dir.path().join("cat.toml"),
            "[[service]]\nid = \"kk\"\n[[service]]\nid = \"ktp-el\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("registry.toml"),
            "[[participant]]\nid = \"dukcapil\"\nkind = \"agency\"\ncategory = \"daerah\"\nregions = [\"1771\"]\n\
             services_from_catalogue = \"cat.toml\"\nservices = { extra = [\"*\"] }\n\
             [[participant.key]]\npublic_key_file = \"dukcapil.key.pub\"\n",
        )
        .unwrap();
        let r = Registrar::from_seed(&[3; 32]);
        let signed = sign_registry(&r, &dir.path().join("registry.toml"), 1).unwrap();
        assert_eq!(signed.len(), 2);
        let out = dir.path().join("s.bin");
        write_statements(&out, &signed).unwrap();
        assert_eq!(read_statements(&out).unwrap(), signed);
        let first = pb::RegistryStatement::decode(signed[0].statement.as_slice()).unwrap();
        let Some(Body::ParticipantRegistered(p)) = first.body else { panic!("{first:?}") };
        let ids: Vec<&str> = p.services.iter().map(|s| s.service_id.as_str()).collect();
        assert_eq!(ids, ["extra", "kk", "ktp-el"]);
        assert_eq!(p.services[0].event_types.len(), EventKind::ALL.len());
    }
}
