//! The store against a `BTreeMap` model: round trips, block boundaries,
//! all-or-nothing commits across reopen, and the in-memory twin behaving
//! exactly like sled.

use std::collections::BTreeMap;

use mpp_core::checkpoint::{Checkpoint, KeyId, Origin, SignedCheckpoint};
use mpp_core::decide::MemState;
use mpp_core::event::Target;
use mpp_core::ids::{AgencyId, ApplicationId, EventId, OfficerId, RegionCode, ServiceId, TrackingNumber};
use mpp_core::log::Verdict;
use mpp_core::merkle::{self, MemTree, MerkleFrontier, Subtree};
use mpp_core::registry::{Category, Participant, ParticipantKind, Registration, Registry};
use mpp_core::{
    apply, Case, EntryMeta, Envelope, EventBody, EventKind, LogEntry, ReasonCode, ServiceStandard, StateMut,
    TimelineItem,
};
use mpp_store::{
    push_entry, CommitBatch, Head, MemStore, SledStore, Store, StoreError, BLOCK_BYTES_MAX, FORMAT_TAG,
    STORED_SUBTREE_LEVEL_MIN,
};
use proptest::prelude::*;

fn tn(serial: u64) -> TrackingNumber {
    TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
}

fn eid(n: u64) -> EventId {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b[6] = 0x70;
    b[8] |= 0x80;
    EventId(b)
}

/// A case folded by the core itself (so the test does not depend on every
/// field of `Case`): opened at `seq`, with `apps` applications filed.
fn case(serial: u64, seq: u64, apps: usize) -> Case {
    let mut state = MemState::default();
    let env = |target: Target, body: EventBody| Envelope {
        event_id: eid(0),
        target,
        region: RegionCode::parse("1771").unwrap(),
        agency: AgencyId::parse("dukcapil").unwrap(),
        service: ServiceId::parse("kk").unwrap(),
        occurred_at_ms: 1_700_000_000_000,
        officer: OfficerId::parse("petugas-1").unwrap(),
        body,
    };
    let meta = EntryMeta { seq, recorded_at_ms: 1_700_000_000_000 + seq as i64 };
    state.put_standard(standard("dukcapil", "kk", 1, seq));
    apply(
        &mut state,
        &env(
            Target::Case(tn(serial)),
            EventBody::CaseOpened { pin_verifier: vec![1, 2, 3], nik_keyed_hash: vec![] },
        ),
        meta,
    );
    for i in 0..apps {
        let app = ApplicationId::parse(&format!("app-{i}")).unwrap();
        let filed = env(
            Target::Application(tn(serial), app),
            EventBody::ApplicationFiled { documents: vec!["berkas".to_owned()] },
        );
        apply(&mut state, &filed, meta);
    }
    let c = state.cases.remove(&tn(serial)).unwrap();
    assert_eq!(c.applications.len(), apps);
    c
}

/// The model's case `serial` grown the way the core grows a case (a new
/// timeline item, recorded at `seq`, on each of its applications, and `apps`
/// more applications filed at `seq`), or a new case like [`case`] when the
/// model has none.
fn grown(m: &Model, serial: u64, seq: u64, apps: usize) -> Case {
    let Some(old) = m.cases.get(&tn(serial)) else { return case(serial, seq, apps) };
    let mut c = old.clone();
    for a in &mut c.applications {
        if let Some(last) = a.timeline.last() {
            let item = TimelineItem { seq, recorded_at_ms: last.recorded_at_ms + 1, ..last.clone() };
            a.timeline.push(item);
        }
    }
    let have = c.applications.len();
    c.applications.extend(case(serial, seq, have + apps).applications.into_iter().skip(have));
    c.last_seq = seq;
    c
}

fn standard(agency: &str, service: &str, version: u32, seq: u64) -> ServiceStandard {
    ServiceStandard {
        agency: AgencyId::parse(agency).unwrap(),
        service: ServiceId::parse(service).unwrap(),
        name_id: "Kartu Keluarga".to_owned(),
        name_en: "Family card".to_owned(),
        completion_working_days: 3,
        fee_idr: 0,
        requirements: vec!["surat pengantar".to_owned()],
        fiktif_positif: false,
        version,
        effective_from_seq: seq,
        effective_from_ms: 5,
        // Even versions carry a collection, written after the standard.
        collection: (version % 2 == 0).then(|| mpp_core::Collection {
            place: "Loket Disdukcapil".to_owned(),
            within_working_days: version,
        }),
    }
}

/// `n` entries chained onto `head`, payloads of `payload_bytes` bytes.
fn entries_after(head: &Head, n: usize, payload_bytes: usize, stream_gap: u64) -> Vec<LogEntry> {
    let mut prev = head.head_hash;
    let mut stream = head.last_stream_seq;
    (0..n as u64)
        .map(|i| {
            let seq = head.last_seq + 1 + i;
            stream += 1 + stream_gap;
            let (verdict, reason) = if seq % 3 == 0 {
                (Verdict::Rejected, Some(ReasonCode::IllegalTransition))
            } else {
                (Verdict::Accepted, None)
            };
            let e = LogEntry::new(
                seq,
                stream,
                1_700_000_000_000_000_000 + seq as i64,
                verdict,
                reason,
                "detail",
                "mpp.events.dukcapil.kk",
                vec![(seq % 251) as u8; payload_bytes],
                prev,
            );
            prev = e.hash;
            e
        })
        .collect()
}

