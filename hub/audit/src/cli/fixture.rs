//! A generated, realistic stream for tests and measurements (hidden
//! `mpp-hub audit gen-fixture`): several MPPs (regions), eight agency
//! services, cases with one to three applications following realistic
//! journeys (documents requested, fees, appointments and inspections,
//! rejections, withdrawals, collection), new versions of service standards,
//! and the bad input a real stream carries (undecodable bytes, empty
//! messages, subject mismatches, bad check digits, unknown cases and
//! services, illegal transitions, stale standards, resent messages and
//! reused event ids). Every one of the 13 event types occurs.
//!
//! Deterministic: the same seed gives the same messages, byte for byte.
//! Bounded: at most [`ACTIVE_CASES_MAX`] cases in progress and
//! [`RECENT_MESSAGES_MAX`] recent messages are held.

use std::collections::VecDeque;
use std::io::Write;

use anyhow::{bail, Context};
use bytes::Bytes;
use mpp_core::checkpoint::{Checkpoint, KeyId, Origin, SignedCheckpoint};
use mpp_core::ids::{RegionCode, TrackingNumber};
use mpp_core::{EventBody, EventKind, UncheckedEnvelope};
use mpp_store::{SledStore, Store};
use prost::Message as _;
use ring::signature::KeyPair as _;

use super::{say, GenFixtureArgs, Progress, PublicKey};
use mpp_ledger::ledger::{Ledger, RawMessage};

/// Cases in progress at once.
pub const ACTIVE_CASES_MAX: usize = 400;

/// Recent messages kept for resends and reused ids.
pub const RECENT_MESSAGES_MAX: usize = 64;

/// Messages per ledger commit while filling a store.
pub const FILL_BATCH_MESSAGES_MAX: usize = 4096;

/// Time of record of the first message: 2025-01-06T00:00:00Z (a Monday), ns.
pub const T0_NS: i64 = 1_736_121_600_000_000_000;

/// Longest gap between two messages, in seconds (the mean is half of it:
/// a million messages span about a year).
pub const GAP_SECONDS_MAX: u64 = 60;

/// One case in this many is slow.
const SLOW_CASE_ONE_IN: u64 = 8;

/// A slow case is passed over this many times in a row on average.
const SLOW_CASE_SKIPS: u64 = 30;

/// (agency, service, name in Bahasa Indonesia, name in English, working
/// days, fee in rupiah, fiktif positif).
const SERVICES: [(&str, &str, &str, &str, u32, i64, bool); 8] = [
    ("dukcapil", "kk", "Kartu Keluarga", "Family card", 3, 0, false),
    ("dukcapil", "ktp-el", "KTP Elektronik", "Electronic ID card", 5, 0, false),
    ("dukcapil", "akta-lahir", "Akta Kelahiran", "Birth certificate", 3, 0, false),
    ("imigrasi", "paspor", "Paspor", "Passport", 4, 350_000, false),
    ("dpmptsp", "pbg", "Persetujuan Bangunan Gedung", "Building approval", 20, 500_000, true),
    ("pdam", "sambungan-baru", "Sambungan Baru Air", "New water connection", 10, 750_000, false),
    ("pln", "pasang-baru", "Pasang Baru Listrik", "New electricity connection", 7, 1_000_000, false),
    ("bank-bengkulu", "rekening", "Pembukaan Rekening", "Account opening", 1, 0, false),
];

/// The MPPs: Kota Bengkulu, Seluma, Lebong.
const REGIONS: [&str; 3] = ["1771", "1705", "1707"];

use EventKind as K;

/// Journeys an application follows (its application events in order).
const JOURNEYS: [&[EventKind]; 7] = [
    &[K::ApplicationFiled, K::ReviewStarted, K::Issued, K::Collected],
    &[
        K::ApplicationFiled,
        K::DocumentsRequested,
        K::DocumentsReceived,
        K::ReviewStarted,
        K::FeeAssessed,
        K::PaymentReceived,
        K::Issued,
        K::Collected,
    ],
    &[
        K::ApplicationFiled,
        K::ReviewStarted,
        K::AppointmentScheduled,
        K::ReviewStarted,
        K::FeeAssessed,
        K::PaymentReceived,
        K::AppointmentScheduled,
        K::Issued,
        K::Collected,
    ],
    &[K::ApplicationFiled, K::ReviewStarted, K::Rejected],
    &[K::ApplicationFiled, K::Withdrawn],
    &[K::ApplicationFiled, K::DocumentsRequested, K::Withdrawn],
    &[K::ApplicationFiled, K::ReviewStarted, K::FeeAssessed, K::PaymentReceived, K::Issued],
];

