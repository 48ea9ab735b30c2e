//! Auditing: Merkle proofs against signed checkpoints on a real sled store
//! filled through the ledger, forgeries rejected, replay filters, a case as
//! of any point, the signing key's files, and the audit gRPC service's
//! token check.
//!
//! The log comes from a generated stream (seeded; the seed is printed, and
//! `AUDIT_SEED=<n>` replays one) of standards, cases, happy-path and random
//! events of two agencies, garbage and resends, committed in random batch
//! sizes with a checkpoint signed every few entries.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mpp_audit::audit::{self, AsOf, ReplayFilter, VerifyError};
use mpp_core::checkpoint::{Origin, SignatureError, SignedCheckpoint};
use mpp_core::ids::{AgencyId, RegionCode, TrackingNumber};
use mpp_core::log::Verdict;
use mpp_core::merkle::ProofError;
use mpp_core::rng::Rng;
use mpp_core::{Case, EventBody, EventKind, LogEntry, UncheckedEnvelope};
use mpp_ledger::ledger::{self, Ledger, RawMessage};
use mpp_ledger::signer::{self, CheckpointPolicy, Checkpointer, KeyError, Signer};
use mpp_store::{MemStore, SledStore, Store};
use mpp_test_support::wait_until;
use mpp_wire as wire;
use prost::Message as _;

/// Time of record of stream message 1, Unix ns.
const T0_NS: i64 = 1_750_000_000_000_000_000;
/// Spacing of stream timestamps: one second.
const STEP_NS: i64 = 1_000_000_000;
/// Messages in a generated stream.
const MESSAGES: usize = 320;
/// A checkpoint every this many entries.
const CHECKPOINT_EVERY: u64 = 17;

fn seeds() -> Vec<u64> {
    match std::env::var("AUDIT_SEED") {
        Ok(s) => vec![s.parse().expect("AUDIT_SEED is a number")],
        Err(_) => vec![1, 2],
    }
}

fn tn(serial: u64) -> TrackingNumber {
    TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
}

/// A canonical UUIDv7 text, unique per `n`.
fn event_id(n: u64) -> String {
    let ms = 1_750_000_000_000u64 + n;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7{:03x}-{:04x}-{:012x}", &hex[..8], &hex[8..], n & 0xfff, 0x8000 | (n & 0x3fff), n)
}

/// The two agencies' services; application `app-i` belongs to `SERVICES[i]`.
const SERVICES: [(&str, &str); 2] = [("dukcapil", "kk"), ("pdam", "sambungan-baru")];

fn app_body(kind: u64) -> EventBody {
    let docs = vec!["KTP".to_owned()];
    match kind {
        0 => EventBody::ApplicationFiled { documents: docs },
        1 => EventBody::ReviewStarted,
        2 => EventBody::FeeAssessed {
            amount_idr: 50_000,
            payment_channel: "Bank Bengkulu".to_owned(),
            billing_code: "B-1".to_owned(),
            due_at_ms: 0,
        },
        3 => EventBody::PaymentReceived { amount_idr: 50_000, payment_reference: "P-1".to_owned() },
        4 => EventBody::AppointmentScheduled {
            kind: "inspection".to_owned(),
            at_ms: T0_NS / 1_000_000 + 86_400_000,
            place: "Loket 1".to_owned(),
        },
        5 => EventBody::Issued { document_number: "D-1".to_owned() },
        6 => EventBody::Collected,
        7 => EventBody::DocumentsRequested {
            documents: vec!["KK".to_owned()],
            counter: "Loket 2".to_owned(),
            note: String::new(),
        },
        _ => EventBody::Withdrawn { reason: "atas permintaan pemohon".to_owned() },
    }
}

/// The generated stream (stream sequences 1..=MESSAGES, one second apart).
fn stream(seed: u64) -> Vec<RawMessage> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<RawMessage> = Vec::new();
    let mut versions = [0u32; 2];
    let mut cursor = BTreeMap::<(u64, u64), u64>::new();
    let push = |out: &mut Vec<RawMessage>, subject: String, payload: Bytes| {
        let seq = out.len() as u64 + 1;
        out.push(RawMessage {
            stream_seq: seq,
            stream_time_ns: T0_NS + seq as i64 * STEP_NS,
            subject,
            payload,
            redrive: None,
        });
    };
    let envelope = |n: u64, case: Option<u64>, app: Option<u64>, svc: usize, body: EventBody| {
        let (agency, service) = SERVICES[svc];
        let u = UncheckedEnvelope {
            schema_version: 1,
            event_id: event_id(n),
            case_id: case.map(|c| tn(c).to_string()).unwrap_or_default(),
            region_code: "1771".to_owned(),
            agency_id: agency.to_owned(),
            service_id: service.to_owned(),
            application_id: app.map(|a| format!("app-{a}")).unwrap_or_default(),
            occurred_at_ms: T0_NS / 1_000_000,
            officer: "petugas-7".to_owned(),
            body: Some(body),
        };
        (format!("mpp.events.{agency}.{service}"), Bytes::from(wire::from_unchecked(&u).encode_to_vec()))
    };
    let standard = |v: u32| EventBody::ServiceStandardPublished {
        name_id: "Layanan".to_owned(),
        name_en: "Service".to_owned(),
        completion_working_days: 2 + v,
        fee_idr: 0,
        requirements: vec!["KTP".to_owned()],
        fiktif_positif: v % 2 == 0,
        version: v,
        collection: None,
    };
    let mut n = 0u64;
    while out.len() < MESSAGES {
        n += 1;
        let (subject, payload) = match (out.len(), rng.below(100)) {
            (0 | 1, _) => {
                let svc = out.len();
                versions[svc] += 1;
                envelope(n, None, None, svc, standard(versions[svc]))
            }
            (2..=4, _) | (_, 0..=7) => {
                let case = if out.len() <= 4 { out.len() as u64 - 1 } else { 1 + rng.below(8) };
                let body = EventBody::CaseOpened { pin_verifier: vec![7; 32], nik_keyed_hash: vec![9; 32] };
                envelope(n, Some(case), None, 0, body)
            }
            (_, 8..=12) => {
                let svc = rng.below(2) as usize;
                versions[svc] += 1;
                envelope(n, None, None, svc, standard(versions[svc]))
            }
            (_, 13..=19) => {
                let garbage = vec![0xff; 1 + rng.below(40) as usize];
                (format!("mpp.events.{}.x", SERVICES[rng.below(2) as usize].0), Bytes::from(garbage))
            }
            (_, 20..=24) => {
                let earlier = out[rng.below(out.len() as u64) as usize].clone();
                (earlier.subject, earlier.payload)
            }
            (_, 25..=39) => {
                let (case, app) = (1 + rng.below(8), rng.below(2));
                envelope(n, Some(case), Some(app), app as usize, app_body(rng.below(9)))
            }
            _ => {
                let (case, app) = (1 + rng.below(4), rng.below(2));
                let at = cursor.entry((case, app)).or_default();
                let kind = *at % 7;
                *at += 1;
                envelope(n, Some(case), Some(app), app as usize, app_body(kind))
            }
        };
        push(&mut out, subject, payload);
    }
    out
}

