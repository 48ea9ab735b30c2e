//! The benchmark's traffic: the simulator's seeded citizen journeys
//! ([`mpp_sim::Plan`]) turned into hub events, interleaved across many open
//! cases the way a mall's counters interleave them.
//!
//! Every case is opened by the front office (agency `mpp-<region>`, service
//! `loket`) with the lookup PIN [`BENCH_PIN`] under the bench's pepper, so
//! lookups and watches can read any case the workload made. Events are kept
//! as the core's [`EventBody`], so that the same step becomes either a raw
//! protobuf envelope (published straight to JetStream) or an agency kit
//! [`OutgoingEvent`] (published through the outbox).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use mpp_agency_kit::{EventBuilder, OutgoingEvent, SystemClock};
use mpp_core::event::Target;
use mpp_core::ids::{AgencyId, ApplicationId, OfficerId, RegionCode, ServiceId, TrackingNumber};
use mpp_core::pin::{pin_verifier, Pin, PinPepper};
use mpp_core::EventBody;
use mpp_proto::v1 as pb;
use mpp_sim::{Journey, Plan, Rng};
use sha2::{Digest, Sha256};

/// The MPP every bench case belongs to (Kota Bengkulu).
pub(crate) const REGION: &str = "1771";

/// The lookup PIN of every bench case.
pub(crate) const BENCH_PIN: &str = "271828";

/// The bench's PIN pepper: written to a file for the hubs it starts, and
/// used to compute every case's PIN verifier. Not a secret.
pub(crate) const BENCH_PEPPER: &[u8] = b"mpp-bench-pin-pepper-not-a-secret";

/// The front office's service id: case openings.
pub(crate) const FRONT_OFFICE_SERVICE: &str = "loket";

/// The year in the agencies' register numbers (application ids).
const APPLICATION_YEAR: u32 = 2026;

/// Streets of Kota Bengkulu, for the sealed home addresses.
const STREETS: [&str; 8] = [
    "Jl. Jenderal Sudirman",
    "Jl. Suprapto",
    "Jl. S. Parman",
    "Jl. Pariwisata",
    "Jl. Soekarno-Hatta",
    "Jl. Kapuas Raya",
    "Jl. Salak Raya",
    "Jl. WR. Supratman",
];

/// Kelurahan of Kota Bengkulu with their kecamatan and postcode.
const KELURAHAN: [(&str, &str, &str); 6] = [
    ("Padang Jati", "Ratu Samban", "38222"),
    ("Tanah Patah", "Ratu Agung", "38224"),
    ("Sawah Lebar", "Ratu Agung", "38222"),
    ("Lingkar Barat", "Gading Cempaka", "38225"),
    ("Pasar Melintang", "Teluk Segara", "38118"),
    ("Kandang Limun", "Muara Bangka Hulu", "38371"),
];

/// Cases open at once in the generated stream: each next event belongs to
/// one of them, picked at random, so a batch of 1,000 messages touches
/// several hundred different cases, as at a busy mall.
pub(crate) const OPEN_CASES_DEFAULT: usize = 2048;

/// One event of the workload, in the core's vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// The publishing agency.
    pub(crate) agency: AgencyId,
    /// Its service.
    pub(crate) service: ServiceId,
    /// Case, application or catalogue.
    pub(crate) target: Target,
    /// The acting officer.
    pub(crate) officer: OfficerId,
    /// What happened.
    pub(crate) body: EventBody,
}

impl Step {
    /// `mpp.events.<agency>.<service>`.
    pub(crate) fn subject(&self) -> String {
        format!("mpp.events.{}.{}", self.agency, self.service)
    }

    /// The protobuf envelope, with a fresh UUIDv7 event id and `now_ms` as
    /// the time it occurred.
    pub(crate) fn envelope(&self, region: RegionCode, now_ms: i64) -> pb::Envelope {
        let (case_id, application_id) = match &self.target {
            Target::Catalogue => (String::new(), String::new()),
            Target::Case(tn) => (tn.to_string(), String::new()),
            Target::Application(tn, app) => (tn.to_string(), app.to_string()),
        };
        pb::Envelope {
            schema_version: 1,
            event_id: uuid::Uuid::now_v7().hyphenated().to_string(),
            case_id,
            region_code: region.to_string(),
            agency_id: self.agency.to_string(),
            service_id: self.service.to_string(),
            application_id,
            occurred_at_ms: now_ms,
            officer: self.officer.to_string(),
            body: Some(mpp_wire::body_to_wire(&self.body)),
            signature: None,
        }
    }

    /// Whether the event adds an item to an application's timeline (every
    /// accepted application event does; case openings and standards do not).
    pub(crate) fn adds_timeline_item(&self) -> bool {
        matches!(self.target, Target::Application(..))
    }
}

/// Builds agency kit events (validated like an agency service does), one
/// [`EventBuilder`] per agency.
#[derive(Debug, Default)]
pub(crate) struct KitEvents {
    builders: HashMap<AgencyId, EventBuilder>,
}