fn head_after(head: &Head, entries: &[LogEntry]) -> Head {
    entries.last().map_or(*head, |l| Head {
        last_seq: l.seq,
        last_stream_seq: l.stream_seq,
        head_hash: l.hash,
    })
}

/// The frontier after `entries` and the subtrees they complete.
fn tree_after(frontier: &MerkleFrontier, entries: &[LogEntry]) -> (MerkleFrontier, Vec<Subtree>) {
    let mut f = frontier.clone();
    let mut subtrees = Vec::new();
    for e in entries {
        push_entry(&mut f, &e.hash, &mut subtrees).unwrap();
    }
    (f, subtrees)
}

/// A batch of nothing but `entries` on top of `head` and `frontier`.
fn plain_batch(head: &Head, frontier: &MerkleFrontier, entries: Vec<LogEntry>) -> CommitBatch {
    let (frontier, subtrees) = tree_after(frontier, &entries);
    CommitBatch { head: head_after(head, &entries), entries, frontier, subtrees, ..Default::default() }
}

/// What a store should hold.
#[derive(Debug, Default, Clone)]
struct Model {
    entries: Vec<LogEntry>,
    cases: BTreeMap<TrackingNumber, Case>,
    standards: BTreeMap<(AgencyId, ServiceId), ServiceStandard>,
    events: BTreeMap<EventId, u64>,
    head: Head,
    tree: MemTree,
    /// The cases after each commit, by the commit's last sequence (what a
    /// store that lost its held-back case values still has written).
    history: BTreeMap<u64, BTreeMap<TrackingNumber, Case>>,
}

impl Model {
    /// The cases as of sequence `seq` (after the last commit up to it).
    fn cases_at(&self, seq: u64) -> Vec<Case> {
        self.history
            .range(..=seq)
            .next_back()
            .map(|(_, cs)| cs.values().cloned().collect())
            .unwrap_or_default()
    }

    fn apply(&mut self, b: &CommitBatch) {
        for e in &b.entries {
            self.tree.push(merkle::entry_leaf_hash(&e.hash)).unwrap();
        }
        self.entries.extend(b.entries.iter().cloned());
        for c in &b.cases {
            self.cases.insert(c.tracking_number, c.clone());
        }
        for s in &b.standards {
            self.standards.insert((s.agency.clone(), s.service.clone()), s.clone());
        }
        for (id, seq) in &b.event_ids {
            self.events.insert(*id, *seq);
        }
        self.head = b.head;
        if !b.entries.is_empty() {
            self.history.insert(b.head.last_seq, self.cases.clone());
        }
    }

    fn check(&self, store: &impl Store) {
        assert_eq!(store.head().unwrap(), self.head);
        let all: Vec<LogEntry> = store.entries(1).collect::<Result<_, _>>().unwrap();
        assert_eq!(all, self.entries);
        for e in &self.entries {
            assert_eq!(store.entry(e.seq).unwrap().as_ref(), Some(e));
        }
        assert_eq!(store.entry(0).unwrap(), None);
        assert_eq!(store.entry(self.head.last_seq + 1).unwrap(), None);
        let cases: Vec<Case> = store.cases().collect::<Result<_, _>>().unwrap();
        assert_eq!(cases, self.cases.values().cloned().collect::<Vec<_>>());
        for (id, c) in &self.cases {
            assert_eq!(store.case(id).unwrap().as_ref(), Some(c));
        }
        assert_eq!(store.case(&tn(9_999_999)).unwrap(), None);
        assert_eq!(store.standards().unwrap(), self.standards.values().cloned().collect::<Vec<_>>());
        for ((a, s), st) in &self.standards {
            assert_eq!(store.standard(a, s).unwrap().as_ref(), Some(st));
        }
        for (id, seq) in &self.events {
            assert_eq!(store.event_seq(id).unwrap(), Some(*seq));
        }
        assert_eq!(store.event_seq(&eid(u64::MAX)).unwrap(), None);
        self.check_tree(store);
    }

