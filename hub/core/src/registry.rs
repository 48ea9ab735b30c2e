//! The participant registry, kept in the log (docs/DESIGN.md "Trust
//! boundaries").
//!
//! The province's registrar signs statements ([`Statement`]): a
//! participant's registration (kind, category, the MPP regions it serves,
//! the services it may publish and the event types of each), and the
//! addition and revocation of its event-signing keys. Statements travel on
//! [`REGISTRY_SUBJECT`] of the events stream and the hub judges each one
//! like any message: [`validate_statement`] (fields), then
//! [`decide_statement`] against the [`Registry`] so far, then the
//! infallible [`apply_statement`]. The registry is therefore a fold over the
//! log like the cases, and replay, rebuild, export and audit see its whole
//! history.
//!
//! # When the rules apply
//!
//! [`Registry::in_force`] is false until the first registry statement is
//! accepted: before it, events are judged exactly as they were before the
//! registry existed (so an existing log replays byte for byte). From that
//! entry on, [`admit`] judges every event's participant, signature,
//! service, event type and region before anything else.
//!
//! The registrar's own signature is checked by the caller (the ledger holds
//! the registrar keys the hub is configured with), before
//! [`decide_statement`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::checkpoint::KeyId;
use crate::event::{Envelope, EventKind};
use crate::hold::Holds;
use crate::ids::{AgencyId, EventId, RegionCode, ServiceId};
use crate::log::EntryMeta;
use crate::reason::{ReasonCode, Rejection};
use crate::signature::{BatchClaim, SignatureVerifier};

/// The subject registry statements are published on. Inside the events
/// stream's `mpp.events.>`, so no stream or consumer changes, and never a
/// valid event subject (`mpp.events.<agency>.<service>` has four tokens).
pub const REGISTRY_SUBJECT: &str = "mpp.events.registry";

/// The participant id no registry statement may register: an agency of this
/// name would be granted `mpp.events.redrive.>` (`crate::redrive`) by the
/// NATS configs' pattern.
pub const RESERVED_PARTICIPANT_ID: &str = "redrive";

/// Domain prefix of the registrar's signed message: the signature covers
/// this followed by the encoded `mpp.v1.RegistryStatement`.
pub const STATEMENT_DOMAIN: &[u8] = b"mpp-registry-statement/v1\0";

/// The registry statement schema this core understands.
pub const STATEMENT_SCHEMA_VERSION: u32 = 1;

/// Most registered participants (`REGISTRY_LIMIT_EXCEEDED`).
pub const PARTICIPANTS_MAX: usize = 1024;

/// Most signing keys one participant may ever have had, revoked and expired
/// ones included: they stay in the registry so old signatures still verify
/// (`REGISTRY_LIMIT_EXCEEDED`).
pub const KEYS_PER_PARTICIPANT_MAX: usize = 64;

/// Most MPP regions one participant serves (Indonesia has 514 regencies
/// and cities) (`REGISTRY_LIMIT_EXCEEDED`).
pub const REGIONS_PER_PARTICIPANT_MAX: usize = 600;

/// Most services one participant may publish (`REGISTRY_LIMIT_EXCEEDED`).
pub const SERVICES_PER_PARTICIPANT_MAX: usize = 64;

/// Most follow grants (other participants' services) one participant may
/// hold (`REGISTRY_LIMIT_EXCEEDED`): every service of a few dozen partner
/// agencies.
pub const FOLLOWS_PER_PARTICIPANT_MAX: usize = 64;

/// Whether a participant receives citizens (opens cases) or serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ParticipantKind {
    /// An MPP's front office: opens cases, keeps citizens' data keys.
    FrontOffice,
    /// An agency service.
    Agency,
}

impl ParticipantKind {
    /// Every kind.
    pub const ALL: &'static [ParticipantKind] = &[ParticipantKind::FrontOffice, ParticipantKind::Agency];

