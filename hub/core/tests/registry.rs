//! The participant registry: statements (validate, decide, apply) and the
//! rules every event meets once the registry is in force (`admit`), given /
//! when / then over the core alone, with a stand-in for Ed25519.

mod common;

use common::{app_event, envelope, fresh_event_id, standard, subject_of, AGENCY, RECORD_MS, SERVICE};
use mpp_core::checkpoint::KeyId;
use mpp_core::decide::EntryMeta;
use mpp_core::event::{Envelope, EventKind, UncheckedEnvelope};
use mpp_core::reason::ReasonCode;
use mpp_core::registry::{
    admit, apply_statement, decide_statement, validate_statement, EnvelopeSignature, ParticipantKind,
    Registry, Statement, UncheckedStatement, UncheckedStatementBody, KEYS_PER_PARTICIPANT_MAX,
};
use mpp_core::signature::{
    batch_message, batch_tree, claim, envelope_leaf, SignatureVerifier, UncheckedSignature,
};
use mpp_core::validate::validate;
use sha2::{Digest, Sha256};

/// A stand-in for Ed25519: the "signature" of a message under a public key
/// is SHA-256(public key || message) twice. Enough to tell a right signature
/// from a wrong one; the hub's tests use real Ed25519.
struct FakeEd25519;

fn fake_sign(public_key: &[u8; 32], message: &[u8]) -> [u8; 64] {
    let h: [u8; 32] = Sha256::new().chain_update(public_key).chain_update(message).finalize().into();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&h);
    sig[32..].copy_from_slice(&h);
    sig
}

impl SignatureVerifier for FakeEd25519 {
    fn verify_ed25519(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        fake_sign(public_key, message) == *signature
    }
}

const KEY: [u8; 32] = [0x11; 32];
const OTHER_KEY: [u8; 32] = [0x22; 32];
const DAY_MS: i64 = 86_400_000;

fn statement(body: UncheckedStatementBody) -> Statement {
    validate_statement(&UncheckedStatement {
        schema_version: 1,
        statement_id: fresh_event_id(),
        issued_at_ms: RECORD_MS,
        body: Some(body),
    })
    .expect("valid statement")
}

fn registration(participant: &str, services: &[(&str, &[EventKind])]) -> UncheckedStatementBody {
    UncheckedStatementBody::ParticipantRegistered {
        participant_id: participant.to_owned(),
        kind: "agency".to_owned(),
        category: "daerah".to_owned(),
        region_codes: vec!["1771".to_owned()],
        services: services
            .iter()
            .map(|(s, kinds)| ((*s).to_owned(), kinds.iter().map(|k| k.as_str().to_owned()).collect()))
            .collect(),
        follows: vec![],
    }
}

fn key_added(participant: &str, key: [u8; 32], from_ms: i64, until_ms: i64) -> UncheckedStatementBody {
    UncheckedStatementBody::SigningKeyAdded {
        participant_id: participant.to_owned(),
        public_key: key.to_vec(),
        valid_from_ms: from_ms,
        valid_until_ms: until_ms,
    }
}

/// A registry built from statements that must all be accepted, at log
/// sequences 1, 2, …
fn given(bodies: impl IntoIterator<Item = UncheckedStatementBody>) -> Registry {
    let mut reg = Registry::default();
    for (i, b) in bodies.into_iter().enumerate() {
        let s = statement(b);
        decide_statement(&reg, &s).unwrap_or_else(|r| panic!("given statement {i}: {r}"));
        apply_statement(&mut reg, &s, EntryMeta { seq: i as u64 + 1, recorded_at_ms: RECORD_MS });
    }
    reg
}

/// Dukcapil registered for `kk` (application events and standards) with
/// [`KEY`] valid for a year around [`RECORD_MS`].
fn registered() -> Registry {
    let kinds: Vec<EventKind> = EventKind::ALL.iter().copied().filter(|k| !k.is_case_event()).collect();
    given([
        registration(AGENCY, &[(SERVICE, &kinds)]),
        key_added(AGENCY, KEY, RECORD_MS - DAY_MS, RECORD_MS + 365 * DAY_MS),
    ])
}

/// The envelope signed as the only member of a batch under `key`.
fn signed(u: &UncheckedEnvelope, key: &[u8; 32]) -> (Envelope, EnvelopeSignature) {
    let subject = subject_of(u);
    let env = validate(&subject, u, RECORD_MS).expect("valid envelope");
    let leaf = envelope_leaf(&u.event_id, &u.agency_id, &subject, b"payload");
    let tree = batch_tree(&[leaf]).unwrap();
    let key_id = KeyId::of(key);
    let sig = fake_sign(key, &batch_message(&u.agency_id, &key_id, 1, &tree.root));
    let unchecked = UncheckedSignature {
        key_id: key_id.0.to_vec(),
        batch_size: 1,
        leaf_index: 0,
        path: vec![],
        signature: sig.to_vec(),
    };
    (env, EnvelopeSignature::Claim(claim(&leaf, &unchecked).unwrap()))
}

