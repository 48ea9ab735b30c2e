//! What a simulated citizen does: a [`Journey`] (a reason to come to the
//! MPP, spanning agencies) becomes a [`Plan`], a list of [`Step`]s in the
//! order the RPCs are made: the front office opens the case, then each
//! agency files its application into it with the tracking number and walks
//! it through its own steps.
//!
//! Steps are grouped into **rounds** (visits). Round 0 is the first visit:
//! the case is opened, every application filed, and the agencies do what
//! they can until each application is finished or waits on the citizen
//! (documents to bring, a fee to pay, an interview to attend, a document to
//! collect). Each later round starts with what the citizen does (brings the
//! documents, pays, attends, collects or withdraws), after which the
//! agencies go on. So the end of a round is a moment a citizen would look
//! the case up and see what they must do next; [`Plan::round_ends`] gives
//! those moments.
//!
//! Within a round the applications' steps are interleaved in a seeded order,
//! each application's own steps staying in order. A plan is a pure function
//! of the journey, the per-application [`AppChoice`]s and the generator: the
//! same seed gives the same plan.

use std::fmt;

use mpp_core::EventBody;

use crate::citizen::Citizen;
use crate::rng::Rng;

/// One day, in milliseconds (appointments are booked days ahead).
const DAY_MS: i64 = 86_400_000;

/// Days a simulated citizen is given to pay a fee (sample terms: each
/// agency sets its own due date; the simulator gives them all two weeks).
const FEE_DUE_DAYS: u32 = 14;

/// One reason for a citizen to come to the MPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Journey {
    /// A new small business: NIB and building approval (PBG) at DPMPTSP, a
    /// water connection at PDAM, an electricity connection at PLN.
    UsahaBaru,
    /// A newborn: birth certificate and the updated family card at
    /// Disdukcapil, a savings account for the child at the bank.
    Kelahiran,
    /// A passport at the immigration office: interview, PNBP, printing.
    Paspor,
    /// A land certificate check (pengecekan sertipikat) at the land office.
    Tanah,
}

impl Journey {
    /// Every journey, in the order the first cases of a run cover them.
    pub const ALL: [Journey; 4] = [Journey::UsahaBaru, Journey::Kelahiran, Journey::Paspor, Journey::Tanah];

    /// The name used by `--journey` and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Journey::UsahaBaru => "usaha-baru",
            Journey::Kelahiran => "kelahiran",
            Journey::Paspor => "paspor",
            Journey::Tanah => "tanah",
        }
    }

    /// The journey called `name` (see [`Journey::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.name() == name.trim())
    }

    /// One line for people, in Bahasa Indonesia and English.
    pub fn describe(self) -> &'static str {
        match self {
            Journey::UsahaBaru => {
                "Usaha baru / new small business: NIB + PBG (DPMPTSP), sambungan air (PDAM), pasang baru \
                 listrik (PLN)"
            }
            Journey::Kelahiran => {
                "Kelahiran / newborn: akta kelahiran + KK (Disdukcapil), tabungan anak (bank)"
            }
            Journey::Paspor => "Paspor / passport (Kantor Imigrasi): wawancara, PNBP, cetak, ambil",
            Journey::Tanah => "Tanah / land: pengecekan sertipikat (Kantor Pertanahan, BPN)",
        }
    }

    /// The applications of the journey, one per service, in slot order
    /// (a step's [`Step::app`] indexes this list).
    pub fn services(self) -> &'static [Service] {
        match self {
            Journey::UsahaBaru => {
                &[Service::DpmptspNib, Service::DpmptspPbg, Service::PdamSambungan, Service::PlnPasangBaru]
            }
            Journey::Kelahiran => &[Service::DukcapilAktaLahir, Service::DukcapilKk, Service::BankTabungan],
            Journey::Paspor => &[Service::ImigrasiPaspor],
            Journey::Tanah => &[Service::BpnPengecekan],
        }
    }
}