fn test_signer() -> Arc<Signer> {
    Arc::new(Signer::from_seed(&[42; 32], Origin::for_hub("test").unwrap()).unwrap())
}

/// A sled store with the whole stream, committed in random batch sizes, and
/// a checkpoint signed every [`CHECKPOINT_EVERY`] entries.
struct Filled {
    _dir: tempfile::TempDir,
    store: SledStore,
    msgs: Vec<RawMessage>,
    signer: Arc<Signer>,
    checkpoints: Vec<SignedCheckpoint>,
}

fn filled(seed: u64) -> Filled {
    eprintln!("seed {seed} (AUDIT_SEED={seed} replays it)");
    let msgs = stream(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_cache(dir.path(), 8 * 1024 * 1024).unwrap();
    let mut ledger = Ledger::open(store.clone()).unwrap();
    let signer = test_signer();
    let policy = CheckpointPolicy { every_entries: CHECKPOINT_EVERY, every_ms: 86_400_000 };
    let mut ckp = Checkpointer::new(signer.clone(), policy, Arc::new(|| 1_750_000_000_000), &store).unwrap();
    let mut rng = Rng::new(seed ^ 0xabcd);
    let mut at = 0usize;
    while at < msgs.len() {
        let len = (1 + rng.below(12) as usize).min(msgs.len() - at);
        ledger.commit_batch(&msgs[at..at + len]).unwrap();
        ckp.maybe_checkpoint(&ledger, Instant::now()).unwrap();
        at += len;
    }
    ckp.finish(&ledger, Instant::now()).unwrap();
    let checkpoints: Vec<_> = store.checkpoints(0, u64::MAX).map(Result::unwrap).collect();
    Filled { _dir: dir, store, msgs, signer, checkpoints }
}

/// Lookups over `store` for the gRPC services' tests.
fn test_lookups(store: &SledStore) -> mpp_lookup::lookup::Lookups {
    mpp_lookup::lookup::Lookups::new(
        store.clone(),
        Arc::new(mpp_core::CalendarSet::new()),
        Arc::new(|| 1_760_000_000_000),
        mpp_core::pin::PinPepper::insecure_dev(),
        mpp_lookup::ratelimit::LookupLimits { per_minute: 60, burst: 20 },
    )
}

/// `msg` with `authorization: Bearer <token>` when a token is given.
fn with<T>(token: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn all_entries(store: &impl Store) -> Vec<LogEntry> {
    store.entries(1).map(Result::unwrap).collect()
}

#[test]
fn checkpoints_follow_the_policy_and_verify_with_the_public_key() {
    for seed in seeds() {
        let f = filled(seed);
        let public_key = f.signer.public_key();
        let head = f.store.head().unwrap();
        assert_eq!(head.last_seq, MESSAGES as u64);
        // One per CHECKPOINT_EVERY entries or so, and one of the final head.
        assert!(f.checkpoints.len() as u64 >= head.last_seq / (CHECKPOINT_EVERY + 12));
        assert_eq!(f.checkpoints.last().map(|c| c.checkpoint.tree_size), Some(head.last_seq));
        for pair in f.checkpoints.windows(2) {
            let (a, b) = (&pair[0].checkpoint, &pair[1].checkpoint);
            assert!(b.tree_size - a.tree_size >= CHECKPOINT_EVERY || b.tree_size == head.last_seq);
            b.check_follows(a).unwrap();
        }
        for cp in &f.checkpoints {
            audit::verify_signature(&public_key, cp).unwrap();
            // The text form carries the same checkpoint and signature (the
            // C2SP note is the other text form, SignedCheckpoint::to_note).
            let back = SignedCheckpoint::parse_text(&cp.to_text()).unwrap();
            assert_eq!((&back.checkpoint, back.signature), (&cp.checkpoint, cp.signature));
            assert!(cp.note.is_some() && back.note.is_none());
        }
        // The chain, the tree and every stored checkpoint agree with the log.
        assert_eq!(ledger::verify_chain(&f.store).unwrap(), head.last_seq);
        // Tampering with any field, or the signature, is caught.
        let good = f.checkpoints[0].clone();
        let mut tampered = Vec::new();
        for i in 0..5 {
            let mut t = good.clone();
            match i {
                0 => t.checkpoint.tree_size += 1,
                1 => t.checkpoint.root_hash[5] ^= 1,
                2 => t.checkpoint.last_stream_seq += 1,
                3 => t.checkpoint.signed_at_ms += 1,
                _ => t.signature[0] ^= 1,
            }
            tampered.push(t);
        }
        for t in &tampered {
            assert_eq!(audit::verify_signature(&public_key, t), Err(SignatureError::Invalid));
        }
        // Another key: refused by key id, and by signature when the id is forged.
        let other = Signer::from_seed(&[43; 32], Origin::for_hub("test").unwrap()).unwrap();
        assert!(matches!(
            audit::verify_signature(&other.public_key(), &good),
            Err(SignatureError::KeyMismatch { .. })
        ));
        let mut forged = good.clone();
        forged.checkpoint.key_id = other.key_id();
        assert_eq!(audit::verify_signature(&other.public_key(), &forged), Err(SignatureError::Invalid));
    }
}

#[test]
fn inclusion_and_consistency_proofs_verify_and_forgeries_fail() {
    for seed in seeds() {
        let f = filled(seed);
        let key = f.signer.public_key();
        let entries = all_entries(&f.store);
        let mut rng = Rng::new(seed ^ 0x1234);
        for _ in 0..40 {
            let cp = &f.checkpoints[rng.below(f.checkpoints.len() as u64) as usize];
            audit::verify_signature(&key, cp).unwrap();
            let c = &cp.checkpoint;
            let seq = 1 + rng.below(c.tree_size);
            let (entry, proof) = audit::inclusion_proof(&f.store, seq, c.tree_size).unwrap();
            assert_eq!(entry, entries[seq as usize - 1]);
            // The auditor recomputes the hash from the record.
            let entry = LogEntry::decode(&entry.encode()).unwrap();
            audit::verify_inclusion_of(seq, &entry.hash, &proof, c).unwrap();
            // Forged: another entry's hash, another position, a changed path.
            let other = &entries[(seq as usize) % entries.len()];
            assert!(audit::verify_inclusion_of(seq, &other.hash, &proof, c).is_err());
            if c.tree_size > 1 {
                let elsewhere = seq % c.tree_size + 1;
                assert!(audit::verify_inclusion_of(elsewhere, &entry.hash, &proof, c).is_err());
            }
            if !proof.is_empty() {
                let mut bent = proof.clone();
                let i = rng.below(bent.len() as u64) as usize;
                bent[i][rng.below(32) as usize] ^= 1;
                assert_eq!(
                    audit::verify_inclusion_of(seq, &entry.hash, &bent, c),
                    Err(ProofError::RootMismatch)
                );
                assert!(audit::verify_inclusion_of(seq, &entry.hash, &proof[1..], c).is_err());
            }
            // Past the tree size: a question, not a proof.
            assert!(audit::inclusion_proof(&f.store, c.tree_size + 1, c.tree_size).is_err());

            let other_cp = &f.checkpoints[rng.below(f.checkpoints.len() as u64) as usize];
            let (old, new) = if other_cp.checkpoint.tree_size <= c.tree_size {
                (&other_cp.checkpoint, c)
            } else {
                (c, &other_cp.checkpoint)
            };
            let proof = audit::consistency_proof(&f.store, old.tree_size, new.tree_size).unwrap();
            audit::verify_checkpoints_consistent(old, new, &proof).unwrap();
            if old.tree_size < new.tree_size {
                let mut bent = proof.clone();
                bent[0][0] ^= 1;
                assert!(matches!(
                    audit::verify_checkpoints_consistent(old, new, &bent),
                    Err(VerifyError::Proof(_))
                ));
                // A checkpoint of a forked log (another root at the old size).
                let mut fork = old.clone();
                fork.root_hash[0] ^= 1;
                assert!(audit::verify_checkpoints_consistent(&fork, new, &proof).is_err());
                // Newer and older swapped: a rollback.
                assert!(matches!(
                    audit::verify_checkpoints_consistent(new, old, &proof),
                    Err(VerifyError::Order(_))
                ));
            }
        }
        assert!(audit::consistency_proof(&f.store, 10, 9).is_err());
        assert!(audit::consistency_proof(&f.store, 1, MESSAGES as u64 + 1).is_err());
    }
}

#[test]
fn receipts_prove_accepted_events_against_the_latest_checkpoint() {
    let f = filled(seeds()[0]);
    let key = f.signer.public_key();
    let entries = all_entries(&f.store);
    let mut receipts = 0;
    for e in entries.iter().filter(|e| e.verdict == Verdict::Accepted).step_by(7) {
        let env = mpp_proto::v1::Envelope::decode(e.payload.as_slice()).unwrap();
        let id = mpp_core::ids::EventId::parse(&env.event_id).unwrap();
        let r = audit::receipt(&f.store, &id).unwrap().expect("an accepted event has a receipt");
        assert_eq!((r.seq, r.entry_hash), (e.seq, e.hash));
        assert_eq!(r.checkpoint.as_ref(), f.checkpoints.last());
        audit::verify_receipt(&key, &r).unwrap();
        let mut bad = r.clone();
        bad.entry_hash[0] ^= 1;
        assert!(matches!(audit::verify_receipt(&key, &bad), Err(VerifyError::Proof(_))));
        let mut bad = r.clone();
        if let Some(c) = bad.checkpoint.as_mut() {
            c.checkpoint.tree_size += 1;
        }
        assert!(matches!(audit::verify_receipt(&key, &bad), Err(VerifyError::Signature(_))));
        receipts += 1;
    }
    assert!(receipts >= 5, "too few accepted events: {receipts}");
    // A never-accepted id has no receipt.
    let unknown = mpp_core::ids::EventId::parse(&event_id(999_999)).unwrap();
    assert_eq!(audit::receipt(&f.store, &unknown).unwrap(), None);
}

#[test]
fn replay_filters_select_exactly_the_matching_entries() {
    let f = filled(seeds()[0]);
    let entries = all_entries(&f.store);
    let kind_of = |e: &LogEntry| {
        mpp_proto::v1::Envelope::decode(e.payload.as_slice())
            .ok()
            .and_then(|env| wire::to_unchecked(&env).body.map(|b| b.kind()))
    };
    let case_of = |e: &LogEntry| {
        mpp_proto::v1::Envelope::decode(e.payload.as_slice())
            .ok()
            .and_then(|env| TrackingNumber::parse(&env.case_id).ok())
    };
    let filters = [
        ReplayFilter::default(),
        ReplayFilter { agency: Some(AgencyId::parse("pdam").unwrap()), ..Default::default() },
        ReplayFilter { verdict: Some(Verdict::Rejected), ..Default::default() },
        ReplayFilter { verdict: Some(Verdict::Duplicate), ..Default::default() },
        ReplayFilter { case: Some(tn(2)), ..Default::default() },
        ReplayFilter { event_type: Some(EventKind::FeeAssessed), ..Default::default() },
        ReplayFilter {
            agency: Some(AgencyId::parse("dukcapil").unwrap()),
            case: Some(tn(1)),
            event_type: Some(EventKind::ApplicationFiled),
            verdict: Some(Verdict::Accepted),
        },
    ];
    for filter in filters {
        let (from, to) = (20u64, 300u64);
        let got: Vec<u64> =
            audit::replay(&f.store, from, to, filter.clone()).map(|e| e.unwrap().seq).collect();
        let want: Vec<u64> = entries
            .iter()
            .filter(|e| (from..=to).contains(&e.seq))
            .filter(|e| filter.verdict.is_none_or(|v| v == e.verdict))
            .filter(|e| {
                filter.agency.as_ref().is_none_or(|a| e.subject.starts_with(&format!("mpp.events.{a}.")))
            })
            .filter(|e| filter.case.is_none_or(|c| case_of(e) == Some(c)))
            .filter(|e| filter.event_type.is_none_or(|k| kind_of(e) == Some(k)))
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, want, "{filter:?}");
        if filter != ReplayFilter::default()
            && filter.case.is_none()
            && filter.event_type != Some(EventKind::FeeAssessed)
        {
            assert!(!want.is_empty(), "the stream should hold entries for {filter:?}");
        }
    }
    // Ranges: past the head is empty; one entry is one entry.
    assert_eq!(audit::replay(&f.store, 400, u64::MAX, ReplayFilter::default()).count(), 0);
    assert_eq!(audit::replay(&f.store, 7, 7, ReplayFilter::default()).count(), 1);
}

#[test]
fn a_case_as_of_any_point_equals_the_projection_at_that_point() {
    let seed = seeds()[0];
    let f = filled(seed);
    // The reference: the same stream, one message per commit, the cases
    // snapshotted after each entry.
    let mem = MemStore::new();
    let mut reference = Ledger::open(mem.clone()).unwrap();
    let cases: Vec<TrackingNumber> = (1..=8).map(tn).collect();
    let mut history: Vec<BTreeMap<TrackingNumber, Case>> = vec![BTreeMap::new()];
    for m in &f.msgs {
        reference.commit_batch(std::slice::from_ref(m)).unwrap();
        history.push(cases.iter().filter_map(|t| mem.case(t).unwrap().map(|c| (*t, c))).collect());
    }
    let mut opened = 0;
    for t in &cases {
        let live = f.store.case(t).unwrap();
        assert_eq!(audit::case_at(&f.store, t, AsOf::Seq(u64::MAX)).unwrap(), live);
        if live.is_none() {
            continue;
        }
        opened += 1;
        for (seq, snapshot) in history.iter().enumerate() {
            let want = snapshot.get(t);
            let got = audit::case_at(&f.store, t, AsOf::Seq(seq as u64)).unwrap();
            assert_eq!(got.as_ref(), want, "case {t} at seq {seq}");
            // Entry `seq` was recorded at T0 + seq seconds.
            let at_ms = (T0_NS + seq as i64 * STEP_NS) / 1_000_000;
            if seq % 5 == 0 {
                assert_eq!(audit::case_at(&f.store, t, AsOf::TimeMs(at_ms)).unwrap().as_ref(), want);
                assert_eq!(audit::case_at(&f.store, t, AsOf::TimeMs(at_ms + 999)).unwrap().as_ref(), want);
            }
        }
    }
    assert!(opened >= 4, "too few cases opened: {opened}");
    // Standards changed while applications were filed, so filing terms
    // differ between applications: the fold must have used each one's own.
    let versions: std::collections::BTreeSet<u32> = cases
        .iter()
        .filter_map(|t| f.store.case(t).unwrap())
        .flat_map(|c| c.applications.into_iter().map(|a| a.standard_version))
        .collect();
    assert!(versions.len() >= 2, "filing terms never changed: {versions:?}");
}

#[test]
fn the_key_is_created_owner_only_and_a_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::for_hub("bengkulu").unwrap();
    let first = Signer::load_or_create(dir.path(), origin.clone()).unwrap();
    let private = signer::private_key_path(dir.path());
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(dir.path().join(signer::KEYS_DIR)).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // The public key is exported as hex, and the same key loads again.
    assert_eq!(signer::read_public_key(dir.path()).unwrap(), first.public_key());
    let text = std::fs::read_to_string(signer::public_key_path(dir.path())).unwrap();
    assert_eq!(text, format!("{}\n", hex::encode(first.public_key())));
    let again = Signer::load_or_create(dir.path(), origin.clone()).unwrap();
    assert_eq!(again.public_key(), first.public_key());
    // Two hubs get two keys.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Signer::load_or_create(other_dir.path(), origin.clone()).unwrap();
    assert_ne!(other.public_key(), first.public_key());
    // A group- or world-readable private key stops the hub.
    for loose in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(loose)).unwrap();
        match Signer::load_or_create(dir.path(), origin.clone()) {
            Err(KeyError::TooOpen { mode, .. }) => assert_eq!(mode, loose),
            other => panic!("mode {loose:o}: expected TooOpen, got {other:?}"),
        }
    }
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A public key file of another key is refused.
    std::fs::write(signer::public_key_path(dir.path()), format!("{}\n", hex::encode(other.public_key())))
        .unwrap();
    assert!(matches!(
        Signer::load_or_create(dir.path(), origin.clone()),
        Err(KeyError::PublicKeyMismatch { .. })
    ));
    // A missing one is written again.
    std::fs::remove_file(signer::public_key_path(dir.path())).unwrap();
    Signer::load_or_create(dir.path(), origin).unwrap();
    assert_eq!(signer::read_public_key(dir.path()).unwrap(), first.public_key());
}