/// The core's seeded generator (SplitMix64), drawn from as the fixture
/// always has, so a seed still gives byte-identical fixtures: unlike
/// [`mpp_core::rng::Rng::below`], `below(0)` here draws a number (and gives 0).
#[derive(Debug, Clone)]
struct Rng(mpp_core::rng::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(mpp_core::rng::Rng::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes32(&mut self) -> Vec<u8> {
        (0..4).flat_map(|_| self.next().to_be_bytes()).collect()
    }
}

#[derive(Debug, Clone)]
struct ActiveApp {
    id: String,
    service: usize,
    journey: &'static [EventKind],
    pos: usize,
}

#[derive(Debug, Clone)]
struct ActiveCase {
    tn: String,
    region: &'static str,
    apps: Vec<ActiveApp>,
    /// A slow case advances one time in [`SLOW_CASE_SKIPS`] it is picked
    /// (a late agency, or a citizen who takes weeks).
    slow: bool,
    /// The service whose agency opened the case (it alone may seal and
    /// erase the case's personal data).
    opener: usize,
    /// The serial, from which the personal-data key id is made.
    serial: u64,
    /// 0: no personal data yet; 1: sealed; 2: erased.
    personal: u8,
}

/// The generator: an endless iterator of stream messages.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    seed: u64,
    stream_seq: u64,
    time_ns: i64,
    events: u64,
    next_serial: u64,
    versions: [u32; SERVICES.len()],
    active: Vec<ActiveCase>,
    recent: VecDeque<(RawMessage, String)>,
    /// Standards still to publish first.
    published: usize,
}