    /// The frontier, every stored subtree, and proofs against the model tree.
    fn check_tree(&self, store: &impl Store) {
        let n = self.head.last_seq;
        let (head, frontier) = store.head_and_frontier().unwrap();
        assert_eq!(head, self.head);
        assert_eq!(&frontier, self.tree.frontier());
        for level in STORED_SUBTREE_LEVEL_MIN..16 {
            let complete = n >> level;
            for index in 0..=complete {
                let want = (index < complete).then(|| {
                    let start = (index << level) as usize;
                    merkle::root_of(&self.tree.leaves()[start..start + (1usize << level)])
                });
                assert_eq!(store.subtree(level, index).unwrap(), want, "subtree {level}/{index}");
            }
        }
        assert_eq!(store.subtree(STORED_SUBTREE_LEVEL_MIN - 1, 0).unwrap(), None);
        for size in [0, 1, n / 3, n / 2, n.saturating_sub(1), n] {
            if size > n {
                continue;
            }
            assert_eq!(merkle::root_at(store, size).unwrap(), merkle::root_at(&self.tree, size).unwrap());
            for index in [0, size / 2, size.saturating_sub(1)] {
                if index < size {
                    assert_eq!(
                        merkle::inclusion_proof(store, index, size).unwrap(),
                        merkle::inclusion_proof(&self.tree, index, size).unwrap()
                    );
                }
            }
            assert_eq!(
                merkle::consistency_proof(store, size, n).unwrap(),
                merkle::consistency_proof(&self.tree, size, n).unwrap()
            );
        }
    }
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Op {
    /// Commit `n` entries (payload size class), touching some cases,
    /// standards and event ids; `fault` spoils the batch so it must be refused.
    Commit {
        n: usize,
        big: bool,
        cases: Vec<(u64, usize)>,
        standard: Option<u8>,
        events: usize,
        fault: Option<u8>,
    },
    /// Write the held-back case values, drop every handle and reopen
    /// (sled: the directory).
    Reopen,
    /// Drop every handle without writing the held-back case values (a
    /// crash), reopen, and hand the lost ones back as the ledger would.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            0usize..12,
            prop::bool::weighted(0.05),
            prop::collection::vec((0u64..6, 0usize..3), 0..4),
            prop::option::weighted(0.3, 0u8..3),
            0usize..5,
            prop::option::weighted(0.25, 0u8..8),
        )
            .prop_map(|(n, big, cases, standard, events, fault)| Op::Commit { n, big, cases, standard, events, fault }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// Builds the batch of a `Commit` op on top of the model.
fn batch_for(m: &Model, op: &Op, counter: &mut u64) -> Option<(CommitBatch, bool)> {
    let Op::Commit { n, big, cases, standard: std_choice, events, fault } = op else { return None };
    let payload = if *big { 120 * 1024 } else { 40 };
    let entries = entries_after(&m.head, *n, payload, 0);
    let mut b = plain_batch(&m.head, m.tree.frontier(), entries);
    if let Some(first) = b.entries.first().map(|e| e.seq) {
        for (serial, apps) in cases {
            b.cases.push(grown(m, *serial, first, *apps));
        }
        if let Some(s) = std_choice {
            let services = ["kk", "ktp-el", "akta-lahir"];
            *counter += 1;
            b.standards.push(standard("dukcapil", services[*s as usize], *counter as u32, first));
        }
        for i in 0..*events.min(n) {
            *counter += 1;
            b.event_ids.push((eid(*counter), first + i as u64));
        }
    }
    let mut valid = true;
    if let Some(f) = fault {
        valid = false;
        match f {
            0 if b.entries.len() >= 2 => b.entries.swap(0, 1),
            1 if !b.entries.is_empty() => b.head.last_seq += 1,
            2 if !b.entries.is_empty() => b.event_ids.push((eid(u64::MAX - 1), b.head.last_seq + 1)),
            3 if !b.entries.is_empty() => {
                // Re-chain on a wrong previous hash.
                let wrong = Head { head_hash: [9u8; 32], ..m.head };
                b.entries = entries_after(&wrong, b.entries.len(), payload, 0);
                b.head = head_after(&wrong, &b.entries);
            }
            4 if !b.entries.is_empty() && m.head.last_stream_seq > 0 => {
                // The first stream sequence equals the checkpoint instead of
                // lying above it.
                let back = Head { last_stream_seq: m.head.last_stream_seq - 1, ..m.head };
                b.entries = entries_after(&back, b.entries.len(), payload, 0);
                b.head = head_after(&back, &b.entries);
            }
            5 if b.entries.is_empty() => b.cases.push(case(1, 1, 0)),
            // A frontier that leaves out the last entry.
            6 if !b.entries.is_empty() => b.frontier = tree_after(m.tree.frontier(), &b.entries[1..]).0,
            // A subtree hash the entries did not complete, or a wrong one.
            7 => match b.subtrees.first_mut() {
                Some(t) => t.hash[0] ^= 1,
                None => b.subtrees.push(Subtree { level: STORED_SUBTREE_LEVEL_MIN, index: 0, hash: [1; 32] }),
            },
            _ => valid = true,
        }
    }
    Some((b, valid))
}

trait Reopen: Store {
    fn reopen(self) -> Self;
}

impl Reopen for MemStore {
    fn reopen(self) -> Self {
        self
    }
}

/// What a crash leaves of a store: a fresh handle on its written data.
fn mem_crash(s: MemStore) -> MemStore {
    s.without_held_back()
}

struct SledAt {
    dir: tempfile::TempDir,
}

impl SledAt {
    fn new() -> Self {
        SledAt { dir: tempfile::tempdir().unwrap() }
    }
    fn open(&self) -> SledStore {
        SledStore::open_with_cache(self.dir.path(), 16 * 1024 * 1024).unwrap()
    }
}

fn run<S: Store>(
    ops: &[Op],
    mut reopen: impl FnMut(S) -> S,
    mut crash: impl FnMut(S) -> S,
    store: S,
) -> (Model, S) {
    let mut store = store;
    let mut m = Model::default();
    let mut counter = 0u64;
    for op in ops {
        match op {
            Op::Reopen => {
                store.flush_projection().unwrap();
                store = reopen(store);
                assert_eq!(store.projected_through().unwrap(), m.head.last_seq);
                m.check(&store);
            }
            Op::Crash => {
                store = crash(store);
                // The log is whole; the written cases are the projection as
                // of `projected_through`, a commit boundary.
                let projected = store.projected_through().unwrap();
                assert!(projected <= m.head.last_seq);
                assert!(projected == 0 || m.history.contains_key(&projected), "{projected}");
                let written: Vec<Case> = store.cases().collect::<Result<_, _>>().unwrap();
                assert_eq!(written, m.cases_at(projected));
                let before: BTreeMap<TrackingNumber, Case> =
                    m.cases_at(projected).into_iter().map(|c| (c.tracking_number, c)).collect();
                let lost: Vec<Case> = m
                    .cases
                    .values()
                    .filter(|c| before.get(&c.tracking_number) != Some(*c))
                    .cloned()
                    .collect();
                store.stage_replayed(lost).unwrap();
                m.check(&store);
            }
            Op::Commit { .. } => {
                let Some((b, valid)) = batch_for(&m, op, &mut counter) else { continue };
                let r = store.commit(b.clone());
                if valid {
                    r.unwrap_or_else(|e| panic!("valid batch refused: {e}"));
                    m.apply(&b);
                } else {
                    assert!(matches!(r, Err(StoreError::InvalidBatch(_))), "invalid batch gave {r:?}");
                }
            }
        }
    }
    m.check(&store);
    (m, store)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Every commit is all or nothing, also across reopening the directory,
    /// and refused batches leave no trace.
    #[test]
    fn sled_matches_the_model_across_reopen(ops in prop::collection::vec(op(), 1..24)) {
        let at = SledAt::new();
        let reopen = |s: SledStore| { drop(s); at.open() };
        let (m, store) = run(&ops, reopen, reopen, at.open());
        store.flush_projection().unwrap();
        drop(store);
        m.check(&at.open());
    }

    /// The in-memory twin gives the same answers as sled for the same operations.
    #[test]
    fn mem_and_sled_agree(ops in prop::collection::vec(op(), 1..24)) {
        let at = SledAt::new();
        let (mm, mem) = run(&ops, MemStore::reopen, mem_crash, MemStore::new());
        let reopen = |s: SledStore| { drop(s); at.open() };
        let (sm, sled) = run(&ops, reopen, reopen, at.open());
        prop_assert_eq!(mm.head, sm.head);
        let a: Vec<_> = mem.entries(1).map(|e| e.unwrap().encode()).collect();
        let b: Vec<_> = sled.entries(1).map(|e| e.unwrap().encode()).collect();
        prop_assert_eq!(a, b);
        let a: Vec<_> = mem.cases().map(Result::unwrap).collect();
        let b: Vec<_> = sled.cases().map(Result::unwrap).collect();
        prop_assert_eq!(a, b);
        prop_assert_eq!(mem.standards().unwrap(), sled.standards().unwrap());
        // The projection commitment the writer kept through every commit,
        // held-back write, crash and reopen is the one the stored pairs
        // give, and the same in both backends.
        let kept = sled.projection_commitment().unwrap().unwrap();
        prop_assert_eq!(kept, sled.recompute_projection_commitment().unwrap());
        prop_assert_eq!(mem.projection_commitment().unwrap().unwrap(), mem.recompute_projection_commitment().unwrap());
        prop_assert_eq!(kept, mem.projection_commitment().unwrap().unwrap());
        sled.flush_projection().unwrap();
        prop_assert_eq!(sled.projection_commitment().unwrap().unwrap(), sled.recompute_projection_commitment().unwrap());
    }
}

#[test]
fn round_trip_of_every_kind_of_value() {
    let at = SledAt::new();
    round_trip(MemStore::new());
    round_trip(at.open());
}

fn round_trip<S: Store>(store: S) {
    assert_eq!(store.head().unwrap(), Head::GENESIS);
    assert_eq!(store.entries(1).count(), 0);
    assert_eq!(store.entry(1).unwrap(), None);
    let entries = entries_after(&Head::GENESIS, 3, 10, 4);
    let b = CommitBatch {
        cases: vec![case(7, 1, 2), case(8, 2, 0)],
        standards: vec![standard("dukcapil", "kk", 1, 1), standard("pdam", "sambungan-baru", 2, 3)],
        event_ids: vec![(eid(1), 1), (eid(2), 3)],
        ..plain_batch(&Head::GENESIS, &MerkleFrontier::new(), entries)
    };
    store.commit(b.clone()).unwrap();
    let mut m = Model::default();
    m.apply(&b);
    m.check(&store);
    // Stream sequences may jump (gaps are the ledger's business).
    assert_eq!(store.head().unwrap().last_stream_seq, 15);
    // An empty batch that changes nothing is a no-op.
    store
        .commit(CommitBatch { head: m.head, frontier: m.tree.frontier().clone(), ..Default::default() })
        .unwrap();
    m.check(&store);
}

#[test]
fn the_registry_is_empty_until_written_and_survives_a_reopen() {
    let at = SledAt::new();
    let store = at.open();
    assert_eq!(store.registry().unwrap(), Registry::default());
    let mut registry = Registry { since_seq: Some(1), ..Default::default() };
    registry.participants.insert(
        AgencyId::parse("dukcapil").unwrap(),
        Participant {
            registration: Registration {
                participant: AgencyId::parse("dukcapil").unwrap(),
                kind: ParticipantKind::Agency,
                category: Category::Daerah,
                regions: [RegionCode::parse("1771").unwrap()].into(),
                services: [(ServiceId::parse("kk").unwrap(), [EventKind::Issued].into())].into(),
            },
            keys: BTreeMap::new(),
            registered_seq: 1,
            updated_seq: 1,
        },
    );
    let entries = entries_after(&Head::GENESIS, 2, 10, 1);
    let b = CommitBatch {
        registry: Some(registry.clone()),
        ..plain_batch(&Head::GENESIS, &MerkleFrontier::new(), entries)
    };
    store.commit(b.clone()).unwrap();
    // Written with the projection at once.
    assert_eq!(store.projected_through().unwrap(), b.head.last_seq);
    assert_eq!(store.registry().unwrap(), registry);
    drop(store);
    assert_eq!(at.open().registry().unwrap(), registry);
}

#[test]
fn entry_lookup_at_block_boundaries() {
    let at = SledAt::new();
    boundaries(MemStore::new());
    boundaries(at.open());
}

fn boundaries<S: Store>(store: S) {
    let mut m = Model::default();
    // Batches of 1, 2, 5 entries, then one that spans several blocks
    // (~300 KiB payloads, so a block closes after 4 entries), then 1 more.
    for (n, bytes) in [(1, 10), (2, 10), (5, 10), (9, 300 * 1024), (1, 10)] {
        let entries = entries_after(&m.head, n, bytes, 0);
        let b = plain_batch(&m.head, m.tree.frontier(), entries);
        store.commit(b.clone()).unwrap();
        m.apply(&b);
    }
    const { assert!(9 * 300 * 1024 > 2 * BLOCK_BYTES_MAX, "the big batch must span several blocks") };
    m.check(&store);
    for from in 0..=m.head.last_seq + 2 {
        let got: Vec<u64> = store.entries(from).map(|e| e.unwrap().seq).collect();
        let want: Vec<u64> = (from.max(1)..=m.head.last_seq).collect();
        assert_eq!(got, want, "entries({from})");
    }
}

#[test]
fn a_store_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_sled(dir.path());
        db.insert("V", "mpp-store/v0").unwrap();
        db.flush().unwrap();
    }
    match SledStore::open(dir.path()) {
        Err(StoreError::UnsupportedFormat { found, expected }) => {
            assert_eq!(found, "mpp-store/v0");
            assert_eq!(expected, FORMAT_TAG);
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_sled(dir.path());
        db.insert("something", "else").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(SledStore::open(dir.path()), Err(StoreError::UnsupportedFormat { .. })));
    // A fresh store reopens fine.
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open(dir.path()).unwrap());
    SledStore::open(dir.path()).unwrap();
}