impl fmt::Display for Journey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The services the simulator files, each at its agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// DPMPTSP: guided NIB registration (OSS-RBA), free.
    DpmptspNib,
    /// DPMPTSP: building approval (PBG): inspection, retribution.
    DpmptspPbg,
    /// PDAM: new water connection: survey, RAB, installation.
    PdamSambungan,
    /// PLN: new electricity connection: survey, bill, installation.
    PlnPasangBaru,
    /// Disdukcapil: birth certificate, free.
    DukcapilAktaLahir,
    /// Disdukcapil: family card, free.
    DukcapilKk,
    /// The bank: savings account, with an initial deposit.
    BankTabungan,
    /// Kantor Imigrasi: ordinary passport: interview, PNBP.
    ImigrasiPaspor,
    /// Kantor Pertanahan: land certificate check, PNBP.
    BpnPengecekan,
}

/// The services that run the simulator's traffic (the front office and
/// every agency service), for addresses and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Agency {
    /// `mpp-frontoffice`.
    FrontOffice,
    /// `mpp-dukcapil`.
    Dukcapil,
    /// `mpp-imigrasi`.
    Imigrasi,
    /// `mpp-bpn`.
    Bpn,
    /// `mpp-pln`.
    Pln,
    /// `mpp-pdam`.
    Pdam,
    /// `mpp-bank`.
    Bank,
    /// `mpp-dpmptsp`.
    Dpmptsp,
}

impl Agency {
    /// Every service, front office first.
    pub const ALL: [Agency; 8] = [
        Agency::FrontOffice,
        Agency::Dukcapil,
        Agency::Imigrasi,
        Agency::Bpn,
        Agency::Pln,
        Agency::Pdam,
        Agency::Bank,
        Agency::Dpmptsp,
    ];

    /// The short name: the binary without `mpp-`, and the flag prefix.
    pub fn name(self) -> &'static str {
        match self {
            Agency::FrontOffice => "frontoffice",
            Agency::Dukcapil => "dukcapil",
            Agency::Imigrasi => "imigrasi",
            Agency::Bpn => "bpn",
            Agency::Pln => "pln",
            Agency::Pdam => "pdam",
            Agency::Bank => "bank",
            Agency::Dpmptsp => "dpmptsp",
        }
    }

    /// The default gRPC address of the service's binary.
    pub fn default_addr(self) -> &'static str {
        match self {
            Agency::FrontOffice => "http://127.0.0.1:50060",
            Agency::Dukcapil => "http://127.0.0.1:50061",
            Agency::Imigrasi => "http://127.0.0.1:50062",
            Agency::Bpn => "http://127.0.0.1:50063",
            Agency::Pln => "http://127.0.0.1:50064",
            Agency::Pdam => "http://127.0.0.1:50065",
            Agency::Bank => "http://127.0.0.1:50066",
            Agency::Dpmptsp => "http://127.0.0.1:50067",
        }
    }
}

impl fmt::Display for Agency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mpp-{}", self.name())
    }
}

impl Service {
    /// The agency service that files it.
    pub fn agency(self) -> Agency {
        match self {
            Service::DpmptspNib | Service::DpmptspPbg => Agency::Dpmptsp,
            Service::PdamSambungan => Agency::Pdam,
            Service::PlnPasangBaru => Agency::Pln,
            Service::DukcapilAktaLahir | Service::DukcapilKk => Agency::Dukcapil,
            Service::BankTabungan => Agency::Bank,
            Service::ImigrasiPaspor => Agency::Imigrasi,
            Service::BpnPengecekan => Agency::Bpn,
        }
    }

    /// The hub's agency id.
    pub fn agency_id(self) -> &'static str {
        self.agency().name()
    }

    /// The hub's service id.
    pub fn service_id(self) -> &'static str {
        match self {
            Service::DpmptspNib => "nib",
            Service::DpmptspPbg => "pbg",
            Service::PdamSambungan => "sambungan",
            Service::PlnPasangBaru => "pasang-baru",
            Service::DukcapilAktaLahir => "akta-lahir",
            Service::DukcapilKk => "kk",
            Service::BankTabungan => "tabungan",
            Service::ImigrasiPaspor => "paspor",
            Service::BpnPengecekan => "pengecekan",
        }
    }

    /// Whether the citizen pays something before the service is issued.
    pub fn has_fee(self) -> bool {
        !matches!(self, Service::DpmptspNib | Service::DukcapilAktaLahir | Service::DukcapilKk)
    }

    /// Whether the citizen attends an appointment (the passport interview).
    pub fn has_interview(self) -> bool {
        self == Service::ImigrasiPaspor
    }
}