impl Generator {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            seed,
            stream_seq: 0,
            time_ns: T0_NS,
            events: 0,
            next_serial: 1,
            versions: [0; SERVICES.len()],
            active: Vec::new(),
            recent: VecDeque::new(),
            published: 0,
        }
    }

    fn event_id(&mut self) -> String {
        self.events += 1;
        let n = self.events;
        let ms = (self.time_ns / 1_000_000) as u64;
        let hex = format!("{ms:012x}");
        format!(
            "{}-{}-7{:03x}-{:04x}-{:012x}",
            &hex[..8],
            &hex[8..12],
            self.seed & 0xfff,
            0x8000 | ((self.seed >> 12) & 0x3fff),
            n & 0xffff_ffff_ffff
        )
    }

    fn envelope(
        &mut self,
        case: &str,
        app: &str,
        region: &str,
        service: usize,
        body: EventBody,
    ) -> UncheckedEnvelope {
        let (agency, svc, ..) = SERVICES[service];
        let record_ms = self.time_ns / 1_000_000;
        UncheckedEnvelope {
            schema_version: 1,
            event_id: self.event_id(),
            case_id: case.to_owned(),
            region_code: region.to_owned(),
            agency_id: agency.to_owned(),
            service_id: svc.to_owned(),
            application_id: app.to_owned(),
            occurred_at_ms: record_ms - self.rng.below(60_000) as i64,
            officer: format!("petugas-{}", 1 + self.rng.below(40)),
            body: Some(body),
        }
    }

    fn standard(&mut self, service: usize, version: u32) -> UncheckedEnvelope {
        let (_, _, name_id, name_en, days, fee, fiktif) = SERVICES[service];
        // Later versions shorten or lengthen the standard a little.
        let days = (days + (version - 1) % 3).max(1);
        let body = EventBody::ServiceStandardPublished {
            name_id: name_id.to_owned(),
            name_en: name_en.to_owned(),
            completion_working_days: days,
            fee_idr: fee,
            requirements: vec!["KTP-el".to_owned(), "Kartu Keluarga".to_owned()],
            fiktif_positif: fiktif,
            version,
            // The fixture's log predates collection places: without one it
            // stays byte-identical.
            collection: None,
        };
        self.envelope("", "", REGIONS[0], service, body)
    }

    fn app_body(&mut self, kind: EventKind, service: usize) -> EventBody {
        let record_ms = self.time_ns / 1_000_000;
        let fee = SERVICES[service].5.max(50_000);
        let n = self.rng.below(1_000_000);
        match kind {
            K::ApplicationFiled => EventBody::ApplicationFiled {
                documents: vec!["formulir permohonan".to_owned(), "fotokopi KTP-el".to_owned()],
            },
            K::DocumentsRequested => EventBody::DocumentsRequested {
                documents: vec!["surat pengantar RT/RW".to_owned()],
                counter: format!("Loket {}", 1 + n % 12),
                note: "bawa dokumen asli".to_owned(),
            },
            K::DocumentsReceived => {
                EventBody::DocumentsReceived { documents: vec!["surat pengantar RT/RW".to_owned()] }
            }
            K::ReviewStarted => EventBody::ReviewStarted,
            K::FeeAssessed => EventBody::FeeAssessed {
                amount_idr: fee,
                payment_channel: "Bank Bengkulu".to_owned(),
                billing_code: format!("820{n:09}"),
                due_at_ms: 0,
            },
            K::PaymentReceived => {
                EventBody::PaymentReceived { amount_idr: fee, payment_reference: format!("NTPN{n:010}") }
            }
            K::AppointmentScheduled => EventBody::AppointmentScheduled {
                kind: ["interview", "inspection", "survey", "installation"][(n % 4) as usize].to_owned(),
                at_ms: record_ms + 2 * 86_400_000,
                place: format!("MPP Lantai {}", 1 + n % 3),
            },
            K::Issued => EventBody::Issued {
                document_number: format!("{}-{n:07}", SERVICES[service].1.to_uppercase()),
            },
            K::Collected => EventBody::Collected,
            K::Rejected => EventBody::Rejected {
                reason_code: "D-07".to_owned(),
                reason: "berkas tidak memenuhi syarat".to_owned(),
            },
            K::Withdrawn => EventBody::Withdrawn { reason: "atas permintaan pemohon".to_owned() },
            K::CaseOpened
            | K::ServiceStandardPublished
            | K::PersonalDataSealed
            | K::PersonalDataErased
            | K::PinReissued
            | K::PersonalDataRead => EventBody::ReviewStarted,
        }
    }

    fn encode(u: &UncheckedEnvelope) -> Bytes {
        Bytes::from(mpp_wire::from_unchecked(u).encode_to_vec())
    }

    fn subject(service: usize) -> String {
        format!("mpp.events.{}.{}", SERVICES[service].0, SERVICES[service].1)
    }

    /// The next message's subject, payload and event id (empty for bad bytes).
    fn next_body(&mut self) -> (String, Bytes, String) {
        // The catalogue first, so that most events meet a known service.
        if self.published < SERVICES.len() {
            let s = self.published;
            self.published += 1;
            self.versions[s] = 1;
            let u = self.standard(s, 1);
            return (Self::subject(s), Self::encode(&u), u.event_id);
        }
        let roll = self.rng.below(1000);
        if roll < 3 {
            let s = self.rng.below(SERVICES.len() as u64) as usize;
            // One in four republishes the version in force: rejected as stale.
            let version = if self.rng.below(4) == 0 { self.versions[s] } else { self.versions[s] + 1 };
            self.versions[s] = self.versions[s].max(version);
            let u = self.standard(s, version);
            return (Self::subject(s), Self::encode(&u), u.event_id);
        }
        if roll < 20 {
            return self.bad();
        }
        if roll < 30 {
            if let Some((m, id)) = self.recent.get(self.rng.below(self.recent.len() as u64) as usize).cloned()
            {
                return (m.subject, m.payload, id);
            }
        }
        if roll < 35 {
            if let Some((_, id)) = self.recent.get(self.rng.below(self.recent.len() as u64) as usize).cloned()
            {
                // A new event reusing an earlier id: a duplicate if it was accepted.
                let tn = self.tn(1);
                let mut u = self.envelope(&tn, "p-1", REGIONS[0], 0, EventBody::ReviewStarted);
                u.event_id = id.clone();
                return (Self::subject(0), Self::encode(&u), id);
            }
        }
        if (35..45).contains(&roll) {
            if let Some(m) = self.personal_data() {
                return m;
            }
        }
        if self.active.len() < ACTIVE_CASES_MAX && (self.active.is_empty() || self.rng.below(5) == 0) {
            return self.open_case();
        }
        self.advance()
    }

    /// The next personal-data step of the first active case that has one:
    /// `personal_data_sealed`, later `personal_data_erased`, by the agency
    /// that opened it (no randomness drawn).
    fn personal_data(&mut self) -> Option<(String, Bytes, String)> {
        let case = self.active.iter_mut().find(|c| c.personal < 2)?;
        let key_id = [&case.serial.to_be_bytes()[..], &[0x4b; 8][..]].concat();
        let body = if case.personal == 0 {
            EventBody::PersonalDataSealed {
                key_id,
                nonce: vec![0x6e; 12],
                ciphertext: (0..48).map(|i| (case.serial as u8).wrapping_mul(31).wrapping_add(i)).collect(),
            }
        } else {
            EventBody::PersonalDataErased { key_id }
        };
        case.personal += 1;
        let (tn, region, opener) = (case.tn.clone(), case.region, case.opener);
        let u = self.envelope(&tn, "", region, opener, body);
        Some((Self::subject(opener), Self::encode(&u), u.event_id))
    }

    fn tn(&self, serial: u64) -> String {
        RegionCode::parse(REGIONS[0])
            .ok()
            .and_then(|r| TrackingNumber::new(r, serial))
            .map_or_else(String::new, |t| t.to_string())
    }

    fn open_case(&mut self) -> (String, Bytes, String) {
        let region = REGIONS[self.rng.below(REGIONS.len() as u64) as usize];
        let serial = self.next_serial;
        self.next_serial += 1;
        let tn = RegionCode::parse(region)
            .ok()
            .and_then(|r| TrackingNumber::new(r, serial))
            .map_or_else(String::new, |t| t.to_string());
        let napps = 1 + self.rng.below(3) as usize;
        let mut apps: Vec<ActiveApp> = Vec::with_capacity(napps);
        for i in 0..napps {
            let service = self.rng.below(SERVICES.len() as u64) as usize;
            if apps.iter().any(|a| a.service == service) {
                continue;
            }
            let journey = JOURNEYS[self.rng.below(JOURNEYS.len() as u64) as usize];
            apps.push(ActiveApp { id: format!("P{}-{i}", serial), service, journey, pos: 0 });
        }
        let first = apps[0].service;
        let body =
            EventBody::CaseOpened { pin_verifier: self.rng.bytes32(), nik_keyed_hash: self.rng.bytes32() };
        let u = self.envelope(&tn, "", region, first, body);
        let slow = self.rng.below(SLOW_CASE_ONE_IN) == 0;
        self.active.push(ActiveCase { tn, region, apps, slow, opener: first, serial, personal: 0 });
        (Self::subject(first), Self::encode(&u), u.event_id)
    }

    fn advance(&mut self) -> (String, Bytes, String) {
        let mut ci = self.rng.below(self.active.len() as u64) as usize;
        // A slow case is passed over for a normal one (a few tries, bounded).
        if self.active[ci].slow && self.rng.below(SLOW_CASE_SKIPS) != 0 {
            for _ in 0..8 {
                ci = self.rng.below(self.active.len() as u64) as usize;
                if !self.active[ci].slow {
                    break;
                }
            }
        }
        let case = &mut self.active[ci];
        let open: Vec<usize> =
            (0..case.apps.len()).filter(|&i| case.apps[i].pos < case.apps[i].journey.len()).collect();
        let ai = open[(self.rng.next() % open.len() as u64) as usize];
        let app = &mut case.apps[ai];
        let kind = app.journey[app.pos];
        app.pos += 1;
        let (tn, region, app_id, service) = (case.tn.clone(), case.region, app.id.clone(), app.service);
        if case.apps.iter().all(|a| a.pos >= a.journey.len()) {
            self.active.swap_remove(ci);
        }
        let body = self.app_body(kind, service);
        let u = self.envelope(&tn, &app_id, region, service, body);
        (Self::subject(service), Self::encode(&u), u.event_id)
    }

    fn bad(&mut self) -> (String, Bytes, String) {
        let class = self.rng.below(9);
        let (region, tn, app, service) = match self.active.first() {
            Some(c) => (c.region, c.tn.clone(), c.apps[0].id.clone(), c.apps[0].service),
            None => (REGIONS[0], self.tn(1), "P1-0".to_owned(), 0),
        };
        let mut u = self.envelope(&tn, &app, region, service, EventBody::Collected);
        let id = u.event_id.clone();
        let subject = Self::subject(service);
        match class {
            0 => (subject, Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0x01, 0x02]), String::new()),
            1 => (subject, Bytes::new(), String::new()),
            2 => (Self::subject((service + 3) % SERVICES.len()), Self::encode(&u), id),
            3 => {
                let mut bad = tn.clone().into_bytes();
                if let Some(last) = bad.last_mut() {
                    *last = if *last == b'9' { b'0' } else { *last + 1 };
                }
                u.case_id = String::from_utf8_lossy(&bad).into_owned();
                (subject, Self::encode(&u), id)
            }
            4 => {
                let unknown = 9_000_000_000 + self.rng.below(1_000_000);
                u.case_id = self.tn(unknown);
                u.region_code = REGIONS[0].to_owned();
                u.body = Some(EventBody::ReviewStarted);
                (subject, Self::encode(&u), id)
            }
            5 => {
                u.service_id = "izin-tak-dikenal".to_owned();
                u.body = Some(EventBody::ApplicationFiled { documents: vec![] });
                (format!("mpp.events.{}.izin-tak-dikenal", u.agency_id), Self::encode(&u), id)
            }
            6 => {
                u.body = None;
                (subject, Self::encode(&u), id)
            }
            7 => {
                u.occurred_at_ms = 1_000;
                (subject, Self::encode(&u), id)
            }
            // Collected on an application that is not issued: an illegal transition.
            _ => (subject, Self::encode(&u), id),
        }
    }
}