/// The audit service over real gRPC: no token, a wrong token and a good one;
/// then paged replay, proofs and a case as of a point through the wire.
#[tokio::test]
async fn the_audit_service_needs_an_auditor_token() {
    use mpp_audit::audit_service::Audit;
    use mpp_audit::auth::AuditorAuth;
    use mpp_edge::auth::TokenTable;
    use mpp_proto::v1 as pb;
    use mpp_proto::v1::audit_service_client::AuditServiceClient;
    use mpp_proto::v1::audit_service_server::AuditServiceServer;

    let f = filled(seeds()[0]);
    let lookups = test_lookups(&f.store);
    // printf %s test | sha256sum
    let table =
        TokenTable::parse("bpk-3:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuditServiceServer::with_interceptor(
                Audit::new(lookups),
                AuditorAuth::new(Some(Arc::new(table))),
            ))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            }),
    );
    let mut client = AuditServiceClient::connect(format!("http://{addr}")).await.unwrap();
    for token in [None, Some("wrong")] {
        let err =
            client.get_latest_checkpoint(with(token, pb::GetLatestCheckpointRequest {})).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.metadata().get("mpp-reason-code").unwrap(), "UNAUTHENTICATED");
        let err = client.replay(with(token, pb::ReplayRequest::default())).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
    let ok = Some("test");
    let latest =
        client.get_latest_checkpoint(with(ok, pb::GetLatestCheckpointRequest {})).await.unwrap().into_inner();
    let cp = SignedCheckpoint::decode(&latest.encoded).unwrap();
    assert_eq!(Some(&cp), f.checkpoints.last());
    audit::verify_signature(&f.signer.public_key(), &cp).unwrap();

    // Replay in pages of 100: every entry once, in order.
    let mut seqs = Vec::new();
    let mut from = 1;
    loop {
        let req = pb::ReplayRequest { from_seq: from, max_entries: 100, ..Default::default() };
        let mut stream = client.replay(with(ok, req)).await.unwrap().into_inner();
        let mut page = 0;
        while let Some(e) = stream.message().await.unwrap() {
            seqs.push(e.seq);
            from = e.seq + 1;
            page += 1;
        }
        if page < 100 {
            break;
        }
    }
    assert_eq!(seqs, (1..=MESSAGES as u64).collect::<Vec<_>>());
    // A filtered replay through the wire.
    let req = pb::ReplayRequest {
        verdict: pb::Verdict::Rejected as i32,
        agency_id: "pdam".into(),
        ..Default::default()
    };
    let mut stream = client.replay(with(ok, req)).await.unwrap().into_inner();
    while let Some(e) = stream.message().await.unwrap() {
        assert_eq!(e.verdict, pb::Verdict::Rejected as i32);
        assert!(e.subject.starts_with("mpp.events.pdam."));
    }
    let bad = pb::ReplayRequest { max_entries: 10_001, ..Default::default() };
    assert_eq!(client.replay(with(ok, bad)).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // An inclusion proof by sequence, against the latest checkpoint.
    let req = pb::GetInclusionProofRequest {
        entry: Some(pb::get_inclusion_proof_request::Entry::Seq(5)),
        tree_size: 0,
    };
    let p = client.get_inclusion_proof(with(ok, req)).await.unwrap().into_inner();
    let proof: Vec<[u8; 32]> = p.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
    let hash: [u8; 32] = p.entry.unwrap().hash.as_slice().try_into().unwrap();
    audit::verify_inclusion_of(5, &hash, &proof, &cp.checkpoint).unwrap();
    // A consistency proof from the first checkpoint to the latest.
    let first = &f.checkpoints[0].checkpoint;
    let req = pb::GetConsistencyProofRequest { old_size: first.tree_size, new_size: 0 };
    let c = client.get_consistency_proof(with(ok, req)).await.unwrap().into_inner();
    let proof: Vec<[u8; 32]> = c.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
    audit::verify_checkpoints_consistent(first, &cp.checkpoint, &proof).unwrap();
    // A case as of a sequence; an unopened case is NOT_FOUND.
    let req = pb::GetCaseAtRequest {
        tracking_number: tn(1).to_string(),
        as_of: Some(pb::get_case_at_request::AsOf::Seq(MESSAGES as u64)),
    };
    let view = client.get_case_at(with(ok, req)).await.unwrap().into_inner();
    assert_eq!(view.last_seq, f.store.case(&tn(1)).unwrap().unwrap().last_seq);
    let req = pb::GetCaseAtRequest {
        tracking_number: tn(1).to_string(),
        as_of: Some(pb::get_case_at_request::AsOf::Seq(1)),
    };
    assert_eq!(client.get_case_at(with(ok, req)).await.unwrap_err().code(), tonic::Code::NotFound);
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

/// The writer thread signs by entries right after a commit, by time on a
/// tick, and the final head when it stops.
#[tokio::test]
async fn the_writer_signs_checkpoints_by_entries_by_time_and_at_the_end() {
    use mpp_ledger::ingest::Writer;
    let msgs = stream(seeds()[0]);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_cache(dir.path(), 8 * 1024 * 1024).unwrap();
    let ledger = Ledger::open(store.clone()).unwrap();
    let policy = CheckpointPolicy { every_entries: 10, every_ms: 200 };
    let ckp = Checkpointer::new(test_signer(), policy, Arc::new(|| 1_750_000_000_000), &store).unwrap();
    let writer = Writer::spawn_with_checkpoints(ledger, Some(ckp)).unwrap();
    let sizes = |store: &SledStore| -> Vec<u64> {
        store.checkpoints(0, u64::MAX).map(|c| c.unwrap().checkpoint.tree_size).collect()
    };
    let deadline = std::time::Duration::from_secs(10);
    let wait_for = |want: Vec<u64>| {
        let store = store.clone();
        async move {
            let what = format!("checkpoints {want:?}");
            wait_until(&what, deadline, || {
                let got = sizes(&store);
                let done = got == want;
                async move { Ok((done, got)) }
            })
            .await
            .unwrap();
        }
    };
    // 12 entries: due by entries at once.
    let before_first = Instant::now();
    writer.commit(msgs[..12].to_vec()).await.unwrap();
    wait_for(vec![12]).await;
    // 3 more: not due by entries (10), so only time (200 ms after the
    // first checkpoint, itself signed after `before_first`) signs them, on a tick.
    writer.commit(msgs[12..15].to_vec()).await.unwrap();
    wait_until("a time-based checkpoint", deadline, || {
        let got = sizes(&store);
        let done = got == [12, 15];
        if !done {
            writer.tick();
        }
        async move { Ok((done, got)) }
    })
    .await
    .unwrap();
    assert!(
        before_first.elapsed() >= std::time::Duration::from_millis(200),
        "signed before the time was due"
    );
    // Ticks without growth sign nothing; stopping signs the final head.
    writer.commit(msgs[15..17].to_vec()).await.unwrap();
    writer.join();
    assert_eq!(sizes(&store), vec![12, 15, 17]);
    assert_eq!(ledger::verify_chain(&store).unwrap(), 17);
}

/// Opens the directory with sled itself, waiting (with a deadline) for the
/// lock a just-dropped store may still hold.
fn raw_sled(dir: &std::path::Path) -> sled::Db {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A stored checkpoint or subtree hash altered behind the hub's back is
/// found by `verify_chain` (and `rebuild`), naming where.
#[test]
fn verify_chain_finds_altered_checkpoints_and_subtrees() {
    let Filled { _dir: dir, store, checkpoints, .. } = filled(seeds()[0]);
    drop(store);
    let victim = &checkpoints[2];
    {
        let db = raw_sled(dir.path());
        let mut key = b"K".to_vec();
        key.extend_from_slice(&victim.checkpoint.tree_size.to_be_bytes());
        let mut bad = victim.clone();
        bad.checkpoint.root_hash[0] ^= 1;
        db.insert(key, bad.encode()).unwrap();
        db.flush().unwrap();
    }
    {
        let store = SledStore::open(dir.path()).unwrap();
        let err = ledger::verify_chain(&store).unwrap_err();
        assert_eq!(err.seq, victim.checkpoint.tree_size, "{err}");
        assert!(err.what.contains("root hash"), "{err}");
        assert!(matches!(ledger::rebuild(&store), Err(ledger::LedgerError::Chain(_))));
    }
    {
        let db = raw_sled(dir.path());
        let mut key = b"K".to_vec();
        key.extend_from_slice(&victim.checkpoint.tree_size.to_be_bytes());
        db.insert(&key, victim.encode()).unwrap();
        // The second subtree of 64 leaves: completed by entry 128.
        let mut key = b"M".to_vec();
        key.push(mpp_store::STORED_SUBTREE_LEVEL_MIN as u8);
        key.extend_from_slice(&1u64.to_be_bytes());
        let mut hash = db.get(&key).unwrap().unwrap().to_vec();
        hash[0] ^= 1;
        db.insert(key, hash).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let err = ledger::verify_chain(&store).unwrap_err();
    assert_eq!(err.seq, 128, "{err}");
    assert!(err.what.contains("subtree"), "{err}");
}

/// The entries of `participant` (by subject) after `after`, as the verdict
/// feed must send them.
fn own_entries(store: &impl Store, participant: &str, after: u64) -> Vec<LogEntry> {
    all_entries(store)
        .into_iter()
        .filter(|e| e.seq > after && e.subject.starts_with(&format!("mpp.events.{participant}.")))
        .collect()
}

#[test]
fn verdict_feed_steps_give_each_participant_its_own_entries_once_from_any_cursor() {
    use mpp_audit::verdicts::scan_step_within;
    use mpp_proto::v1 as pb;

    let f = filled(seeds()[0]);
    let head = all_entries(&f.store).len() as u64;
    let mut rng = Rng::new(seeds()[0] ^ 0xfeed);
    for participant in ["dukcapil", "pdam", "bpn"] {
        for _ in 0..8 {
            let after = rng.below(head + 2);
            let (steps, batch) = (1 + rng.below(40) as usize, 1 + rng.below(20) as usize);
            let (mut got, mut cursor) = (Vec::new(), after);
            loop {
                let (found, scanned_to) =
                    scan_step_within(&f.store, participant, cursor, steps, batch).unwrap();
                assert!(found.len() <= batch, "a batch holds at most {batch}");
                assert!(found.iter().all(|v| v.seq > cursor && v.seq <= scanned_to));
                if scanned_to == cursor {
                    assert!(found.is_empty());
                    break;
                }
                cursor = scanned_to;
                got.extend(found);
            }
            assert_eq!(cursor, head.max(after), "the feed looked at every entry after {after}");
            let want = own_entries(&f.store, participant, after);
            assert_eq!(got.len(), want.len(), "{participant} after {after}: every own entry once");
            for (v, e) in got.iter().zip(&want) {
                assert_eq!(
                    (v.seq, v.entry_hash.as_slice(), v.subject.as_str()),
                    (e.seq, &e.hash[..], e.subject.as_str())
                );
                assert_eq!(v.reason_code, e.reason.map(|r| r.as_str()).unwrap_or(""));
                let verdict = match e.verdict {
                    Verdict::Accepted => pb::Verdict::Accepted,
                    Verdict::Rejected => pb::Verdict::Rejected,
                    Verdict::Duplicate => pb::Verdict::Duplicate,
                };
                assert_eq!(v.verdict, verdict as i32);
                let payload_id =
                    pb::Envelope::decode(e.payload.as_slice()).map(|env| env.event_id).unwrap_or_default();
                assert_eq!(v.event_id, payload_id, "garbage payloads have no event id");
            }
        }
    }
    // The stream holds every kind of verdict for both agencies.
    let kinds: std::collections::BTreeSet<_> =
        own_entries(&f.store, "dukcapil", 0).iter().map(|e| e.verdict as u8).collect();
    assert_eq!(kinds.len(), 3, "accepted, rejected and duplicate entries: {kinds:?}");
}

#[tokio::test]
async fn the_verdict_feed_serves_only_the_callers_entries_and_follows_new_commits() {
    use mpp_audit::auth::AuditorAuth;
    use mpp_audit::verdicts::Verdicts;
    use mpp_edge::auth::TokenTable;
    use mpp_proto::v1 as pb;
    use mpp_proto::v1::verdict_service_client::VerdictServiceClient;
    use mpp_proto::v1::verdict_service_server::VerdictServiceServer;
    use tokio_stream::StreamExt as _;

    let f = filled(seeds()[0]);
    let lookups = test_lookups(&f.store);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let changes = mpp_lookup::watch::CaseChanges::new(stop_rx);
    // printf %s test | sha256sum; printf %s pdam-token | sha256sum
    let table = TokenTable::parse(&format!(
        "dukcapil:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\npdam:{}",
        hex::encode(mpp_edge::auth::hash_token(b"pdam-token"))
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VerdictServiceServer::with_interceptor(
                Verdicts::new(lookups, changes.clone()),
                AuditorAuth::participants(Some(Arc::new(table))),
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = VerdictServiceClient::connect(format!("http://{addr}")).await.unwrap();
    for token in [None, Some("wrong")] {
        let err =
            client.follow_verdicts(with(token, pb::FollowVerdictsRequest::default())).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.metadata().get("mpp-reason-code").unwrap(), "UNAUTHENTICATED");
    }

    // Caught up from the start: exactly dukcapil's entries, in order.
    let head = all_entries(&f.store).len() as u64;
    let mut feed = client
        .follow_verdicts(with(Some("test"), pb::FollowVerdictsRequest { after_seq: 0 }))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut cursor = 0;
    while cursor < head {
        let batch = feed.next().await.unwrap().unwrap();
        assert!(batch.scanned_to_seq > cursor);
        cursor = batch.scanned_to_seq;
        got.extend(batch.verdicts);
    }
    let want: Vec<u64> = own_entries(&f.store, "dukcapil", 0).iter().map(|e| e.seq).collect();
    assert_eq!(got.iter().map(|v| v.seq).collect::<Vec<_>>(), want);

    // A commit after the feed caught up reaches it once announced.
    let mut ledger = Ledger::open(f.store.clone()).unwrap();
    let mut more = f.msgs[..3].to_vec();
    for (i, m) in more.iter_mut().enumerate() {
        m.stream_seq = f.msgs.len() as u64 + 1 + i as u64;
    }
    ledger.commit_batch(&more).unwrap();
    changes.publish(&[]);
    let mut live = Vec::new();
    while cursor < head + 3 {
        let batch = feed.next().await.unwrap().unwrap();
        cursor = batch.scanned_to_seq;
        live.extend(batch.verdicts);
    }
    let want: Vec<u64> = own_entries(&f.store, "dukcapil", head).iter().map(|e| e.seq).collect();
    assert!(!want.is_empty(), "the resent messages are dukcapil's standards and cases");
    assert_eq!(live.iter().map(|v| v.seq).collect::<Vec<_>>(), want);
    assert!(live.iter().all(|v| v.verdict == pb::Verdict::Duplicate as i32), "resends are duplicates");

    // Receipts: one's own accepted event, never another participant's.
    let accepted = |who: &str| {
        own_entries(&f.store, who, 0)
            .into_iter()
            .find(|e| e.verdict == Verdict::Accepted)
            .map(|e| pb::Envelope::decode(e.payload.as_slice()).unwrap().event_id)
            .unwrap()
    };
    let mine = client
        .get_own_receipt(with(Some("test"), pb::GetOwnReceiptRequest { event_id: accepted("dukcapil") }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.event_id, accepted("dukcapil"));
    let err = client
        .get_own_receipt(with(Some("test"), pb::GetOwnReceiptRequest { event_id: accepted("pdam") }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "pdam's event is not dukcapil's to see");
    let theirs = client
        .get_own_receipt(with(Some("pdam-token"), pb::GetOwnReceiptRequest { event_id: accepted("pdam") }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.event_id, accepted("pdam"));

    // The fifth feed of one participant is refused; others still get theirs.
    let mut open = Vec::new();
    for _ in 1..mpp_audit::verdicts::FOLLOWERS_PER_PARTICIPANT_MAX {
        open.push(
            client
                .follow_verdicts(with(Some("test"), pb::FollowVerdictsRequest { after_seq: head }))
                .await
                .unwrap(),
        );
    }
    let err = client
        .follow_verdicts(with(Some("test"), pb::FollowVerdictsRequest { after_seq: head }))
        .await
        .unwrap_err();
    assert_eq!(err.metadata().get("mpp-reason-code").unwrap(), "TOO_MANY_FEEDS");
    client
        .follow_verdicts(with(Some("pdam-token"), pb::FollowVerdictsRequest { after_seq: head }))
        .await
        .unwrap();
    server.abort();
}

/// What the cross-agency feed must send `follower` under `grants` after
/// `after`, found the plain way: every accepted entry of another
/// participant whose service and type a grant covers, in a case where the
/// follower has an application now.
fn case_events_oracle(
    store: &SledStore,
    follower: &str,
    grants: &[mpp_core::registry::FollowGrant],
    after: u64,
) -> Vec<u64> {
    let me = AgencyId::parse(follower).unwrap();
    all_entries(store)
        .into_iter()
        .filter(|e| e.seq > after && e.verdict == Verdict::Accepted)
        .filter(|e| {
            let Ok(env) = mpp_proto::v1::Envelope::decode(e.payload.as_slice()) else { return false };
            let Some(body) = env.body.as_ref() else { return false };
            let kind = wire::body_to_core(body).kind();
            let from = AgencyId::parse(&env.agency_id).unwrap();
            let covered = grants.iter().any(|g| {
                g.participant == from && g.service.as_str() == env.service_id && g.event_types.contains(&kind)
            });
            let mine = TrackingNumber::parse(&env.case_id)
                .ok()
                .and_then(|tn| store.case(&tn).unwrap())
                .is_some_and(|c| c.applications.iter().any(|a| a.agency == me));
            from != me && covered && mine
        })
        .map(|e| e.seq)
        .collect()
}

fn grant(participant: &str, service: &str, kinds: &[EventKind]) -> mpp_core::registry::FollowGrant {
    mpp_core::registry::FollowGrant {
        participant: AgencyId::parse(participant).unwrap(),
        service: mpp_core::ids::ServiceId::parse(service).unwrap(),
        event_types: kinds.iter().copied().collect(),
    }
}

#[test]
fn case_event_steps_give_only_granted_events_of_others_on_the_followers_cases_once_from_any_cursor() {
    use mpp_audit::case_events::scan_step_with_grants;

    let f = filled(seeds()[0]);
    let head = all_entries(&f.store).len() as u64;
    let mut rng = Rng::new(seeds()[0] ^ 0xcafe);
    let granted =
        [grant("dukcapil", "kk", &[EventKind::Issued, EventKind::ApplicationFiled, EventKind::Withdrawn])];
    // pdam's own service granted to itself and another service of dukcapil
    // match nothing: own events never, other services never.
    let ungranted = [
        grant("dukcapil", "ktp-el", &[EventKind::Issued]),
        grant("pdam", "sambungan-baru", &[EventKind::Issued, EventKind::ApplicationFiled]),
    ];
    let pdam = AgencyId::parse("pdam").unwrap();
    let total = case_events_oracle(&f.store, "pdam", &granted, 0);
    assert!(total.len() >= 5, "the stream gives pdam something to follow: {total:?}");
    for _ in 0..12 {
        let after = rng.below(head + 2);
        let (steps, batch) = (1 + rng.below(40) as usize, 1 + rng.below(20) as usize);
        let (mut got, mut cursor) = (Vec::new(), after);
        loop {
            let (found, scanned_to) =
                scan_step_with_grants(&f.store, &pdam, &granted, cursor, steps, batch).unwrap();
            assert!(found.len() <= batch);
            assert!(found.iter().all(|(_, e)| e.seq > cursor && e.seq <= scanned_to));
            if scanned_to == cursor {
                assert!(found.is_empty());
                break;
            }
            cursor = scanned_to;
            got.extend(found);
        }
        assert_eq!(cursor, head.max(after));
        let want = case_events_oracle(&f.store, "pdam", &granted, after);
        assert_eq!(got.iter().map(|(_, e)| e.seq).collect::<Vec<_>>(), want, "after {after}");
        for (tn, e) in &got {
            assert_eq!((e.agency_id.as_str(), e.service_id.as_str()), ("dukcapil", "kk"));
            assert!(["issued", "application_filed", "withdrawn"].contains(&e.event_type.as_str()));
            assert_eq!(e.case_id, tn.to_string());
            assert!(!e.own_applications.is_empty());
            assert!(e
                .own_applications
                .iter()
                .all(|a| a.service_id == "sambungan-baru" && !a.state.is_empty()));
        }
    }
    let (none, _) = scan_step_with_grants(&f.store, &pdam, &ungranted, 0, usize::MAX, usize::MAX).unwrap();
    assert!(none.is_empty(), "own events and ungranted services: {none:?}");
    let (none, _) = scan_step_with_grants(&f.store, &pdam, &[], 0, usize::MAX, usize::MAX).unwrap();
    assert!(none.is_empty());
}

#[test]
fn a_front_office_hears_with_notices_of_the_events_that_need_the_citizen_on_the_cases_it_opened() {
    use mpp_audit::case_events::{scan_step_as, Clocks, CITIZEN_NOTICE_KINDS};

    let f = filled(seeds()[0]);
    let calendars = mpp_core::calendar::CalendarSet::new();
    let clocks = Clocks { calendars: &calendars, now_ms: 0 };
    // Every case of the fixture is opened by dukcapil: as a front office it
    // hears of pdam's application events, with notices for the kinds that
    // need the citizen, and every one with the application's SLA clock.
    let opener = AgencyId::parse("dukcapil").unwrap();
    let mut noticed = Vec::new();
    let want: Vec<u64> = all_entries(&f.store)
        .into_iter()
        .filter(|e| e.verdict == Verdict::Accepted)
        .filter(|e| {
            let Ok(env) = mpp_proto::v1::Envelope::decode(e.payload.as_slice()) else { return false };
            let Some(body) = env.body.as_ref() else { return false };
            let kind = wire::body_to_core(body).kind();
            if env.agency_id == "pdam" && CITIZEN_NOTICE_KINDS.contains(&kind) {
                noticed.push(e.seq);
            }
            env.agency_id == "pdam" && kind.is_application_event()
        })
        .map(|e| e.seq)
        .collect();
    assert!(noticed.len() >= 3, "the stream has notices for the opener: {noticed:?}");
    assert!(want.len() > noticed.len(), "and other application events: {want:?}");
    let (got, _) = scan_step_as(&f.store, &opener, &[], true, clocks, 0, usize::MAX, usize::MAX).unwrap();
    // (In log order, but for the steps held before an opening, which come
    // with it.)
    let mut seqs: Vec<u64> = got.iter().map(|(_, e)| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, want);
    let mut with_notice: Vec<u64> =
        got.iter().filter(|(_, e)| e.notice.is_some()).map(|(_, e)| e.seq).collect();
    with_notice.sort_unstable();
    assert_eq!(with_notice, noticed, "a notice for the kinds that need the citizen only");
    for (_, e) in &got {
        let clock = e.sla.as_ref().expect("an SLA clock for the opener");
        assert_eq!(clock.service_name_en, "Service", "the standard's names");
        assert!(!clock.finished || clock.overdue_at_ms == 0, "{clock:?}");
        assert!(!clock.paused || clock.overdue_at_ms == 0, "{clock:?}");
        let Some(n) = e.notice.as_ref() else { continue };
        match e.event_type.as_str() {
            "fee_assessed" => assert_eq!((n.amount_idr, n.billing_code.as_str()), (50_000, "B-1")),
            "appointment_scheduled" => assert_eq!(n.place, "Loket 1"),
            "documents_requested" => {
                assert_eq!((n.documents.clone(), n.counter.as_str()), (vec!["KK".to_owned()], "Loket 2"))
            }
            "issued" | "rejected" => assert!(clock.finished, "{clock:?}"),
            other => panic!("not a notice kind: {other}"),
        }
        assert_eq!(n.service_name_en, "Service", "the standard's names");
    }
    // Not as a front office, or not the opener: nothing.
    let (none, _) = scan_step_as(&f.store, &opener, &[], false, clocks, 0, usize::MAX, usize::MAX).unwrap();
    assert!(none.is_empty());
    let pdam = AgencyId::parse("pdam").unwrap();
    let (none, _) = scan_step_as(&f.store, &pdam, &[], true, clocks, 0, usize::MAX, usize::MAX).unwrap();
    assert!(none.is_empty(), "pdam opened no case: {none:?}");
    // A follower by grant gets no notice and no clock.
    let granted = [grant("pdam", "sambungan-baru", &[EventKind::FeeAssessed])];
    let (by_grant, _) =
        scan_step_as(&f.store, &opener, &granted, false, clocks, 0, usize::MAX, usize::MAX).unwrap();
    assert!(by_grant.iter().all(|(_, e)| e.notice.is_none() && e.sla.is_none()));
}

/// A registry statement signed by the registrar with `seed`.
fn signed_statement(seed: &[u8; 32], body: mpp_proto::v1::registry_statement::Body, n: u64) -> Bytes {
    use mpp_proto::v1 as pb;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    let statement = pb::RegistryStatement {
        schema_version: 1,
        statement_id: event_id(900_000 + n),
        issued_at_ms: 0,
        body: Some(body),
    }
    .encode_to_vec();
    let signature = pair.sign(&mpp_core::registry::statement_signed_bytes(&statement)).as_ref().to_vec();
    use ring::signature::KeyPair as _;
    Bytes::from(
        pb::SignedRegistryStatement {
            statement,
            registrar_public_key: pair.public_key().as_ref().to_vec(),
            signature,
        }
        .encode_to_vec(),
    )
}

#[tokio::test]
async fn the_case_event_feed_refuses_without_grants_and_serves_what_the_registry_grants() {
    use mpp_audit::auth::AuditorAuth;
    use mpp_audit::case_events::CaseEvents;
    use mpp_edge::auth::TokenTable;
    use mpp_proto::v1 as pb;
    use mpp_proto::v1::case_event_service_client::CaseEventServiceClient;
    use mpp_proto::v1::case_event_service_server::CaseEventServiceServer;
    use tokio_stream::StreamExt as _;

    let f = filled(seeds()[0]);
    let lookups = test_lookups(&f.store);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let changes = mpp_lookup::watch::CaseChanges::new(stop_rx);
    let table = TokenTable::parse(&format!(
        "dukcapil:{}\npdam:{}",
        hex::encode(mpp_edge::auth::hash_token(b"dukcapil-token")),
        hex::encode(mpp_edge::auth::hash_token(b"pdam-token"))
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CaseEventServiceServer::with_interceptor(
                CaseEvents::new(lookups, changes.clone()),
                AuditorAuth::participants(Some(Arc::new(table))),
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = CaseEventServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let err =
        client.follow_case_events(with(None, pb::FollowCaseEventsRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // No registry in force: nobody is granted anything.
    for token in ["pdam-token", "dukcapil-token"] {
        let err = client
            .follow_case_events(with(Some(token), pb::FollowCaseEventsRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.metadata().get("mpp-reason-code").unwrap(), "NO_FOLLOW_GRANT");
    }

    // The registrar grants pdam dukcapil's kk `issued` events (the last
    // entries of the log, so nothing before them needed a signature).
    let seed = [0x5a; 32];
    let pk = {
        use ring::signature::KeyPair as _;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let mut k = [0u8; 32];
        k.copy_from_slice(pair.public_key().as_ref());
        k
    };
    let trust = Arc::new(mpp_ledger::trust::Trust::new(vec![pk]));
    let mut ledger = Ledger::open_with(f.store.clone(), trust).unwrap();
    let registration = |id: &str, follows: Vec<pb::FollowGrant>| {
        pb::registry_statement::Body::ParticipantRegistered(pb::ParticipantRegistered {
            participant_id: id.to_owned(),
            kind: "agency".to_owned(),
            category: "daerah".to_owned(),
            region_codes: vec!["1771".to_owned()],
            services: vec![],
            follows,
        })
    };
    let pdam_follows = vec![pb::FollowGrant {
        participant_id: "dukcapil".to_owned(),
        service_id: "kk".to_owned(),
        event_types: vec!["issued".to_owned()],
    }];
    let head_before = all_entries(&f.store).len() as u64;
    let statements = [
        signed_statement(&seed, registration("dukcapil", vec![]), 1),
        signed_statement(&seed, registration("pdam", pdam_follows), 2),
        // A grant of a case-level type is malformed and changes nothing.
        signed_statement(
            &seed,
            registration(
                "dukcapil",
                vec![pb::FollowGrant {
                    participant_id: "pdam".to_owned(),
                    service_id: "sambungan-baru".to_owned(),
                    event_types: vec!["personal_data_sealed".to_owned()],
                }],
            ),
            3,
        ),
    ];
    let msgs: Vec<RawMessage> = statements
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let seq = f.msgs.len() as u64 + 1 + i as u64;
            RawMessage {
                stream_seq: seq,
                stream_time_ns: T0_NS + seq as i64 * STEP_NS,
                subject: mpp_core::registry::REGISTRY_SUBJECT.to_owned(),
                payload,
                redrive: None,
            }
        })
        .collect();
    ledger.commit_batch(&msgs).unwrap();
    let entries = all_entries(&f.store);
    let verdicts: Vec<_> = entries[head_before as usize..].iter().map(|e| (e.verdict, e.reason)).collect();
    assert_eq!(
        verdicts,
        [
            (Verdict::Accepted, None),
            (Verdict::Accepted, None),
            (Verdict::Rejected, Some(mpp_core::ReasonCode::MalformedRegistryStatement))
        ]
    );
    changes.publish(&[]);

    // dukcapil is registered without grants: still refused.
    let err = client
        .follow_case_events(with(Some("dukcapil-token"), pb::FollowCaseEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.metadata().get("mpp-reason-code").unwrap(), "NO_FOLLOW_GRANT");

    // pdam gets exactly dukcapil's accepted kk `issued` events on its cases.
    let head = entries.len() as u64;
    let want = case_events_oracle(&f.store, "pdam", &[grant("dukcapil", "kk", &[EventKind::Issued])], 0);
    assert!(!want.is_empty(), "the stream issues kk documents on pdam's cases");
    let mut feed = client
        .follow_case_events(with(Some("pdam-token"), pb::FollowCaseEventsRequest { after_seq: 0 }))
        .await
        .unwrap()
        .into_inner();
    let (mut got, mut cursor) = (Vec::new(), 0);
    while cursor < head {
        let batch = feed.next().await.unwrap().unwrap();
        assert!(batch.scanned_to_seq > cursor);
        cursor = batch.scanned_to_seq;
        got.extend(batch.events);
    }
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
    assert!(got.iter().all(|e| e.event_type == "issued" && e.agency_id == "dukcapil"));

    // Resumed from the middle: the rest, nothing twice.
    let middle = want[want.len() / 2];
    let mut feed = client
        .follow_case_events(with(Some("pdam-token"), pb::FollowCaseEventsRequest { after_seq: middle }))
        .await
        .unwrap()
        .into_inner();
    let (mut rest, mut cursor) = (Vec::new(), middle);
    while cursor < head {
        let batch = feed.next().await.unwrap().unwrap();
        cursor = batch.scanned_to_seq;
        rest.extend(batch.events.into_iter().map(|e| e.seq));
    }
    assert_eq!(rest, want.iter().copied().filter(|s| *s > middle).collect::<Vec<_>>());
    server.abort();
}