/// How an application ends in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// Walked to the end: issued (and collected, where there is something to collect).
    Completed,
    /// Left waiting for documents that were never brought.
    DocumentsPending,
    /// Left waiting for the fee (only services with a fee).
    PaymentPending,
    /// Left with an interview booked and not yet held (only the passport).
    AppointmentPending,
    /// Rejected by the agency after its review.
    Rejected,
    /// Withdrawn by the citizen while it waited on them.
    Withdrawn,
}

impl Fate {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Completed => "completed",
            Fate::DocumentsPending => "documents_pending",
            Fate::PaymentPending => "payment_pending",
            Fate::AppointmentPending => "appointment_pending",
            Fate::Rejected => "rejected",
            Fate::Withdrawn => "withdrawn",
        }
    }
}

/// The choices for one application of a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppChoice {
    /// Documents are found missing at the counter (and brought on the next
    /// visit, unless the fate leaves them pending or withdraws).
    pub documents_missing: bool,
    /// How it ends.
    pub fate: Fate,
}

impl AppChoice {
    /// Straight through: nothing missing, completed.
    pub const COMPLETED: AppChoice = AppChoice { documents_missing: false, fate: Fate::Completed };

    /// A seeded choice: documents missing one time in four; about 72 %
    /// completed, 8 % left awaiting payment, 5 % awaiting documents, 7 % with
    /// an interview booked (passport only), 4 % rejected, 4 % withdrawn. A fate the service cannot have (a payment
    /// without a fee) becomes [`Fate::Completed`].
    pub fn random(service: Service, rng: &mut Rng) -> Self {
        let documents_missing = rng.chance(25);
        let fate = match rng.below(100) {
            0..=71 => Fate::Completed,
            72..=79 => Fate::PaymentPending,
            80..=84 => Fate::DocumentsPending,
            85..=91 => Fate::AppointmentPending,
            92..=95 => Fate::Rejected,
            _ => Fate::Withdrawn,
        };
        Self { documents_missing, fate }.fit(service)
    }

    /// The choice as `service` can have it: no payment without a fee, no
    /// interview without one; documents left pending were missing.
    pub fn fit(mut self, service: Service) -> Self {
        match self.fate {
            Fate::PaymentPending if !service.has_fee() => self.fate = Fate::Completed,
            Fate::AppointmentPending if !service.has_interview() => self.fate = Fate::Completed,
            Fate::DocumentsPending => self.documents_missing = true,
            // Without a fee the citizen can only withdraw while documents wait.
            Fate::Withdrawn if !service.has_fee() => self.documents_missing = true,
            _ => {}
        }
        self
    }
}

/// The kind of an appointment, as the hub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visit {
    /// An interview at the counter (passport).
    Interview,
    /// A site inspection (building approval).
    Inspection,
    /// A site survey (water, electricity).
    Survey,
    /// An installation on site (water, electricity).
    Installation,
}

impl Visit {
    /// The hub's appointment kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Visit::Interview => "interview",
            Visit::Inspection => "inspection",
            Visit::Survey => "survey",
            Visit::Installation => "installation",
        }
    }
}