impl Iterator for Generator {
    type Item = RawMessage;

    fn next(&mut self) -> Option<RawMessage> {
        self.time_ns +=
            (1 + self.rng.below(GAP_SECONDS_MAX)) as i64 * 1_000_000_000 + self.rng.below(1_000_000) as i64;
        self.stream_seq += 1;
        let (subject, payload, id) = self.next_body();
        let m = RawMessage {
            stream_seq: self.stream_seq,
            stream_time_ns: self.time_ns,
            subject,
            payload,
            redrive: None,
        };
        if !id.is_empty() {
            if self.recent.len() >= RECENT_MESSAGES_MAX {
                self.recent.pop_front();
            }
            self.recent.push_back((m.clone(), id));
        }
        Some(m)
    }
}

/// A deterministic Ed25519 signing key for fixtures and tests.
#[derive(Debug)]
pub struct FixtureKey {
    pair: ring::signature::Ed25519KeyPair,
    origin: Origin,
}

impl FixtureKey {
    /// The key derived from `seed`, signing as `mpp-hub/<hub_id>`.
    pub fn new(seed: u64, hub_id: &str) -> anyhow::Result<Self> {
        let mut rng = Rng::new(seed ^ 0x005E_ED0F_CAFE);
        let secret: Vec<u8> = rng.bytes32();
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&secret)
            .map_err(|_| anyhow::anyhow!("ring refused a 32-byte Ed25519 seed"))?;
        Ok(FixtureKey { pair, origin: Origin::for_hub(hub_id).context("hub id")? })
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey { bytes }
    }

    /// Signs a checkpoint of the store's current head, timestamped with the
    /// last entry's time (deterministic), and stores it.
    pub fn sign_head<S: Store>(&self, store: &S) -> anyhow::Result<SignedCheckpoint> {
        let (head, frontier) = store.head_and_frontier()?;
        let last = if head.last_seq == 0 { None } else { store.entry(head.last_seq)? };
        let time_ns = last.as_ref().map_or(0, |e| e.stream_time_ns);
        let cp = Checkpoint {
            origin: self.origin.clone(),
            key_id: KeyId::of(&self.public().bytes),
            tree_size: head.last_seq,
            root_hash: frontier.root(),
            head_hash: head.head_hash,
            last_stream_seq: head.last_stream_seq,
            last_entry_time_ns: time_ns,
            signed_at_ms: time_ns.div_euclid(1_000_000),
            projection: store.projection_commitment()?,
        };
        let signed = self.sign(cp);
        store.put_checkpoint(&signed)?;
        Ok(signed)
    }

    /// Signs any checkpoint (tests forge with it).
    pub fn sign(&self, cp: Checkpoint) -> SignedCheckpoint {
        cp.sign(|m| {
            let mut sig = [0u8; 64];
            sig.copy_from_slice(self.pair.sign(m).as_ref());
            sig
        })
    }
}