fn when_admitted(
    reg: &Registry,
    env: &Envelope,
    sig: &EnvelopeSignature,
    at_ms: i64,
) -> Result<(), ReasonCode> {
    admit(reg, env, sig, at_ms, &FakeEd25519).map_err(|r| r.code)
}

#[test]
fn an_empty_registry_admits_everything_as_before() {
    let u = app_event(1, "A-1", EventKind::ReviewStarted);
    let env = validate(&subject_of(&u), &u, RECORD_MS).unwrap();
    assert!(!Registry::default().in_force());
    assert_eq!(when_admitted(&Registry::default(), &env, &EnvelopeSignature::Unsigned, RECORD_MS), Ok(()));
}

#[test]
fn a_registered_participant_with_a_valid_signature_is_admitted() {
    let reg = registered();
    assert!(reg.in_force());
    assert_eq!(reg.since_seq, Some(1));
    assert_eq!(reg.kind_of(&mpp_core::AgencyId::parse(AGENCY).unwrap()), Some(ParticipantKind::Agency));
    let (env, sig) = signed(&app_event(1, "A-1", EventKind::ReviewStarted), &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Ok(()));
    let (env, sig) = signed(&standard(), &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Ok(()));
}

#[test]
fn each_attack_gets_its_own_reason() {
    let reg = registered();
    let ev = app_event(1, "A-1", EventKind::ReviewStarted);
    // An unregistered participant, however well signed.
    let (env, sig) = signed(&common::app_event_by("bpn", "shm", 1, "A-1", EventKind::ReviewStarted), &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::UnregisteredParticipant));
    // Unsigned.
    let (env, _) = signed(&ev, &KEY);
    assert_eq!(
        when_admitted(&reg, &env, &EnvelopeSignature::Unsigned, RECORD_MS),
        Err(ReasonCode::UnsignedEnvelope)
    );
    // A key the participant does not have.
    let (env, sig) = signed(&ev, &OTHER_KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::UnknownSigningKey));
    // The right key id, a signature made with another key.
    let (env, sig) = signed(&ev, &KEY);
    let EnvelopeSignature::Claim(mut forged) = sig.clone() else { unreachable!() };
    forged.signature = fake_sign(&OTHER_KEY, b"anything");
    assert_eq!(
        when_admitted(&reg, &env, &EnvelopeSignature::Claim(forged), RECORD_MS),
        Err(ReasonCode::BadSignature)
    );
    // The signature of another root (an altered envelope leads elsewhere).
    let EnvelopeSignature::Claim(mut moved) = sig.clone() else { unreachable!() };
    moved.root[0] ^= 1;
    assert_eq!(
        when_admitted(&reg, &env, &EnvelopeSignature::Claim(moved), RECORD_MS),
        Err(ReasonCode::BadSignature)
    );
    // Outside the key's validity.
    assert_eq!(
        when_admitted(&reg, &env, &sig, RECORD_MS - 2 * DAY_MS),
        Err(ReasonCode::SigningKeyNotYetValid)
    );
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS + 366 * DAY_MS), Err(ReasonCode::SigningKeyExpired));
    // A service, an event type, a region outside the registration.
    let (env, sig) = signed(&common::app_event_by(AGENCY, "ktp", 1, "A-1", EventKind::ReviewStarted), &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::ServiceNotRegistered));
    let (env, sig) =
        signed(&envelope(AGENCY, SERVICE, Some(1), None, common::body(EventKind::CaseOpened)), &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::EventTypeNotRegistered));
    let mut other_region = ev.clone();
    other_region.region_code = "1705".to_owned();
    other_region.case_id =
        mpp_core::TrackingNumber::new(mpp_core::RegionCode::parse("1705").unwrap(), 1).unwrap().to_string();
    let (env, sig) = signed(&other_region, &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::RegionNotServed));
}

#[test]
fn a_revoked_key_is_refused_from_its_revocation_on_and_a_new_key_works() {
    let mut reg = registered();
    let ev = app_event(1, "A-1", EventKind::ReviewStarted);
    let revoke = statement(UncheckedStatementBody::SigningKeyRevoked {
        participant_id: AGENCY.to_owned(),
        key_id: KeyId::of(&KEY).0.to_vec(),
    });
    assert_eq!(decide_statement(&reg, &revoke), Ok(()));
    apply_statement(&mut reg, &revoke, EntryMeta { seq: 3, recorded_at_ms: RECORD_MS });
    let (env, sig) = signed(&ev, &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::SigningKeyRevoked));
    // Revoking twice, or re-adding the revoked key, is refused.
    assert_eq!(decide_statement(&reg, &revoke).map_err(|r| r.code), Err(ReasonCode::SigningKeyRevoked));
    let again = statement(key_added(AGENCY, KEY, RECORD_MS, RECORD_MS + DAY_MS));
    assert_eq!(decide_statement(&reg, &again).map_err(|r| r.code), Err(ReasonCode::SigningKeyExists));
    // Rotation: a new key is added and works.
    let rotate = statement(key_added(AGENCY, OTHER_KEY, RECORD_MS, RECORD_MS + DAY_MS));
    assert_eq!(decide_statement(&reg, &rotate), Ok(()));
    apply_statement(&mut reg, &rotate, EntryMeta { seq: 4, recorded_at_ms: RECORD_MS });
    let (env, sig) = signed(&ev, &OTHER_KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Ok(()));
}