impl KitEvents {
    /// The step as the agency's service would publish it.
    pub(crate) fn build(&mut self, region: RegionCode, step: &Step) -> Result<OutgoingEvent> {
        let builder = self
            .builders
            .entry(step.agency.clone())
            .or_insert_with(|| EventBuilder::new(region, step.agency.clone(), Arc::new(SystemClock)));
        builder
            .build(&step.service, step.target.clone(), &step.officer, step.body.clone())
            .map_err(|e| anyhow!("the kit refused a bench event: {e}"))
    }
}

fn agency(s: &str) -> Result<AgencyId> {
    AgencyId::parse(s).map_err(|e| anyhow!("agency id {s:?}: {e}"))
}

fn service(s: &str) -> Result<ServiceId> {
    ServiceId::parse(s).map_err(|e| anyhow!("service id {s:?}: {e}"))
}

fn officer(s: &str) -> Result<OfficerId> {
    OfficerId::parse(s).map_err(|e| anyhow!("officer id {s:?}: {e}"))
}

/// Every service of the simulator's journeys, as (agency, service).
pub(crate) fn services() -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<(&str, &str)> = Journey::ALL
        .iter()
        .flat_map(|j| j.services().iter().map(|s| (s.agency_id(), s.service_id())))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The service standards of every service the journeys use (version
/// `version`): published first, so the hub knows the services.
pub(crate) fn standards(version: u32) -> Result<Vec<Step>> {
    services()
        .into_iter()
        .map(|(a, s)| {
            Ok(Step {
                agency: agency(a)?,
                service: service(s)?,
                target: Target::Catalogue,
                officer: officer("admin-katalog")?,
                body: EventBody::ServiceStandardPublished {
                    name_id: format!("Layanan {s}"),
                    name_en: format!("Service {s}"),
                    completion_working_days: 10,
                    fee_idr: 50_000,
                    requirements: vec!["KTP-el".to_owned()],
                    fiktif_positif: false,
                    version,
                    collection: None,
                },
            })
        })
        .collect()
}

/// One generated case: its tracking number and its events in order.
#[derive(Debug, Clone)]
pub(crate) struct CaseSteps {
    /// The case.
    pub(crate) tracking_number: TrackingNumber,
    /// Its events, the opening first.
    pub(crate) steps: Vec<Step>,
}

/// Seeded generator of cases (each a simulator journey).
#[derive(Debug)]
pub(crate) struct Cases {
    rng: Rng,
    region: RegionCode,
    pepper: PinPepper,
    pin: Pin,
    next_serial: u64,
    now_ms: i64,
}

impl Cases {
    /// Cases with serials from `first_serial` on, from `seed`.
    pub(crate) fn new(seed: u64, first_serial: u64) -> Result<Self> {
        Ok(Self {
            rng: Rng::new(seed),
            region: region()?,
            pepper: PinPepper::from_bytes(BENCH_PEPPER).map_err(|e| anyhow!("{e}"))?,
            pin: Pin::parse(BENCH_PIN).context("bench PIN")?,
            next_serial: first_serial,
            now_ms: now_ms(),
        })
    }

    /// The next case.
    pub(crate) fn next_case(&mut self) -> Result<CaseSteps> {
        let serial = self.next_serial;
        self.next_serial += 1;
        let tn =
            TrackingNumber::new(self.region, serial).ok_or_else(|| anyhow!("serial {serial} too large"))?;
        let journey = *self.rng.pick(&Journey::ALL);
        let plan = Plan::random(journey, REGION, &mut self.rng);
        let mut steps = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let Some(body) = step.action.event(self.now_ms) else {
                // The opening: the front office, with the PIN verifier.
                let verifier = pin_verifier(&self.pepper, &tn, &self.pin);
                let nik_hash = match plan.citizen() {
                    Some(c) => Sha256::digest(c.nik.as_bytes()).to_vec(),
                    None => vec![0; 32],
                };
                let front_officer =
                    officer(plan.officers.first().map_or("petugas-loket-01", String::as_str))?;
                steps.push(Step {
                    agency: agency(&format!("mpp-{REGION}"))?,
                    service: service(FRONT_OFFICE_SERVICE)?,
                    target: Target::Case(tn),
                    officer: front_officer.clone(),
                    body: EventBody::CaseOpened { pin_verifier: verifier.to_vec(), nik_keyed_hash: nik_hash },
                });
                // Then the citizen's contact details, sealed under their own
                // key (DESIGN invariant 7), as the front office records them.
                if let Some(citizen) = plan.citizen() {
                    steps.push(Step {
                        agency: agency(&format!("mpp-{REGION}"))?,
                        service: service(FRONT_OFFICE_SERVICE)?,
                        target: Target::Case(tn),
                        officer: front_officer,
                        body: self.sealed_personal_data(serial, citizen)?,
                    });
                }
                continue;
            };
            let slot = step.app.ok_or_else(|| anyhow!("an application step without a slot"))?;
            let svc = plan.service(slot).ok_or_else(|| anyhow!("slot {slot} out of range"))?;
            // The agency's own register number, as back offices number
            // their files: agency, service, region, year, serial, slot.
            let app = ApplicationId::parse(&format!(
                "{}-{}-{REGION}-{}-{serial:07}-{slot}",
                svc.agency_id().to_uppercase(),
                svc.service_id().to_uppercase(),
                APPLICATION_YEAR
            ))
            .map_err(|e| anyhow!("application id: {e}"))?;
            steps.push(Step {
                agency: agency(svc.agency_id())?,
                service: service(svc.service_id())?,
                target: Target::Application(tn, app),
                officer: officer(plan.officers.get(slot + 1).map_or("petugas-01", String::as_str))?,
                body,
            });
        }
        Ok(CaseSteps { tracking_number: tn, steps })
    }

    /// The citizen's name, NIK, mobile number, e-mail and home address as
    /// JSON, sealed with ChaCha20-Poly1305 under a key of their own (derived
    /// here from the case serial; a real front office draws it at random and
    /// keeps it in its key store): what a `personal_data_sealed` event
    /// carries, 16 bytes of tag on top of the plaintext.
    fn sealed_personal_data(&mut self, serial: u64, c: &mpp_sim::citizen::Citizen) -> Result<EventBody> {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
        let street = *self.rng.pick(&STREETS);
        let (kelurahan, kecamatan, postcode) = *self.rng.pick(&KELURAHAN);
        let alamat = format!(
            "{street} No. {}, RT {:03}/RW {:03}, Kel. {kelurahan}, Kec. {kecamatan}, Kota Bengkulu {postcode}",
            1 + self.rng.below(120),
            1 + self.rng.below(12),
            1 + self.rng.below(6)
        );
        let email = format!(
            "{}{}@{}",
            c.nama.to_lowercase().replace(' ', "."),
            self.rng.below(100),
            self.rng.pick(&["gmail.com", "yahoo.co.id", "gmail.com", "outlook.com"])
        );
        let plaintext = serde_json::json!({
            "nama": c.nama, "nik": c.nik, "telepon": c.telepon, "email": email, "alamat": alamat,
        })
        .to_string();
        let key_bytes = Sha256::digest([b"mpp-bench-citizen-key".as_slice(), &serial.to_be_bytes()].concat());
        let key_id = Sha256::digest(key_bytes)[..mpp_core::limits::KEY_ID_BYTES].to_vec();
        let mut nonce = [0u8; mpp_core::limits::SEAL_NONCE_BYTES];
        nonce[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &key_bytes).map_err(|_| anyhow!("ChaCha20-Poly1305 key"))?,
        );
        let mut ciphertext = plaintext.into_bytes();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut ciphertext)
            .map_err(|_| anyhow!("sealing the personal data"))?;
        Ok(EventBody::PersonalDataSealed { key_id, nonce: nonce.to_vec(), ciphertext })
    }
}