#[test]
fn corrupt_values_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        let entries = entries_after(&Head::GENESIS, 3, 10, 0);
        s.commit(CommitBatch {
            cases: vec![case(7, 1, 1)],
            event_ids: vec![(eid(1), 1)],
            ..plain_batch(&Head::GENESIS, &MerkleFrontier::new(), entries)
        })
        .unwrap();
    }
    {
        let db = raw_sled(dir.path());
        let mut case_key = b"C".to_vec();
        case_key.extend_from_slice(&tn(7).digits());
        db.insert(case_key, vec![0xff; 5]).unwrap();
        // eid(1) lies in event-index bucket 0: part 0 of it.
        let mut ev = b"E".to_vec();
        ev.extend_from_slice(&0u64.to_be_bytes());
        ev.extend_from_slice(&0u32.to_be_bytes());
        db.insert(ev, vec![1, 2, 3]).unwrap();
        let mut block_key = b"L".to_vec();
        block_key.extend_from_slice(&1u64.to_be_bytes());
        let mut block = db.get(&block_key).unwrap().unwrap().to_vec();
        let last = block.len() - 1;
        block[last] ^= 1;
        db.insert(block_key, block).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert!(matches!(s.case(&tn(7)), Err(StoreError::Corrupt { .. })));
    assert!(matches!(s.cases().next(), Some(Err(StoreError::Corrupt { .. }))));
    assert!(matches!(s.event_seq(&eid(1)), Err(StoreError::Corrupt { .. })));
    // Entries 1 and 2 are intact; the last record's hash was damaged.
    assert_eq!(s.entry(2).unwrap().unwrap().seq, 2);
    assert!(matches!(s.entry(3), Err(StoreError::Corrupt { .. })));
    let got: Vec<_> = s.entries(1).collect();
    assert!(matches!(got.last(), Some(Err(StoreError::Corrupt { .. }))), "{got:?}");
}