    /// Stable name: `front_office`, `agency`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::FrontOffice => "front_office",
            ParticipantKind::Agency => "agency",
        }
    }

    /// Parses the stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// The categories of MPP participants the law names (Perpres 89/2021).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// A regional government office (dinas of the province or kabupaten/kota).
    Daerah,
    /// A central government ministry or agency.
    Pusat,
    /// A vertical office: a regional unit of a central agency.
    Vertikal,
    /// A state-owned enterprise (Badan Usaha Milik Negara).
    Bumn,
    /// A regional government-owned enterprise (Badan Usaha Milik Daerah).
    Bumd,
    /// A private firm.
    Swasta,
}

impl Category {
    /// Every category.
    pub const ALL: &'static [Category] = &[
        Category::Daerah,
        Category::Pusat,
        Category::Vertikal,
        Category::Bumn,
        Category::Bumd,
        Category::Swasta,
    ];

    /// Stable name: `daerah`, `pusat`, `vertikal`, `bumn`, `bumd`, `swasta`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Daerah => "daerah",
            Category::Pusat => "pusat",
            Category::Vertikal => "vertikal",
            Category::Bumn => "bumn",
            Category::Bumd => "bumd",
            Category::Swasta => "swasta",
        }
    }

    /// Parses the stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// A registered event-signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// Valid for events recorded at or after this instant, Unix ms.
    pub valid_from_ms: i64,
    /// Valid for events recorded before this instant, Unix ms.
    pub valid_until_ms: i64,
    /// Log sequence of the statement that added it.
    pub added_seq: u64,
    /// Log sequence of the statement that revoked it, if revoked.
    pub revoked_seq: Option<u64>,
}

/// What a participant is registered for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The participant (the `agency_id` of its envelopes).
    pub participant: AgencyId,
    /// Front office or agency.
    pub kind: ParticipantKind,
    /// Daerah, pusat, …
    pub category: Category,
    /// The MPP regions it serves.
    pub regions: BTreeSet<RegionCode>,
    /// The services it may publish, each with its event types.
    pub services: BTreeMap<ServiceId, BTreeSet<EventKind>>,
}

/// What a participant may follow of another's events on the cases where it
/// has an application (the hub's `CaseEventService`): one service of one
/// other participant, and which of its application event types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowGrant {
    /// The participant followed.
    pub participant: AgencyId,
    /// Its service.
    pub service: ServiceId,
    /// The application event types the follower may receive.
    pub event_types: BTreeSet<EventKind>,
}

impl FollowGrant {
    /// Whether the grant covers an event of this participant, service and
    /// type.
    pub fn covers(&self, participant: &AgencyId, service: &ServiceId, kind: EventKind) -> bool {
        self.participant == *participant && self.service == *service && self.event_types.contains(&kind)
    }
}

/// A registered participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Its current registration.
    pub registration: Registration,
    /// Every key it was ever given, by id.
    pub keys: BTreeMap<KeyId, SigningKey>,
    /// Log sequence of its first registration.
    pub registered_seq: u64,
    /// Log sequence of the last statement about it.
    pub updated_seq: u64,
}

impl Participant {
    /// Front office or agency (what issue 15's rules on who may do what to a
    /// case build on).
    pub fn kind(&self) -> ParticipantKind {
        self.registration.kind
    }
}

/// The registry: every participant, from the log's registry statements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Log sequence of the first accepted statement; `None` while the
    /// registry is not in force.
    pub since_seq: Option<u64>,
    /// Participants by id.
    pub participants: BTreeMap<AgencyId, Participant>,
    /// The applications held in cases not opened yet ([`crate::hold`]).
    pub holds: Holds,
    /// What each participant may follow of the others' events, from its
    /// latest registration; participants that follow nothing are absent.
    /// (Here rather than in [`Registration`], so that a registry stored
    /// before follow grants existed still decodes: they are its last field.)
    pub follows: BTreeMap<AgencyId, Vec<FollowGrant>>,
}

impl Registry {
    /// Whether the registry's rules apply (a statement was accepted).
    pub fn in_force(&self) -> bool {
        self.since_seq.is_some()
    }

    /// A participant, if registered.
    pub fn participant(&self, id: &AgencyId) -> Option<&Participant> {
        self.participants.get(id)
    }

    /// A participant's kind, if registered.
    pub fn kind_of(&self, id: &AgencyId) -> Option<ParticipantKind> {
        self.participant(id).map(Participant::kind)
    }