/// What one step does, in the hub's common vocabulary; the runner turns it
/// into the agency's own RPC (`crate::stack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The front office opens the case (`BukaBerkas`).
    OpenCase {
        /// Who comes to the reception desk.
        citizen: Citizen,
    },
    /// The agency files its application into the case.
    File {
        /// Documents handed in.
        documents: Vec<String>,
    },
    /// Documents are missing: the citizen must bring them.
    RequestDocuments {
        /// What to bring.
        documents: Vec<String>,
        /// Where to bring them.
        counter: String,
        /// A note for the citizen.
        note: String,
    },
    /// The citizen brought the documents.
    ReceiveDocuments {
        /// What was brought.
        documents: Vec<String>,
    },
    /// The agency starts (or, after a held interview or inspection, goes
    /// on with) its review.
    StartReview,
    /// An appointment is booked.
    Schedule {
        /// Interview, inspection, survey or installation.
        visit: Visit,
        /// Days ahead of the moment the step runs (times are the one thing
        /// not taken from the seed).
        days_ahead: u32,
        /// Where.
        place: String,
    },
    /// A fee is assessed: the citizen must pay.
    AssessFee {
        /// Rupiah.
        amount_idr: i64,
        /// What to quote when paying (empty for the bank's deposit).
        billing_code: String,
        /// Where to pay.
        channel: String,
        /// Pay within this many days of the assessment (the agency's due
        /// date; sample terms, not any agency's rule).
        due_days: u32,
    },
    /// The payment arrived.
    ConfirmPayment {
        /// Rupiah.
        amount_idr: i64,
        /// The receipt, NTPN or transaction number.
        reference: String,
    },
    /// The document is issued (or the connection switched on).
    Issue {
        /// Its number.
        document_number: String,
    },
    /// The citizen collected it.
    Collect,
    /// The agency rejects the application.
    Reject {
        /// The agency's own reason code.
        code: String,
        /// Why, for the citizen.
        reason: String,
    },
    /// The citizen withdraws the application.
    Withdraw {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// Stable snake_case name, also the hub event it leads to (`open_case`
    /// leads to `case_opened`, `file` to `application_filed`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::OpenCase { .. } => "open_case",
            Action::File { .. } => "file",
            Action::RequestDocuments { .. } => "request_documents",
            Action::ReceiveDocuments { .. } => "receive_documents",
            Action::StartReview => "start_review",
            Action::Schedule { .. } => "schedule",
            Action::AssessFee { .. } => "assess_fee",
            Action::ConfirmPayment { .. } => "confirm_payment",
            Action::Issue { .. } => "issue",
            Action::Collect => "collect",
            Action::Reject { .. } => "reject",
            Action::Withdraw { .. } => "withdraw",
        }
    }

    /// The event this action asks an agency to publish, with an
    /// appointment booked `days_ahead` days from `now_ms` (Unix ms); `None`
    /// for [`Action::OpenCase`], which the front office performs. Each
    /// agency's inverse mapping (`mpp_agencies::<agency>::request`) turns
    /// it into the agency's RPC.
    pub fn event(&self, now_ms: i64) -> Option<EventBody> {
        let body = match self.clone() {
            Action::OpenCase { .. } => return None,
            Action::File { documents } => EventBody::ApplicationFiled { documents },
            Action::RequestDocuments { documents, counter, note } => {
                EventBody::DocumentsRequested { documents, counter, note }
            }
            Action::ReceiveDocuments { documents } => EventBody::DocumentsReceived { documents },
            Action::StartReview => EventBody::ReviewStarted,
            Action::Schedule { visit, days_ahead, place } => EventBody::AppointmentScheduled {
                kind: visit.as_str().to_owned(),
                at_ms: now_ms + i64::from(days_ahead) * DAY_MS,
                place,
            },
            Action::AssessFee { amount_idr, billing_code, channel, due_days } => EventBody::FeeAssessed {
                amount_idr,
                payment_channel: channel,
                billing_code,
                due_at_ms: now_ms + i64::from(due_days) * DAY_MS,
            },
            Action::ConfirmPayment { amount_idr, reference } => {
                EventBody::PaymentReceived { amount_idr, payment_reference: reference }
            }
            Action::Issue { document_number } => EventBody::Issued { document_number },
            Action::Collect => EventBody::Collected,
            Action::Reject { code, reason } => EventBody::Rejected { reason_code: code, reason },
            Action::Withdraw { reason } => EventBody::Withdrawn { reason },
        };
        Some(body)
    }

    /// The hub event type this action publishes.
    pub fn event_type(&self) -> &'static str {
        match self {
            Action::OpenCase { .. } => "case_opened",
            Action::File { .. } => "application_filed",
            Action::RequestDocuments { .. } => "documents_requested",
            Action::ReceiveDocuments { .. } => "documents_received",
            Action::StartReview => "review_started",
            Action::Schedule { .. } => "appointment_scheduled",
            Action::AssessFee { .. } => "fee_assessed",
            Action::ConfirmPayment { .. } => "payment_received",
            Action::Issue { .. } => "issued",
            Action::Collect => "collected",
            Action::Reject { .. } => "rejected",
            Action::Withdraw { .. } => "withdrawn",
        }
    }
}