#[test]
fn readers_on_other_threads_see_whole_commits() {
    let at = SledAt::new();
    let store = at.open();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = store.clone();
        let done = &done;
        let r = s.spawn(move || {
            let mut seen = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let h = reader.head().unwrap();
                if h.last_seq > 0 {
                    // Everything the head names is already visible.
                    let e = reader.entry(h.last_seq).unwrap().expect("entry named by the head");
                    assert!(e.seq >= h.last_seq);
                    let c = reader.case(&tn(1)).unwrap().expect("case committed with the first batch");
                    assert!(c.last_seq >= 1);
                }
                seen = seen.max(h.last_seq);
            }
            seen
        });
        let mut m = Model::default();
        for i in 0..20u64 {
            let entries = entries_after(&m.head, 3, 10, 0);
            let b = CommitBatch {
                cases: vec![case(1, i * 3 + 1, 0)],
                ..plain_batch(&m.head, m.tree.frontier(), entries)
            };
            store.commit(b.clone()).unwrap();
            m.apply(&b);
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        assert!(r.join().unwrap() <= 60);
    });
}

/// Opens the directory with sled itself, waiting (with a deadline) for the
/// lock a just-dropped store may still hold.
fn raw_sled(dir: &std::path::Path) -> sled::Db {
    mpp_edge::sled_open::open_waiting_for_lock(&sled::Config::new().path(dir)).unwrap()
}