    /// What `id` may follow of the others' events (empty: nothing).
    pub fn follows_of(&self, id: &AgencyId) -> &[FollowGrant] {
        self.follows.get(id).map_or(&[], Vec::as_slice)
    }

    fn key_registered(&self, id: &KeyId, public_key: &[u8; 32]) -> bool {
        self.participants
            .values()
            .any(|p| p.keys.contains_key(id) || p.keys.values().any(|k| k.public_key == *public_key))
    }
}

/// A registry statement's body as decoded, nothing checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UncheckedStatementBody {
    /// See `mpp.v1.ParticipantRegistered`.
    ParticipantRegistered {
        /// Participant id.
        participant_id: String,
        /// Kind name.
        kind: String,
        /// Category name.
        category: String,
        /// Region codes.
        region_codes: Vec<String>,
        /// Services with their event type names.
        services: Vec<(String, Vec<String>)>,
        /// Follow grants: (participant, service, event type names).
        follows: Vec<(String, String, Vec<String>)>,
    },
    /// See `mpp.v1.SigningKeyAdded`.
    SigningKeyAdded {
        /// Participant id.
        participant_id: String,
        /// The public key.
        public_key: Vec<u8>,
        /// Start of validity, Unix ms.
        valid_from_ms: i64,
        /// End of validity, Unix ms.
        valid_until_ms: i64,
    },
    /// See `mpp.v1.SigningKeyRevoked`.
    SigningKeyRevoked {
        /// Participant id.
        participant_id: String,
        /// The key's id.
        key_id: Vec<u8>,
    },
}

/// A registry statement as decoded, nothing checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedStatement {
    /// See `mpp.v1.RegistryStatement`.
    pub schema_version: u32,
    /// See `mpp.v1.RegistryStatement`.
    pub statement_id: String,
    /// See `mpp.v1.RegistryStatement`.
    pub issued_at_ms: i64,
    /// `None` when the oneof was empty or of an unknown kind.
    pub body: Option<UncheckedStatementBody>,
}

/// A validated statement's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementBody {
    /// Registers a participant or replaces its registration and its follow
    /// grants (keys stay).
    ParticipantRegistered(Registration, Vec<FollowGrant>),
    /// Adds a signing key.
    SigningKeyAdded {
        /// The participant.
        participant: AgencyId,
        /// The public key.
        public_key: [u8; 32],
        /// Start of validity, Unix ms.
        valid_from_ms: i64,
        /// End of validity, Unix ms.
        valid_until_ms: i64,
    },
    /// Revokes a signing key.
    SigningKeyRevoked {
        /// The participant.
        participant: AgencyId,
        /// The key.
        key_id: KeyId,
    },
}

/// A validated registry statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The idempotency key (shares the event-id index).
    pub statement_id: EventId,
    /// When the registrar issued it (informational).
    pub issued_at_ms: i64,
    /// What it says.
    pub body: StatementBody,
}

impl Statement {
    /// The participant the statement is about.
    pub fn participant(&self) -> &AgencyId {
        match &self.body {
            StatementBody::ParticipantRegistered(r, _) => &r.participant,
            StatementBody::SigningKeyAdded { participant, .. }
            | StatementBody::SigningKeyRevoked { participant, .. } => participant,
        }
    }
}

fn malformed(what: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::MalformedRegistryStatement, what)
}

fn limit(what: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::RegistryLimitExceeded, what)
}

/// The bytes the registrar signs: [`STATEMENT_DOMAIN`] then the encoded
/// statement.
pub fn statement_signed_bytes(statement: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATEMENT_DOMAIN.len() + statement.len());
    out.extend_from_slice(STATEMENT_DOMAIN);
    out.extend_from_slice(statement);
    out
}