/// An endless stream of events from `open` interleaved cases: each next
/// event is the next step of a case picked at random; a finished case is
/// replaced by a new one.
#[derive(Debug)]
pub(crate) struct Interleaved {
    cases: Cases,
    open: Vec<std::vec::IntoIter<Step>>,
    open_target: usize,
    pick: Rng,
    /// Tracking numbers of the cases whose opening was handed out so far
    /// (the first `remember`).
    pub(crate) started: Vec<TrackingNumber>,
    started_max: usize,
}

impl Interleaved {
    /// `open` cases at once, remembering up to `remember` tracking numbers.
    pub(crate) fn new(seed: u64, first_serial: u64, open: usize, remember: usize) -> Result<Self> {
        Ok(Self {
            cases: Cases::new(seed, first_serial)?,
            open: Vec::with_capacity(open.max(1)),
            open_target: open.max(1),
            pick: Rng::new(seed ^ 0x5eed),
            started: Vec::new(),
            started_max: remember,
        })
    }
}

impl Interleaved {
    /// The next event.
    pub(crate) fn next_step(&mut self) -> Result<Step> {
        loop {
            while self.open.len() < self.open_target {
                let c = self.cases.next_case()?;
                self.open.push(c.steps.into_iter());
            }
            let i = self.pick.below(self.open.len() as u64) as usize;
            if let Some(step) = self.open[i].next() {
                if let Target::Case(tn) = step.target {
                    if self.started.len() < self.started_max {
                        self.started.push(tn);
                    }
                }
                return Ok(step);
            }
            self.open.swap_remove(i);
        }
    }

    /// The region of every event.
    pub(crate) fn region(&self) -> RegionCode {
        self.cases.region
    }
}

/// The bench's region code.
pub(crate) fn region() -> Result<RegionCode> {
    RegionCode::parse(REGION).map_err(|e| anyhow!("region {REGION}: {e}"))
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