/// A checkpoint of the first `size` entries of the model, with a dummy
/// signature (the store does not verify signatures).
fn checkpoint_of(m: &Model, size: u64, signed_at_ms: i64) -> SignedCheckpoint {
    let last = size.checked_sub(1).map(|i| &m.entries[i as usize]);
    Checkpoint {
        origin: Origin::for_hub("test").unwrap(),
        key_id: KeyId([1; 8]),
        tree_size: size,
        root_hash: merkle::root_at(&m.tree, size).unwrap(),
        head_hash: last.map_or(mpp_core::log::GENESIS_HASH, |e| e.hash),
        last_stream_seq: last.map_or(0, |e| e.stream_seq),
        last_entry_time_ns: last.map_or(0, |e| e.stream_time_ns),
        signed_at_ms,
        projection: None,
    }
    .sign(|_| [7; 64])
}

#[test]
fn the_tree_spans_many_batches_and_proofs_match_the_model() {
    let at = SledAt::new();
    let store = at.open();
    let mut m = Model::default();
    // 1 + 2 + ... batches, enough entries for subtrees of several levels.
    let mut n = 1;
    while m.head.last_seq < 700 {
        let b = plain_batch(&m.head, m.tree.frontier(), entries_after(&m.head, n, 8, 0));
        store.commit(b.clone()).unwrap();
        m.apply(&b);
        n = n % 97 + 13;
    }
    m.check(&store);
    let mem = MemStore::new();
    let mut mm = Model::default();
    for e in m.entries.chunks(150) {
        let b = plain_batch(&mm.head, mm.tree.frontier(), e.to_vec());
        mem.commit(b.clone()).unwrap();
        mm.apply(&b);
    }
    mm.check(&mem);
    // Every inclusion proof verifies against the store's own root.
    let size = m.head.last_seq;
    let root = store.head_and_frontier().unwrap().1.root();
    for e in m.entries.iter().step_by(37) {
        let proof = merkle::inclusion_proof(&store, e.seq - 1, size).unwrap();
        merkle::verify_inclusion(&merkle::entry_leaf_hash(&e.hash), e.seq - 1, size, &proof, &root).unwrap();
    }
    // A leaf past the head is an error, not a panic or a wrong proof.
    assert!(matches!(
        merkle::inclusion_proof(&store, 0, size + 1),
        Err(merkle::ProveError::Source(StoreError::BeyondHead { .. }))
    ));
}