/// Field validation of a statement: ids, names and bounds. Independent of
/// the registry.
pub fn validate_statement(u: &UncheckedStatement) -> Result<Statement, Rejection> {
    if u.schema_version != STATEMENT_SCHEMA_VERSION {
        return Err(malformed(format!(
            "schema_version {} is not supported; this hub knows {STATEMENT_SCHEMA_VERSION}",
            u.schema_version
        )));
    }
    let statement_id =
        EventId::parse(&u.statement_id).map_err(|r| malformed(format!("statement_id: {}", r.detail)))?;
    let body = u.body.as_ref().ok_or_else(|| malformed("the statement has no body"))?;
    let participant = |s: &str| {
        if s == RESERVED_PARTICIPANT_ID {
            return Err(malformed(format!("participant_id {s:?} is reserved for operators' redrives")));
        }
        AgencyId::parse(s).map_err(|r| malformed(format!("participant_id: {}", r.detail)))
    };
    let body = match body {
        UncheckedStatementBody::ParticipantRegistered {
            participant_id,
            kind,
            category,
            region_codes,
            services,
            follows,
        } => {
            let kind = ParticipantKind::from_name(kind)
                .ok_or_else(|| malformed(format!("kind {kind:?} is not front_office or agency")))?;
            let category = Category::from_name(category).ok_or_else(|| {
                malformed(format!(
                    "category {category:?} is not one of daerah, pusat, vertikal, bumn, bumd, swasta"
                ))
            })?;
            if region_codes.len() > REGIONS_PER_PARTICIPANT_MAX {
                return Err(limit(format!(
                    "a participant serves at most {REGIONS_PER_PARTICIPANT_MAX} regions"
                )));
            }
            if services.len() > SERVICES_PER_PARTICIPANT_MAX {
                return Err(limit(format!(
                    "a participant publishes at most {SERVICES_PER_PARTICIPANT_MAX} services"
                )));
            }
            let mut regions = BTreeSet::new();
            for r in region_codes {
                let r = RegionCode::parse(r).map_err(|e| malformed(format!("region code: {}", e.detail)))?;
                if !regions.insert(r) {
                    return Err(malformed(format!("region {r} is listed twice")));
                }
            }
            let mut by_service = BTreeMap::new();
            for (service, types) in services {
                let service =
                    ServiceId::parse(service).map_err(|e| malformed(format!("service_id: {}", e.detail)))?;
                if types.len() > EventKind::ALL.len() {
                    return Err(malformed(format!("service {service} lists more event types than exist")));
                }
                let mut kinds = BTreeSet::new();
                for t in types {
                    let k = EventKind::from_name(t).ok_or_else(|| {
                        malformed(format!("event type {t:?} of service {service} is unknown"))
                    })?;
                    kinds.insert(k);
                }
                if by_service.insert(service.clone(), kinds).is_some() {
                    return Err(malformed(format!("service {service} is listed twice")));
                }
            }
            let registered = participant(participant_id)?;
            let follows = validate_follows(&registered, follows)?;
            StatementBody::ParticipantRegistered(
                Registration { participant: registered, kind, category, regions, services: by_service },
                follows,
            )
        }
        UncheckedStatementBody::SigningKeyAdded {
            participant_id,
            public_key,
            valid_from_ms,
            valid_until_ms,
        } => {
            let public_key: [u8; 32] = public_key
                .as_slice()
                .try_into()
                .map_err(|_| malformed(format!("public_key is {} bytes, not 32", public_key.len())))?;
            if valid_until_ms <= valid_from_ms {
                return Err(malformed("valid_until_ms must be after valid_from_ms"));
            }
            StatementBody::SigningKeyAdded {
                participant: participant(participant_id)?,
                public_key,
                valid_from_ms: *valid_from_ms,
                valid_until_ms: *valid_until_ms,
            }
        }
        UncheckedStatementBody::SigningKeyRevoked { participant_id, key_id } => {
            let key_id: [u8; 8] = key_id
                .as_slice()
                .try_into()
                .map_err(|_| malformed(format!("key_id is {} bytes, not 8", key_id.len())))?;
            StatementBody::SigningKeyRevoked {
                participant: participant(participant_id)?,
                key_id: KeyId(key_id),
            }
        }
    };
    Ok(Statement { statement_id, issued_at_ms: u.issued_at_ms, body })
}