#[test]
fn statements_about_unknown_participants_and_keys_are_refused() {
    let reg = registered();
    let s = statement(key_added("bpn", OTHER_KEY, 0, 1));
    assert_eq!(decide_statement(&reg, &s).map_err(|r| r.code), Err(ReasonCode::UnregisteredParticipant));
    let s = statement(UncheckedStatementBody::SigningKeyRevoked {
        participant_id: AGENCY.to_owned(),
        key_id: KeyId::of(&OTHER_KEY).0.to_vec(),
    });
    assert_eq!(decide_statement(&reg, &s).map_err(|r| r.code), Err(ReasonCode::UnknownSigningKey));
    // Another participant cannot be given a key someone already holds.
    let mut reg = reg;
    let bpn = statement(registration("bpn", &[]));
    apply_statement(&mut reg, &bpn, EntryMeta { seq: 3, recorded_at_ms: RECORD_MS });
    let s = statement(key_added("bpn", KEY, 0, 1));
    assert_eq!(decide_statement(&reg, &s).map_err(|r| r.code), Err(ReasonCode::SigningKeyExists));
}

#[test]
fn a_participant_holds_a_bounded_number_of_keys() {
    let mut reg = registered();
    for i in 1..KEYS_PER_PARTICIPANT_MAX {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let s = statement(key_added(AGENCY, k, 0, 1));
        assert_eq!(decide_statement(&reg, &s), Ok(()), "key {i}");
        apply_statement(&mut reg, &s, EntryMeta { seq: 2 + i as u64, recorded_at_ms: RECORD_MS });
    }
    let s = statement(key_added(AGENCY, [0xee; 32], 0, 1));
    assert_eq!(decide_statement(&reg, &s).map_err(|r| r.code), Err(ReasonCode::RegistryLimitExceeded));
}

#[test]
fn malformed_statements_are_named() {
    let ok = UncheckedStatement {
        schema_version: 1,
        statement_id: fresh_event_id(),
        issued_at_ms: RECORD_MS,
        body: Some(registration(AGENCY, &[(SERVICE, &[EventKind::Issued])])),
    };
    assert!(validate_statement(&ok).is_ok());
    let with_body = |b: UncheckedStatementBody| UncheckedStatement { body: Some(b), ..ok.clone() };
    let bad = [
        UncheckedStatement { schema_version: 2, ..ok.clone() },
        UncheckedStatement { statement_id: "nope".into(), ..ok.clone() },
        UncheckedStatement { body: None, ..ok.clone() },
        with_body(UncheckedStatementBody::ParticipantRegistered {
            participant_id: AGENCY.into(),
            kind: "bank".into(),
            category: "daerah".into(),
            region_codes: vec![],
            services: vec![],
            follows: vec![],
        }),
        with_body(UncheckedStatementBody::ParticipantRegistered {
            participant_id: AGENCY.into(),
            kind: "agency".into(),
            category: "daerah".into(),
            region_codes: vec!["17".into()],
            services: vec![],
            follows: vec![],
        }),
        with_body(registration(AGENCY, &[(SERVICE, &[]), (SERVICE, &[])])),
        with_body(UncheckedStatementBody::ParticipantRegistered {
            participant_id: AGENCY.into(),
            kind: "agency".into(),
            category: "daerah".into(),
            region_codes: vec![],
            services: vec![(SERVICE.into(), vec!["teleported".into()])],
            follows: vec![],
        }),
        with_body(key_added(AGENCY, KEY, 5, 5)),
        with_body(UncheckedStatementBody::SigningKeyAdded {
            participant_id: AGENCY.into(),
            public_key: vec![1; 31],
            valid_from_ms: 0,
            valid_until_ms: 1,
        }),
        with_body(UncheckedStatementBody::SigningKeyRevoked {
            participant_id: AGENCY.into(),
            key_id: vec![1; 9],
        }),
        with_body(registration("Not A Slug", &[])),
    ];
    for u in bad {
        assert_eq!(
            validate_statement(&u).map_err(|r| r.code),
            Err(ReasonCode::MalformedRegistryStatement),
            "{u:?}"
        );
    }
}