#[test]
fn checkpoints_are_checked_against_the_log_and_kept() {
    let at = SledAt::new();
    let store = at.open();
    let mut m = Model::default();
    for n in [5, 70, 3] {
        let b = plain_batch(&m.head, m.tree.frontier(), entries_after(&m.head, n, 8, 0));
        store.commit(b.clone()).unwrap();
        m.apply(&b);
    }
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    let cps: Vec<_> = [5, 75, 78].iter().map(|&s| checkpoint_of(&m, s, 1_000 + s as i64)).collect();
    for cp in &cps {
        store.put_checkpoint(cp).unwrap();
    }
    // Again: a no-op. Another one of the same size: refused.
    store.put_checkpoint(&cps[1]).unwrap();
    let resigned = checkpoint_of(&m, 75, 9);
    assert!(matches!(store.put_checkpoint(&resigned), Err(StoreError::InvalidBatch(_))));
    // Beyond the head, or not the log's root, head, stream seq or time: refused.
    let mut beyond = checkpoint_of(&m, 78, 1);
    beyond.checkpoint.tree_size = 79;
    assert!(matches!(store.put_checkpoint(&beyond), Err(StoreError::InvalidBatch(_))));
    for field in 0..4 {
        let mut bad = checkpoint_of(&m, 40, 1);
        match field {
            0 => bad.checkpoint.root_hash[0] ^= 1,
            1 => bad.checkpoint.head_hash[0] ^= 1,
            2 => bad.checkpoint.last_stream_seq += 1,
            _ => bad.checkpoint.last_entry_time_ns += 1,
        }
        let r = store.put_checkpoint(&bad);
        assert!(matches!(r, Err(StoreError::InvalidBatch(_))), "field {field}: {r:?}");
    }
    assert_eq!(store.checkpoint(40).unwrap(), None);
    drop(store);
    let store = at.open();
    assert_eq!(store.latest_checkpoint().unwrap().as_ref(), Some(&cps[2]));
    assert_eq!(store.checkpoint(75).unwrap().as_ref(), Some(&cps[1]));
    assert_eq!(store.checkpoint(6).unwrap(), None);
    let all: Vec<_> = store.checkpoints(0, u64::MAX).map(Result::unwrap).collect();
    assert_eq!(all, cps);
    let some: Vec<_> = store.checkpoints(6, 78).map(Result::unwrap).collect();
    assert_eq!(some, cps[1..]);
    assert_eq!(store.checkpoints(76, 77).count(), 0);
    assert_eq!(store.checkpoints(9, 2).count(), 0);
    // The empty log has a checkpoint too.
    let mem = MemStore::new();
    mem.put_checkpoint(&checkpoint_of(&Model::default(), 0, 1)).unwrap();
    assert_eq!(mem.latest_checkpoint().unwrap().map(|c| c.checkpoint.tree_size), Some(0));
}

#[test]
fn a_missing_subtree_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    {
        let s = SledStore::open(dir.path()).unwrap();
        let b = plain_batch(&m.head, m.tree.frontier(), entries_after(&m.head, 200, 8, 0));
        s.commit(b.clone()).unwrap();
        m.apply(&b);
    }
    {
        let db = raw_sled(dir.path());
        let mut key = b"M".to_vec();
        key.push(STORED_SUBTREE_LEVEL_MIN as u8);
        key.extend_from_slice(&1u64.to_be_bytes());
        assert!(db.remove(key).unwrap().is_some());
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let r = merkle::inclusion_proof(&s, 0, 200);
    assert!(matches!(r, Err(merkle::ProveError::Source(StoreError::Corrupt { .. }))), "{r:?}");
}

#[test]
fn timelines_only_grow() {
    let at = SledAt::new();
    timelines_grow(MemStore::new());
    timelines_grow(at.open());
}

fn timelines_grow<S: Store>(store: S) {
    let mut m = Model::default();
    let commit = |m: &mut Model, cases: Vec<Case>| {
        let entries = entries_after(&m.head, 2, 10, 0);
        let b = CommitBatch { cases, ..plain_batch(&m.head, m.tree.frontier(), entries) };
        let r = store.commit(b.clone());
        if r.is_ok() {
            m.apply(&b);
        }
        r
    };
    commit(&mut m, vec![case(3, 1, 2)]).unwrap();
    // Twelve more commits, each appending to every timeline and filing one
    // more application: 13 + 12 + 11 + ... items, several timeline chunks.
    for _ in 0..12 {
        let next = grown(&m, 3, m.head.last_seq + 1, 1);
        commit(&mut m, vec![next]).unwrap();
    }
    m.check(&store);
    let c = store.case(&tn(3)).unwrap().unwrap();
    assert_eq!(c.applications.len(), 14);
    assert_eq!(c.applications[0].timeline.len(), 13);
    let items: usize = c.applications.iter().map(|a| a.timeline.len()).sum();
    assert!(items > 3 * mpp_store::TIMELINE_CHUNK_ITEMS, "{items} items");
    // A timeline that drops its last item, one whose last stored item was
    // replaced, and a case that lost an application are all refused.
    let mut shorter = m.cases[&tn(3)].clone();
    shorter.applications[0].timeline.pop();
    let mut rewritten = m.cases[&tn(3)].clone();
    rewritten.applications[1].timeline.last_mut().unwrap().seq += 1;
    let mut fewer = m.cases[&tn(3)].clone();
    fewer.applications.pop();
    // A new item must come from the batch that commits it.
    let mut stale = m.cases[&tn(3)].clone();
    let old = stale.applications[0].timeline[0].clone();
    stale.applications[0].timeline.push(old);
    for bad in [shorter, rewritten, fewer, stale] {
        let r = commit(&mut m, vec![bad]);
        assert!(matches!(r, Err(StoreError::InvalidBatch(_))), "{r:?}");
    }
    m.check(&store);
}

#[test]
fn event_index_finds_every_id_across_buckets_and_parts() {
    let at = SledAt::new();
    event_index(MemStore::new());
    event_index(at.open());
}