/// The follow grants of `registered`'s statement, checked: at most
/// [`FOLLOWS_PER_PARTICIPANT_MAX`], each of another participant, a service
/// listed once per participant, and at least one event type, each an
/// application event (case-level and catalogue events, personal data among
/// them, are never followed).
fn validate_follows(
    registered: &AgencyId,
    follows: &[(String, String, Vec<String>)],
) -> Result<Vec<FollowGrant>, Rejection> {
    if follows.len() > FOLLOWS_PER_PARTICIPANT_MAX {
        return Err(limit(format!(
            "a participant holds at most {FOLLOWS_PER_PARTICIPANT_MAX} follow grants"
        )));
    }
    let mut out: Vec<FollowGrant> = Vec::with_capacity(follows.len());
    for (followed, service, types) in follows {
        let followed = AgencyId::parse(followed)
            .map_err(|r| malformed(format!("follow grant participant_id: {}", r.detail)))?;
        if followed == *registered {
            return Err(malformed(format!("{registered} cannot be granted to follow itself")));
        }
        let service = ServiceId::parse(service)
            .map_err(|r| malformed(format!("follow grant service_id: {}", r.detail)))?;
        if out.iter().any(|g| g.participant == followed && g.service == service) {
            return Err(malformed(format!("the follow grant of {followed}/{service} is listed twice")));
        }
        if types.is_empty() || types.len() > EventKind::ALL.len() {
            return Err(malformed(format!(
                "the follow grant of {followed}/{service} must list between 1 and {} event types",
                EventKind::ALL.len()
            )));
        }
        let mut event_types = BTreeSet::new();
        for t in types {
            let k = EventKind::from_name(t).filter(|k| k.is_application_event()).ok_or_else(|| {
                malformed(format!(
                    "event type {t:?} of the follow grant of {followed}/{service} is not an application \
                         event type"
                ))
            })?;
            event_types.insert(k);
        }
        out.push(FollowGrant { participant: followed, service, event_types });
    }
    Ok(out)
}

/// Decides whether a (registrar-signed, validated) statement may be applied.
pub fn decide_statement(registry: &Registry, s: &Statement) -> Result<(), Rejection> {
    let id = s.participant();
    let unregistered =
        || Rejection::new(ReasonCode::UnregisteredParticipant, format!("participant {id} is not registered"));
    match &s.body {
        StatementBody::ParticipantRegistered(..) => {
            if registry.participant(id).is_none() && registry.participants.len() >= PARTICIPANTS_MAX {
                return Err(limit(format!("the registry holds at most {PARTICIPANTS_MAX} participants")));
            }
            Ok(())
        }
        StatementBody::SigningKeyAdded { public_key, .. } => {
            let p = registry.participant(id).ok_or_else(unregistered)?;
            let key_id = KeyId::of(public_key);
            if registry.key_registered(&key_id, public_key) {
                return Err(Rejection::new(
                    ReasonCode::SigningKeyExists,
                    format!("signing key {key_id} is already registered"),
                ));
            }
            if p.keys.len() >= KEYS_PER_PARTICIPANT_MAX {
                return Err(limit(format!("a participant has at most {KEYS_PER_PARTICIPANT_MAX} keys")));
            }
            Ok(())
        }
        StatementBody::SigningKeyRevoked { key_id, .. } => {
            let p = registry.participant(id).ok_or_else(unregistered)?;
            let key = p.keys.get(key_id).ok_or_else(|| {
                Rejection::new(ReasonCode::UnknownSigningKey, format!("participant {id} has no key {key_id}"))
            })?;
            if key.revoked_seq.is_some() {
                return Err(Rejection::new(
                    ReasonCode::SigningKeyRevoked,
                    format!("key {key_id} of {id} is already revoked"),
                ));
            }
            Ok(())
        }
    }
}