/// One RPC of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The visit it belongs to (0 = the first).
    pub round: u32,
    /// The application slot (index into [`Journey::services`]); `None` for
    /// the front office's [`Action::OpenCase`].
    pub app: Option<usize>,
    /// What it does.
    pub action: Action,
}

/// Everything one simulated case does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The journey.
    pub journey: Journey,
    /// The choices per application slot.
    pub choices: Vec<AppChoice>,
    /// The pseudonymous officer of each agency on this case (front office
    /// first, then one per slot).
    pub officers: Vec<String>,
    /// The steps; the first opens the case.
    pub steps: Vec<Step>,
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The number of choices differs from the journey's applications.
    #[error("journey {journey} has {want} applications, {got} choices given")]
    ChoiceCount {
        /// The journey.
        journey: Journey,
        /// Its applications.
        want: usize,
        /// Choices given.
        got: usize,
    },
}

impl Plan {
    /// A plan of `journey` with seeded choices and details.
    pub fn random(journey: Journey, region: &str, rng: &mut Rng) -> Self {
        let choices: Vec<AppChoice> = journey.services().iter().map(|s| AppChoice::random(*s, rng)).collect();
        Self::build(journey, region, &choices, rng)
    }

    /// A plan of `journey` with the given choices (one per application, in
    /// [`Journey::services`] order, each [`AppChoice::fit`] to its service)
    /// and seeded details.
    pub fn with_choices(
        journey: Journey,
        region: &str,
        choices: &[AppChoice],
        rng: &mut Rng,
    ) -> Result<Self, PlanError> {
        let want = journey.services().len();
        if choices.len() != want {
            return Err(PlanError::ChoiceCount { journey, want, got: choices.len() });
        }
        let choices: Vec<AppChoice> =
            journey.services().iter().zip(choices).map(|(s, c)| c.fit(*s)).collect();
        Ok(Self::build(journey, region, &choices, rng))
    }

    fn build(journey: Journey, region: &str, choices: &[AppChoice], rng: &mut Rng) -> Self {
        let citizen = Citizen::random(region, rng);
        let mut officers = vec![format!("petugas-loket-{:02}", rng.range(1, 4))];
        let mut per_app: Vec<Vec<Step>> = Vec::new();
        for (slot, (service, choice)) in journey.services().iter().zip(choices).enumerate() {
            officers.push(format!("petugas-{}-{:02}", service.agency_id(), rng.range(1, 4)));
            let mut b =
                AppBuilder { slot, round: 0, steps: Vec::new(), choice: *choice, has_fee: service.has_fee() };
            flow(*service, &mut b, region, rng);
            per_app.push(b.steps);
        }
        let last_round = per_app.iter().flatten().map(|s| s.round).max().unwrap_or(0);
        let mut steps = vec![Step { round: 0, app: None, action: Action::OpenCase { citizen } }];
        // Per round, interleave the applications' steps in a seeded order,
        // keeping each application's own order.
        let mut cursors = vec![0usize; per_app.len()];
        for round in 0..=last_round {
            loop {
                let ready: Vec<usize> = (0..per_app.len())
                    .filter(|&a| per_app[a].get(cursors[a]).is_some_and(|s| s.round == round))
                    .collect();
                if ready.is_empty() {
                    break;
                }
                let a = *rng.pick(&ready);
                steps.push(per_app[a][cursors[a]].clone());
                cursors[a] += 1;
            }
        }
        Self { journey, choices: choices.to_vec(), officers, steps }
    }

    /// The service of application slot `app`.
    pub fn service(&self, app: usize) -> Option<Service> {
        self.journey.services().get(app).copied()
    }