/// An id in its own bucket (the UUIDv7 timestamp `ms`).
fn eid_at(ms: u64, n: u64) -> EventId {
    let mut b = eid(n).0;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    EventId(b)
}

fn event_index<S: Store>(store: S) {
    let mut m = Model::default();
    // 3 commits of 1,000: ids 1..=2,500 all in bucket 0 (more than two full
    // parts), the rest spread over buckets 16 ms apart.
    let mut all = Vec::new();
    for _ in 0..3 {
        let entries = entries_after(&m.head, 1000, 10, 0);
        let ids: Vec<(EventId, u64)> = entries
            .iter()
            .map(|e| {
                let n = e.seq;
                let id = if n <= 2500 { eid(n) } else { eid_at(1_700_000_000_000 + 16 * n, n) };
                (id, e.seq)
            })
            .collect();
        let b = CommitBatch { event_ids: ids.clone(), ..plain_batch(&m.head, m.tree.frontier(), entries) };
        store.commit(b.clone()).unwrap();
        m.apply(&b);
        all.extend(ids);
    }
    for (id, seq) in &all {
        assert_eq!(store.event_seq(id).unwrap(), Some(*seq), "{id}");
    }
    let ids: Vec<EventId> =
        all.iter().map(|(id, _)| *id).chain([eid(9999), eid_at(1_800_000_000_000, 1)]).collect();
    let got = store.event_seqs(&ids).unwrap();
    let want: Vec<Option<u64>> = all.iter().map(|(_, s)| Some(*s)).chain([None, None]).collect();
    assert_eq!(got, want);
    m.check(&store);
}

#[test]
fn case_values_are_written_behind_the_log_and_read_first() {
    let at = SledAt::new();
    let store = at.open();
    let mut m = Model::default();
    // Two commits changing a case: the log and head advance, the written
    // projection stays behind, readers see the newest case.
    for serial in [1, 2] {
        let entries = entries_after(&m.head, 1, 10, 0);
        let seq = m.head.last_seq + 1;
        let b = CommitBatch {
            cases: vec![case(serial, seq, 1)],
            ..plain_batch(&m.head, m.tree.frontier(), entries)
        };
        store.commit(b.clone()).unwrap();
        m.apply(&b);
        assert_eq!(store.projected_through().unwrap(), 0);
        m.check(&store);
    }
    // Another handle on the same directory after a crash has only what was written.
    drop(store);
    let crashed = at.open();
    assert_eq!(crashed.projected_through().unwrap(), 0);
    assert_eq!(crashed.cases().count(), 0);
    assert_eq!(crashed.head().unwrap(), m.head);
    // Handed back and written, they survive a reopen.
    crashed.stage_replayed(m.cases.values().cloned().collect()).unwrap();
    m.check(&crashed);
    crashed.flush_projection().unwrap();
    assert_eq!(crashed.projected_through().unwrap(), m.head.last_seq);
    drop(crashed);
    m.check(&at.open());
}

/// A store written before the projection commitment existed (no `D` key),
/// or by a writer that did not keep it (a stale one): the commitment is
/// computed from its pairs when first needed, and kept from then on.
#[test]
fn a_store_without_a_projection_commitment_gets_one_at_open() {
    let at = SledAt::new();
    let ops: Vec<Op> = (0..6)
        .map(|i| Op::Commit {
            n: 3,
            big: false,
            cases: vec![(i, 1), (i + 1, 2)],
            standard: None,
            events: 3,
            fault: None,
        })
        .collect();
    let (_, store) = run(&ops, |s| s, |s| s, at.open());
    store.flush_projection().unwrap();
    let kept = store.projection_commitment().unwrap().unwrap();
    assert!(kept.projected_through > 0);
    drop(store);
    for change in [None, Some(b"stale".to_vec())] {
        let db = raw_sled(at.dir.path());
        match &change {
            None => {
                db.remove(b"D").unwrap();
            }
            Some(v) => {
                db.insert(b"D", v.clone()).unwrap();
            }
        }
        db.flush().unwrap();
        drop(db);
        let store = at.open();
        assert_eq!(store.projection_commitment().unwrap().unwrap(), kept, "after {change:?}");
        drop(store);
    }
    // Stored again (the next write, or a recomputation, stores it).
    let store = at.open();
    assert_eq!(store.recompute_projection_commitment().unwrap(), kept);
    drop(store);
    // A case value altered at rest changes the recomputed commitment, not
    // the kept one (the stored state describes the head, so it is used).
    let db = raw_sled(at.dir.path());
    let (k, mut v) = db.scan_prefix(b"C").next().unwrap().map(|(k, v)| (k, v.to_vec())).unwrap();
    *v.last_mut().unwrap() ^= 1;
    db.insert(k, v).unwrap();
    db.flush().unwrap();
    drop(db);
    let store = at.open();
    assert_eq!(store.projection_commitment().unwrap().unwrap(), kept);
    assert_ne!(store.recompute_projection_commitment().unwrap(), kept);
}