/// Applies a statement [`decide_statement`] accepted.
pub fn apply_statement(registry: &mut Registry, s: &Statement, meta: EntryMeta) {
    registry.since_seq.get_or_insert(meta.seq);
    let id = s.participant().clone();
    match &s.body {
        StatementBody::ParticipantRegistered(r, follows) => {
            if follows.is_empty() {
                registry.follows.remove(&id);
            } else {
                registry.follows.insert(id.clone(), follows.clone());
            }
            let p = registry.participants.entry(id).or_insert_with(|| Participant {
                registration: r.clone(),
                keys: BTreeMap::new(),
                registered_seq: meta.seq,
                updated_seq: meta.seq,
            });
            p.registration = r.clone();
            p.updated_seq = meta.seq;
        }
        StatementBody::SigningKeyAdded { public_key, valid_from_ms, valid_until_ms, .. } => {
            if let Some(p) = registry.participants.get_mut(&id) {
                p.keys.insert(
                    KeyId::of(public_key),
                    SigningKey {
                        public_key: *public_key,
                        valid_from_ms: *valid_from_ms,
                        valid_until_ms: *valid_until_ms,
                        added_seq: meta.seq,
                        revoked_seq: None,
                    },
                );
                p.updated_seq = meta.seq;
            }
        }
        StatementBody::SigningKeyRevoked { key_id, .. } => {
            if let Some(p) = registry.participants.get_mut(&id) {
                if let Some(k) = p.keys.get_mut(key_id) {
                    k.revoked_seq.get_or_insert(meta.seq);
                }
                p.updated_seq = meta.seq;
            }
        }
    }
}

/// The signature an envelope came with, as far as the envelope alone tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeSignature {
    /// No signature field.
    Unsigned,
    /// A signature field of the wrong shape (`MALFORMED_SIGNATURE`).
    Malformed(Rejection),
    /// A well-formed signature: what it claims.
    Claim(BatchClaim),
}

/// Judges an event against a registry in force, before anything else about
/// it is decided: its participant is registered, it is signed by one of the
/// participant's keys valid at `recorded_at_ms` and not revoked, the
/// signature verifies, and the service, event type and region are in the
/// participant's registration. The first failing check gives the reason.
/// Always `Ok` while the registry is not in force.
pub fn admit(
    registry: &Registry,
    env: &Envelope,
    signature: &EnvelopeSignature,
    recorded_at_ms: i64,
    verifier: &dyn SignatureVerifier,
) -> Result<(), Rejection> {
    if !registry.in_force() {
        return Ok(());
    }
    let id = &env.agency;
    let p = registry.participant(id).ok_or_else(|| {
        Rejection::new(ReasonCode::UnregisteredParticipant, format!("participant {id} is not registered"))
    })?;
    let claim = match signature {
        EnvelopeSignature::Unsigned => {
            return Err(Rejection::new(ReasonCode::UnsignedEnvelope, "the envelope carries no signature"))
        }
        EnvelopeSignature::Malformed(r) => return Err(r.clone()),
        EnvelopeSignature::Claim(c) => c,
    };
    let key = p.keys.get(&claim.key_id).ok_or_else(|| {
        Rejection::new(ReasonCode::UnknownSigningKey, format!("participant {id} has no key {}", claim.key_id))
    })?;
    if let Some(seq) = key.revoked_seq {
        return Err(Rejection::new(
            ReasonCode::SigningKeyRevoked,
            format!("key {} of {id} was revoked at seq {seq}", claim.key_id),
        ));
    }
    if recorded_at_ms < key.valid_from_ms {
        return Err(Rejection::new(
            ReasonCode::SigningKeyNotYetValid,
            format!("key {} of {id} is valid from {} ms", claim.key_id, key.valid_from_ms),
        ));
    }
    if recorded_at_ms >= key.valid_until_ms {
        return Err(Rejection::new(
            ReasonCode::SigningKeyExpired,
            format!("key {} of {id} expired at {} ms", claim.key_id, key.valid_until_ms),
        ));
    }
    if !claim.verify(id.as_str(), &key.public_key, verifier) {
        return Err(Rejection::new(
            ReasonCode::BadSignature,
            format!("the signature does not verify under key {} of {id}", claim.key_id),
        ));
    }
    let r = &p.registration;
    let kinds = r.services.get(&env.service).ok_or_else(|| {
        Rejection::new(
            ReasonCode::ServiceNotRegistered,
            format!("{id} is not registered to publish service {}", env.service),
        )
    })?;
    let kind = env.body.kind();
    if !kinds.contains(&kind) {
        return Err(Rejection::new(
            ReasonCode::EventTypeNotRegistered,
            format!("{id} is not registered to publish {} for service {}", kind.as_str(), env.service),
        ));
    }
    if !r.regions.contains(&env.region) {
        return Err(Rejection::new(
            ReasonCode::RegionNotServed,
            format!("{id} is not registered to serve region {}", env.region),
        ));
    }
    Ok(())
}