    /// The citizen who opens the case.
    pub fn citizen(&self) -> Option<&Citizen> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::OpenCase { citizen } => Some(citizen),
            _ => None,
        })
    }

    /// The index just past the last step of each round, ascending: running
    /// the plan up to `round_ends()[k]` leaves the case as the citizen sees
    /// it at the end of visit `k`. The last one is `steps.len()`.
    pub fn round_ends(&self) -> Vec<usize> {
        let mut ends = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            if self.steps.get(i + 1).is_none_or(|next| next.round != s.round) {
                ends.push(i + 1);
            }
        }
        ends
    }

    /// The steps of application slot `app`, in order.
    pub fn steps_of(&self, app: usize) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.app == Some(app))
    }

    /// A short summary of the choices, e.g. `nib=completed pbg=payment_pending+docs`.
    pub fn summary(&self) -> String {
        self.journey
            .services()
            .iter()
            .zip(&self.choices)
            .map(|(s, c)| {
                let docs = if c.documents_missing { "+docs" } else { "" };
                format!("{}={}{docs}", s.service_id(), c.fate.as_str())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Collects one application's steps, with its rounds.
struct AppBuilder {
    slot: usize,
    round: u32,
    steps: Vec<Step>,
    choice: AppChoice,
    /// The service has a fee: a withdrawal happens at the payment.
    has_fee: bool,
}

/// Whether the flow goes on after a helper.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

impl AppBuilder {
    /// A step of the agency, in the current round.
    fn agency(&mut self, action: Action) {
        self.steps.push(Step { round: self.round, app: Some(self.slot), action });
    }

    /// A step of the citizen: they come back, which starts the next round.
    fn citizen(&mut self, action: Action) {
        self.round += 1;
        self.agency(action);
    }

    fn file(&mut self, documents: &[&str]) {
        self.agency(Action::File { documents: strings(documents) });
    }

    /// The documents check: when documents are missing they are requested;
    /// then the citizen brings them, leaves them pending or withdraws.
    fn documents(&mut self, missing: &[&str], counter: &str, note: &str) -> Next {
        if !self.choice.documents_missing {
            return Next::Continue;
        }
        self.agency(Action::RequestDocuments {
            documents: strings(missing),
            counter: counter.to_owned(),
            note: note.to_owned(),
        });
        match self.choice.fate {
            Fate::DocumentsPending => Next::Stop,
            // Without a fee, the only moment to withdraw is now.
            Fate::Withdrawn if !self.has_fee => {
                self.citizen(Action::Withdraw {
                    reason: "Pemohon tidak dapat melengkapi dokumen".to_owned(),
                });
                Next::Stop
            }
            _ => {
                self.citizen(Action::ReceiveDocuments { documents: strings(missing) });
                Next::Continue
            }
        }
    }

    /// The rejection point: after the agency's review.
    fn rejected(&mut self, code: &str, reason: &str) -> Next {
        if self.choice.fate == Fate::Rejected {
            self.agency(Action::Reject { code: code.to_owned(), reason: reason.to_owned() });
            Next::Stop
        } else {
            Next::Continue
        }
    }

    /// A PNBP fee of `amount_idr` rupiah through SIMPONI (a 15-digit
    /// billing code starting with 8, paid with an NTPN), as [`Self::fee`].
    fn simponi_fee(&mut self, rng: &mut Rng, amount_idr: i64) -> Next {
        let billing_code = format!("8{}", rng.digits(14));
        self.fee(amount_idr, billing_code, "Bank persepsi / kantor pos (SIMPONI)", ntpn(rng))
    }

    /// The fee of `amount_idr` rupiah under `billing_code`, to pay through
    /// `channel` within [`FEE_DUE_DAYS`]: assessed; then paid (`reference`)
    /// on the next visit, left pending, or the citizen withdraws instead of
    /// paying.
    fn fee(&mut self, amount_idr: i64, billing_code: String, channel: &str, reference: String) -> Next {
        self.agency(Action::AssessFee {
            amount_idr,
            billing_code,
            channel: channel.to_owned(),
            due_days: FEE_DUE_DAYS,
        });
        let pay = Action::ConfirmPayment { amount_idr, reference };
        match self.choice.fate {
            Fate::PaymentPending => Next::Stop,
            Fate::Withdrawn => {
                self.citizen(Action::Withdraw { reason: "Pemohon membatalkan permohonan".to_owned() });
                Next::Stop
            }
            _ => {
                self.citizen(pay);
                Next::Continue
            }
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Appends the steps of `service` for one application to `b`.
fn flow(service: Service, b: &mut AppBuilder, region: &str, rng: &mut Rng) {
    let mpp = format!("MPP {}", if region == "1771" { "Kota Bengkulu" } else { region });
    let street = format!(
        "{} No. {}, Kota Bengkulu",
        rng.pick(&[
            "Jl. Sudirman",
            "Jl. S. Parman",
            "Jl. Suprapto",
            "Jl. Pariwisata",
            "Jl. Danau",
            "Jl. Salak"
        ]),
        rng.range(1, 120)
    );
    match service {
        Service::DpmptspNib => {
            b.file(&["KTP-el", "NPWP", "Bidang usaha (KBLI)"]);
            if b.documents(&["NPWP"], &format!("Loket DPMPTSP, {mpp}"), "Bawa NPWP asli") == Next::Stop {
                return;
            }
            b.agency(Action::StartReview);
            if b.rejected("KBLI_TIDAK_SESUAI", "Bidang usaha tidak sesuai KBLI yang dipilih") == Next::Stop {
                return;
            }
            b.agency(Action::Issue { document_number: format!("9{}", rng.digits(12)) });
        }
        Service::DpmptspPbg => {
            b.file(&["Gambar arsitektur", "Gambar struktur", "Bukti kepemilikan tanah", "KTP-el pemilik"]);
            let counter = format!("Loket DPMPTSP, {mpp} / SIMBG");
            if b.documents(&["Perhitungan struktur", "KKPR"], &counter, "Unggah juga ke SIMBG") == Next::Stop
            {
                return;
            }
            b.agency(Action::StartReview);
            b.agency(Action::Schedule { visit: Visit::Inspection, days_ahead: 3, place: street.clone() });
            // The inspection was held: the technical review goes on.
            b.agency(Action::StartReview);
            if b.rejected("TATA_RUANG_TIDAK_SESUAI", "Fungsi bangunan tidak sesuai rencana tata ruang")
                == Next::Stop
            {
                return;
            }
            let amount = 100_000 * rng.range(10, 35) as i64;
            let skrd = format!("SKRD/PBG/{region}/{}", rng.digits(5));
            if b.fee(amount, skrd, "Bank Bengkulu / kas daerah", format!("STS/{}", rng.digits(6)))
                == Next::Stop
            {
                return;
            }
            b.agency(Action::Issue { document_number: format!("SK-PBG-{region}-{}", rng.digits(6)) });
        }
        Service::PdamSambungan => {
            b.file(&["KTP-el", "Rekening listrik terakhir", "Denah lokasi"]);
            if b.documents(&["Denah lokasi rumah"], &format!("Loket PDAM, {mpp}"), "") == Next::Stop {
                return;
            }
            b.agency(Action::Schedule { visit: Visit::Survey, days_ahead: 2, place: street.clone() });
            if b.rejected("DI_LUAR_JARINGAN", "Lokasi di luar jangkauan jaringan pipa distribusi")
                == Next::Stop
            {
                return;
            }
            let amount = 50_000 * rng.range(24, 40) as i64;
            if b.fee(
                amount,
                format!("RAB/{}", rng.digits(6)),
                "Kasir PDAM / Bank Bengkulu",
                format!("KWT/{}", rng.digits(6)),
            ) == Next::Stop
            {
                return;
            }
            b.agency(Action::Schedule { visit: Visit::Installation, days_ahead: 5, place: street });
            b.agency(Action::Issue { document_number: rng.digits(8) });
        }
        Service::PlnPasangBaru => {
            b.file(&["KTP-el", "Sertifikat Laik Operasi (SLO)", "Denah lokasi"]);
            if b.documents(&["Sertifikat Laik Operasi (SLO)"], &format!("Loket PLN, {mpp}"), "") == Next::Stop
            {
                return;
            }
            b.agency(Action::Schedule { visit: Visit::Survey, days_ahead: 2, place: street.clone() });
            if b.rejected("JARINGAN_BELUM_TERSEDIA", "Jaringan tegangan rendah belum tersedia di lokasi")
                == Next::Stop
            {
                return;
            }
            let va = *rng.pick(&[900i64, 1_300, 2_200, 3_500]);
            let amount = va * 969;
            if b.fee(
                amount,
                format!("5{}", rng.digits(11)),
                "PLN Mobile / bank / kantor pos",
                format!("REF{}", rng.digits(9)),
            ) == Next::Stop
            {
                return;
            }
            b.agency(Action::Schedule { visit: Visit::Installation, days_ahead: 3, place: street });
            b.agency(Action::Issue { document_number: format!("1{}", rng.digits(11)) });
        }
        Service::DukcapilAktaLahir => {
            b.file(&["Surat keterangan lahir", "KK orang tua", "Buku nikah orang tua", "KTP-el dua saksi"]);
            let counter = format!("Loket 2 Disdukcapil, {mpp}");
            if b.documents(&["KTP-el saksi kedua"], &counter, "Bawa asli dan fotokopi") == Next::Stop {
                return;
            }
            b.agency(Action::StartReview);
            if b.rejected("DATA_TIDAK_SESUAI", "Nama ibu pada surat keterangan lahir berbeda dengan KK")
                == Next::Stop
            {
                return;
            }
            b.agency(Action::Issue { document_number: format!("{region}-LU-{}", rng.digits(7)) });
            b.citizen(Action::Collect);
        }
        Service::DukcapilKk => {
            b.file(&["KK lama", "Surat keterangan lahir", "Surat pengantar RT/RW"]);
            let counter = format!("Loket 3 Disdukcapil, {mpp}");
            if b.documents(&["Akta kelahiran anak"], &counter, "Setelah akta terbit") == Next::Stop {
                return;
            }
            b.agency(Action::StartReview);
            if b.rejected("DATA_TIDAK_SESUAI", "Data anggota keluarga tidak sesuai dokumen") == Next::Stop {
                return;
            }
            b.agency(Action::Issue { document_number: format!("{region}{}", rng.digits(12)) });
            b.citizen(Action::Collect);
        }
        Service::BankTabungan => {
            b.file(&["KTP-el orang tua", "KK"]);
            b.agency(Action::StartReview);
            let counter = format!("Meja layanan Bank Mitra, {mpp}");
            if b.documents(&["Akta kelahiran anak"], &counter, "Untuk rekening atas nama anak") == Next::Stop
            {
                return;
            }
            if b.rejected("CDD_TIDAK_LOLOS", "Data nasabah tidak lolos uji tuntas") == Next::Stop {
                return;
            }
            let amount = 50_000 * rng.range(1, 4) as i64;
            if b.fee(amount, String::new(), "Teller", format!("TRX{}", rng.digits(10))) == Next::Stop {
                return;
            }
            b.agency(Action::Issue { document_number: rng.digits(12) });
            b.citizen(Action::Collect);
        }
        Service::ImigrasiPaspor => {
            b.file(&["KTP-el", "Kartu Keluarga", "Akta kelahiran"]);
            let counter = format!("Loket Imigrasi, {mpp}");
            if b.documents(&["Akta kelahiran asli"], &counter, "Dokumen asli diperlihatkan") == Next::Stop {
                return;
            }
            b.agency(Action::Schedule {
                visit: Visit::Interview,
                days_ahead: 2,
                place: format!("Ruang wawancara Imigrasi, {mpp}"),
            });
            if b.choice.fate == Fate::AppointmentPending {
                return;
            }
            // The citizen comes to the interview.
            b.citizen(Action::StartReview);
            if b.rejected("DATA_TIDAK_SESUAI", "Data akta kelahiran berbeda dengan KTP-el") == Next::Stop {
                return;
            }
            if b.simponi_fee(rng, 350_000) == Next::Stop {
                return;
            }
            let letter = rng.pick(&["C", "E", "X"]);
            b.agency(Action::Issue { document_number: format!("{letter}{}", rng.digits(7)) });
            b.citizen(Action::Collect);
        }
        Service::BpnPengecekan => {
            b.file(&["Sertipikat asli", "KTP-el pemilik", "Surat kuasa"]);
            let counter = format!("Loket Pertanahan, {mpp}");
            if b.documents(&["KTP-el pemilik dilegalisir"], &counter, "") == Next::Stop {
                return;
            }
            b.agency(Action::StartReview);
            if b.rejected("SERTIPIKAT_DIBLOKIR", "Sertipikat tercatat diblokir") == Next::Stop {
                return;
            }
            if b.simponi_fee(rng, 50_000) == Next::Stop {
                return;
            }
            b.agency(Action::Issue { document_number: format!("CEK/{region}/{}", rng.digits(5)) });
            b.citizen(Action::Collect);
        }
    }
}

/// An NTPN: 16 digits or capital letters.
fn ntpn(rng: &mut Rng) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    (0..16).map(|_| char::from(*rng.pick(CHARS))).collect()
}