/// Fills `store` (empty or not) with the next `entries` messages of the
/// generator through the real ledger, in commits of at most
/// [`FILL_BATCH_MESSAGES_MAX`]; with `key`, signs and stores a checkpoint
/// whenever the log passes a multiple of `checkpoint_every` entries and at
/// the end.
pub fn fill<S: Store>(
    store: &S,
    generator: &mut Generator,
    entries: u64,
    key: Option<(&FixtureKey, u64)>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut ledger = Ledger::open(store.clone()).context("opening the ledger")?;
    let mut left = entries;
    let mut batch = Vec::with_capacity(FILL_BATCH_MESSAGES_MAX);
    while left > 0 {
        let every = key.map_or(u64::MAX, |(_, every)| every.max(1));
        let to_next_checkpoint = every - ledger.head().last_seq % every;
        let n = left.min(FILL_BATCH_MESSAGES_MAX as u64).min(to_next_checkpoint);
        batch.clear();
        batch.extend(generator.by_ref().take(n as usize));
        let out = ledger.commit_batch(&batch).context("committing generated messages")?;
        if out.gap.is_some() || out.skipped > 0 {
            bail!("the generator's stream does not continue the store's log: {out:?}");
        }
        left -= n;
        progress.tick(n);
        if let Some((k, every)) = key {
            if ledger.head().last_seq % every.max(1) == 0 && left > 0 {
                k.sign_head(store)?;
            }
        }
    }
    // As a hub does when it stops: the held-back case values written, then
    // the head signed (again, if it was signed already: the projection
    // commitment moved).
    ledger.flush_projection().context("writing the held-back case values")?;
    if let Some((k, _)) = key.filter(|_| entries > 0) {
        k.sign_head(store)?;
    }
    Ok(())
}

/// `mpp-hub audit gen-fixture`.
pub(crate) fn run(args: &GenFixtureArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    if args.data_dir.exists() && std::fs::read_dir(&args.data_dir)?.next().is_some() {
        bail!("{} is not empty: gen-fixture writes only into a new directory", args.data_dir.display());
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let store = SledStore::open(&args.data_dir)?;
    let key = FixtureKey::new(args.seed, "fixture")?;
    if args.checkpoint_every > 0 {
        let path = args.public_key_out.as_ref().context("--checkpoint-every needs --public-key-out")?;
        std::fs::write(path, format!("{}\n", hex::encode(key.public().bytes)))?;
    }
    let signer = (args.checkpoint_every > 0).then_some((&key, args.checkpoint_every));
    let mut progress = Progress::new("gen-fixture");
    fill(&store, &mut Generator::new(args.seed), args.entries, signer, &mut progress)?;
    progress.finish();
    let head = store.head()?;
    say(
        out,
        &format!(
            "wrote {} entries to {}, head {}",
            head.last_seq,
            args.data_dir.display(),
            hex::encode(head.head_hash)
        ),
    )?;
    Ok(0)
}