#[test]
fn a_new_registration_replaces_services_and_keeps_keys() {
    let mut reg = registered();
    let s = statement(registration(AGENCY, &[("ktp", &[EventKind::Issued])]));
    assert_eq!(decide_statement(&reg, &s), Ok(()));
    apply_statement(&mut reg, &s, EntryMeta { seq: 3, recorded_at_ms: RECORD_MS });
    let p = reg.participant(&mpp_core::AgencyId::parse(AGENCY).unwrap()).unwrap();
    assert_eq!(p.keys.len(), 1);
    assert_eq!(p.registered_seq, 1);
    assert_eq!(p.updated_seq, 3);
    let (env, sig) = signed(&app_event(1, "A-1", EventKind::ReviewStarted), &KEY);
    assert_eq!(when_admitted(&reg, &env, &sig, RECORD_MS), Err(ReasonCode::ServiceNotRegistered));
}

/// `registration` with follow grants.
fn registration_following(participant: &str, follows: &[(&str, &str, &[&str])]) -> UncheckedStatementBody {
    let mut body = registration(participant, &[(SERVICE, &[EventKind::Issued])]);
    if let UncheckedStatementBody::ParticipantRegistered { follows: f, .. } = &mut body {
        *f = follows
            .iter()
            .map(|(p, s, types)| {
                ((*p).to_owned(), (*s).to_owned(), types.iter().map(|t| (*t).to_owned()).collect())
            })
            .collect();
    }
    body
}

#[test]
fn follow_grants_are_checked_kept_per_participant_and_replaced_by_a_new_registration() {
    let mut reg = Registry::default();
    let grant = statement(registration_following("pln", &[("dpmptsp", "pbg", &["issued", "rejected"])]));
    assert!(decide_statement(&reg, &grant).is_ok());
    apply_statement(&mut reg, &grant, EntryMeta { seq: 1, recorded_at_ms: RECORD_MS });
    let pln = mpp_core::ids::AgencyId::parse("pln").unwrap();
    let follows = reg.follows_of(&pln);
    assert_eq!(follows.len(), 1);
    let (dpm, pbg) =
        (mpp_core::ids::AgencyId::parse("dpmptsp").unwrap(), mpp_core::ids::ServiceId::parse("pbg").unwrap());
    assert!(follows[0].covers(&dpm, &pbg, EventKind::Issued));
    assert!(!follows[0].covers(&dpm, &pbg, EventKind::FeeAssessed));
    assert!(reg.follows_of(&mpp_core::ids::AgencyId::parse("dpmptsp").unwrap()).is_empty());
    // A registration without grants takes them away.
    let plain = statement(registration_following("pln", &[]));
    apply_statement(&mut reg, &plain, EntryMeta { seq: 2, recorded_at_ms: RECORD_MS });
    assert!(reg.follows_of(&pln).is_empty() && reg.follows.is_empty());

    let too_many: Vec<(String, String, Vec<String>)> = (0..=mpp_core::registry::FOLLOWS_PER_PARTICIPANT_MAX)
        .map(|i| ("dpmptsp".to_owned(), format!("svc-{i}"), vec!["issued".to_owned()]))
        .collect();
    let mut many = registration_following("pln", &[]);
    if let UncheckedStatementBody::ParticipantRegistered { follows, .. } = &mut many {
        *follows = too_many;
    }
    let bad: [(UncheckedStatementBody, ReasonCode); 7] = [
        (
            registration_following("pln", &[("pln", "pasang-baru", &["issued"])]),
            ReasonCode::MalformedRegistryStatement,
        ),
        (
            registration_following("pln", &[("dpmptsp", "pbg", &["personal_data_sealed"])]),
            ReasonCode::MalformedRegistryStatement,
        ),
        (
            registration_following("pln", &[("dpmptsp", "pbg", &["case_opened"])]),
            ReasonCode::MalformedRegistryStatement,
        ),
        (registration_following("pln", &[("dpmptsp", "pbg", &[])]), ReasonCode::MalformedRegistryStatement),
        (
            registration_following(
                "pln",
                &[("dpmptsp", "pbg", &["issued"]), ("dpmptsp", "pbg", &["rejected"])],
            ),
            ReasonCode::MalformedRegistryStatement,
        ),
        (
            registration_following("pln", &[("DPM", "pbg", &["issued"])]),
            ReasonCode::MalformedRegistryStatement,
        ),
        (many, ReasonCode::RegistryLimitExceeded),
    ];
    for (body, code) in bad {
        let u = UncheckedStatement {
            schema_version: 1,
            statement_id: fresh_event_id(),
            issued_at_ms: RECORD_MS,
            body: Some(body),
        };
        assert_eq!(validate_statement(&u).unwrap_err().code, code, "{u:?}");
    }
}
