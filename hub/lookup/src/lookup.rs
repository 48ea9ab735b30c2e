//! Case lookups shared by gRPC, the JSON API and the tracking page: check the
//! caller's limits and PIN, read the projection, then compute the status and
//! SLA clocks at the moment of the lookup. The projection itself holds no
//! "now"; only this edge reads the clock.
//!
//! # The PIN check
//!
//! Every lookup needs the case's PIN (nine characters, or six digits for a
//! PIN issued before, [`mpp_core::pin`]). The hub computes the PIN's
//! verifier ([`mpp_core::pin::pin_verifier`], under the province's pepper
//! from `--pin-pepper-file`) and compares it in constant time with the one
//! the agency published in `case_opened`. An unknown case and a wrong PIN
//! take the same steps (the verifier is computed and compared against a
//! dummy when there is no case) and get the same answer, byte for byte:
//! `CASE_NOT_FOUND`, "no case with this tracking number and PIN". Both count
//! against the guessing budgets every replica shares ([`crate::guard`]).
//!
//! Order of checks, the first failing one answering: the client's rate
//! limit (`RATE_LIMITED`, this replica's token bucket,
//! [`crate::ratelimit`]), the tracking number's form (`FIELD_TOO_LONG`,
//! `MALFORMED_TRACKING_NUMBER`, `BAD_CHECK_DIGIT`), the PIN's presence and
//! form (`PIN_REQUIRED`, `MALFORMED_PIN`), a proof of work while the global
//! failed-lookup budget is spent (`PROOF_OF_WORK_REQUIRED`, [`crate::pow`]),
//! the client's networks' failed-lookup budgets (`RATE_LIMITED`), the
//! tracking number's lock (`LOOKUP_LOCKED`) or daily cap
//! (`PIN_REISSUE_REQUIRED`), the shared store when the lookup needs it
//! (`LOOKUP_BUDGET_UNAVAILABLE`), then case and PIN together
//! (`CASE_NOT_FOUND`). The PIN is compared before the lock is consulted
//! (so lookups with the right PIN never count as wrong ones), but a locked
//! number refuses the right PIN with the answer a wrong one gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mpp_core::calendar::CalendarSet;
use mpp_core::pin::{pin_verifier, verifier_matches, Pin, PinPepper, PIN_VERIFIER_BYTES_MAX};
use mpp_core::sla::{case_sla, case_status_at, SlaView};
use mpp_core::{AgencyId, Case, CaseStatus, ReasonCode, RegionCode, ServiceId, TrackingNumber};
use mpp_store::{SledStore, Store};
use tracing::{error, info, warn};

use crate::access::{AccessChannel, AccessEvent, AccessLog, Accessor, ACCESS_EVENTS_SHOWN_MAX};
use crate::cosigned::Transparency;
use crate::error::ApiError;
use crate::guard::{FailedAttempts, GuardRefusal, GuardSettings, GuessBudgets, NumberRefusal, SharedGuard};
use crate::pow::{ProofCheck, ProofOfWork};
use crate::ratelimit::{ClientKey, Guard, LookupLimits, RetryAfter};
use crate::watch::{CaseChanges, CommitEpoch};
use mpp_obs::metrics::{HubMetrics, LookupChannel, LookupOutcome};

/// Most calendar files read at start (regions × years).
pub const CALENDAR_FILES_MAX: usize = 4096;

/// Largest calendar file read, in bytes.
pub const CALENDAR_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Longest tracking number input accepted, in bytes (a tracking number has
/// 15 digits; room is left for separators and spaces) (`FIELD_TOO_LONG`).
pub const TRACKING_NUMBER_INPUT_BYTES_MAX: usize = 64;

/// Longest PIN input accepted, in bytes (`FIELD_TOO_LONG`).
pub const PIN_INPUT_BYTES_MAX: usize = 32;

/// Service names kept in memory between commits (one per agency service; a
/// province publishes a few hundred). Beyond this, names are read from the
/// store on every lookup.
pub const SERVICE_NAMES_CACHED_MAX: usize = 4096;

/// Service names read from the store's standards, valid while no commit
/// was announced since `epoch` (see [`Lookups::follow_commits`]).
#[derive(Debug, Default)]
struct NameCache {
    epoch: u64,
    len: usize,
    names: HashMap<AgencyId, HashMap<ServiceId, ServiceName>>,
}

/// The name of a service in both languages (empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceName {
    /// Bahasa Indonesia.
    pub id: String,
    /// English.
    pub en: String,
}

/// A case as a citizen sees it at one moment.
#[derive(Debug, Clone)]
pub struct Found {
    /// The projection.
    pub case: Case,
    /// Status at the moment of the lookup (overdue included).
    pub status: CaseStatus,
    /// SLA clock of each application, in application order.
    pub slas: Vec<SlaView>,
    /// Name of each application's service, in application order.
    pub service_names: Vec<ServiceName>,
    /// The newest lookups of the case, newest first (this one included).
    pub access: Vec<AccessEvent>,
    /// Wrong PINs tried since the last successful lookup (shown after a
    /// lookup with the PIN; `None` for a re-read through a session).
    pub failed_attempts: Option<FailedAttempts>,
    /// The lookup's time, Unix ms.
    pub now_ms: i64,
    /// Which timeline items `case` still holds (one page, see
    /// [`TIMELINE_PAGE_ITEMS_MAX`]), and where the next page starts.
    pub timeline: TimelinePage,
}

/// Most timeline items one lookup answers: the newest across the case's
/// applications (older ones page by page, with
/// [`LookupRequest::timeline_before_seq`]). With [`mpp_core::limits::CASE_BYTES_MAX`]
/// this bounds every answer (JSON, gRPC, page, watch update).
pub const TIMELINE_PAGE_ITEMS_MAX: usize = 50;

/// One page of a case's timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelinePage {
    /// Timeline items the whole case holds.
    pub items_total: usize,
    /// The `timeline_before_seq` of the next (older) page; `None` when this
    /// page holds the oldest item.
    pub next_before_seq: Option<u64>,
}

impl TimelinePage {
    /// Cuts `case`'s timelines to the newest [`TIMELINE_PAGE_ITEMS_MAX`]
    /// items older than `before_seq` (every item when `None`), keeping each
    /// application's items in log order, and says where the next page starts.
    pub fn cut(case: &mut Case, before_seq: Option<u64>) -> TimelinePage {
        let before = before_seq.unwrap_or(u64::MAX);
        let items_total = case.applications.iter().map(|a| a.timeline.len()).sum();
        let mut seqs: Vec<u64> = case
            .applications
            .iter()
            .flat_map(|a| a.timeline.iter().map(|t| t.seq))
            .filter(|s| *s < before)
            .collect();
        let (oldest_kept, next_before_seq) = if seqs.len() > TIMELINE_PAGE_ITEMS_MAX {
            // The page's oldest item: the TIMELINE_PAGE_ITEMS_MAX-th newest.
            let (_, nth, _) = seqs.select_nth_unstable_by(TIMELINE_PAGE_ITEMS_MAX - 1, |a, b| b.cmp(a));
            (*nth, Some(*nth))
        } else {
            (0, None)
        };
        seqs.clear();
        for a in &mut case.applications {
            a.timeline.retain(|t| t.seq < before && t.seq >= oldest_kept);
        }
        TimelinePage { items_total, next_before_seq }
    }

    /// The page of a case whose timelines are whole.
    pub fn whole(case: &Case) -> TimelinePage {
        TimelinePage {
            items_total: case.applications.iter().map(|a| a.timeline.len()).sum(),
            next_before_seq: None,
        }
    }
}

/// What a client needs to prove work ([`crate::pow`]): a challenge to
/// solve, or (without JavaScript) a delay token good from `not_before_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowChallenge {
    /// The challenge (`c1.…`).
    pub challenge: String,
    /// Leading zero bits the solution's hash needs.
    pub difficulty_bits: u8,
    /// A delay token (`d1.…`), the way without computing (the page's only:
    /// handing one out spaces the next for the same network).
    pub delay_token: Option<String>,
    /// When the delay token becomes good (Unix ms).
    pub not_before_ms: i64,
}

/// Where "now" comes from: the system clock in production, a fixed or
/// stepped value in tests. Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A monotonic clock for rate limits, milliseconds since some start.
pub type MonoClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock, Unix milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
}

/// The system's monotonic clock, milliseconds since this call.
pub fn system_mono_clock() -> MonoClock {
    let start = Instant::now();
    Arc::new(move || start.elapsed().as_millis() as u64)
}

/// A failed lookup: the error answered, and how long to wait for the
/// rate-limit codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct LookupError {
    /// The error.
    pub error: ApiError,
    /// Seconds to wait (`RATE_LIMITED`, `LOOKUP_LOCKED`).
    pub retry_after: Option<RetryAfter>,
    /// The proof asked (`PROOF_OF_WORK_REQUIRED`).
    pub pow: Option<PowChallenge>,
}

/// The response header (and gRPC metadata key) carrying a proof-of-work
/// challenge.
pub const POW_CHALLENGE_HEADER: &str = "x-mpp-pow-challenge";

/// The response header (and gRPC metadata key) carrying the difficulty.
pub const POW_DIFFICULTY_HEADER: &str = "x-mpp-pow-difficulty";

/// The request header (and gRPC metadata key) carrying a proof.
pub const POW_PROOF_HEADER: &str = "x-mpp-pow";

impl From<ApiError> for LookupError {
    fn from(error: ApiError) -> Self {
        Self { error, retry_after: None, pow: None }
    }
}

impl From<mpp_core::Rejection> for LookupError {
    fn from(r: mpp_core::Rejection) -> Self {
        ApiError::from(r).into()
    }
}

impl LookupError {
    fn limited(code: ReasonCode, message: &str, retry: RetryAfter) -> Self {
        Self { error: ApiError::new(code, message), retry_after: Some(retry), pow: None }
    }

    /// The reason code.
    pub fn code(&self) -> ReasonCode {
        self.error.code
    }
}

impl IntoResponse for LookupError {
    fn into_response(self) -> Response {
        let Some(pow) = &self.pow else {
            let mut resp = self.error.into_response();
            if let Some(r) = self.retry_after {
                resp.headers_mut().insert("retry-after", HeaderValue::from(r.seconds));
            }
            return resp;
        };
        let body = serde_json::json!({ "error": {
            "code": self.error.code.as_str(),
            "message": self.error.message,
            "challenge": pow.challenge,
            "difficulty_bits": pow.difficulty_bits,
        }});
        let mut resp = (http_status(&self), axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&pow.challenge) {
            resp.headers_mut().insert(POW_CHALLENGE_HEADER, v);
        }
        resp.headers_mut().insert(POW_DIFFICULTY_HEADER, HeaderValue::from(u16::from(pow.difficulty_bits)));
        resp
    }
}

impl From<LookupError> for tonic::Status {
    fn from(e: LookupError) -> Self {
        let mut status = tonic::Status::from(e.error);
        if let Some(r) = e.retry_after {
            status.metadata_mut().insert("retry-after", r.seconds.into());
        }
        if let Some(pow) = e.pow {
            if let Ok(v) = pow.challenge.parse() {
                status.metadata_mut().insert(POW_CHALLENGE_HEADER, v);
            }
            status.metadata_mut().insert(POW_DIFFICULTY_HEADER, u32::from(pow.difficulty_bits).into());
        }
        status
    }
}

/// The HTTP status of an error (for pages that render their own body).
pub fn http_status(e: &LookupError) -> StatusCode {
    e.error.clone().into_response().status()
}

/// What a lookup names: the case, the PIN, the caller and its channel.
#[derive(Debug, Clone, Copy)]
pub struct LookupRequest<'a> {
    /// The tracking number as typed (separators and spaces allowed).
    pub tracking_number: &'a str,
    /// The PIN as typed; `None` when not given.
    pub pin: Option<&'a str>,
    /// A proof of work or delay token ([`crate::pow`]), if the client sent one.
    pub proof: Option<&'a str>,
    /// The client's address (for its rate limit).
    pub client: IpAddr,
    /// How the citizen looks (recorded in the access event).
    pub channel: AccessChannel,
    /// The timeline page: items older than this log sequence; `None` for
    /// the newest ([`TimelinePage`]).
    pub timeline_before_seq: Option<u64>,
}

/// Reads cases from the store, checks PINs and limits, and dresses cases for
/// citizens.
#[derive(Clone)]
pub struct Lookups {
    store: SledStore,
    calendars: Arc<CalendarSet>,
    clock: Clock,
    mono: MonoClock,
    pepper: Arc<PinPepper>,
    rate: Arc<Guard>,
    guard: Arc<SharedGuard>,
    pow: Option<Arc<ProofOfWork>>,
    access: Option<AccessLog>,
    metrics: Option<Arc<HubMetrics>>,
    /// Set once by [`Lookups::follow_commits`], shared by every clone.
    commits: Arc<OnceLock<Arc<CommitEpoch>>>,
    names: Arc<Mutex<NameCache>>,
    transparency: Option<Arc<Transparency>>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups").field("store", &self.store).finish_non_exhaustive()
    }
}

/// Keeps digits (ASCII, and full-width ones as a phone keyboard may type
/// them) and drops spaces and dashes of any kind; anything else (letters,
/// control characters, other Unicode) makes the input invalid (`None`).
pub fn digits_of(input: &str) -> Option<String> {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '0'..='9' => out.push(c),
            // Full-width digits U+FF10..U+FF19.
            '\u{FF10}'..='\u{FF19}' => out.push(char::from(b'0' + (c as u32 - 0xFF10) as u8)),
            '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}' | '.' | '/' => {}
            c if c.is_whitespace() => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Parses a tracking number as a person or a program may type it.
pub fn parse_tracking_number(input: &str) -> Result<TrackingNumber, ApiError> {
    if input.len() > TRACKING_NUMBER_INPUT_BYTES_MAX {
        return Err(ApiError::new(
            ReasonCode::FieldTooLong,
            format!("the tracking number is longer than {TRACKING_NUMBER_INPUT_BYTES_MAX} bytes"),
        ));
    }
    let digits = digits_of(input).ok_or_else(|| {
        ApiError::new(
            ReasonCode::MalformedTrackingNumber,
            "tracking number must be 15 digits: RRRR-SSSSSSSSSS-C",
        )
    })?;
    Ok(TrackingNumber::parse(&digits)?)
}

/// The answer to a PIN of neither shape.
pub fn malformed_pin() -> ApiError {
    ApiError::new(
        ReasonCode::MalformedPin,
        "the PIN must be 9 characters of 23456789ABCDEFGHJKMNPQRSTUVWXYZ (case, spaces and dashes ignored), \
         or 6 digits for a PIN issued before",
    )
}

/// Parses a PIN as typed ([`Pin::parse_typed`]): `PIN_REQUIRED` when absent
/// or blank.
pub fn parse_pin(input: Option<&str>) -> Result<Pin, ApiError> {
    let input = input.unwrap_or("");
    if input.len() > PIN_INPUT_BYTES_MAX {
        return Err(ApiError::new(
            ReasonCode::FieldTooLong,
            format!("the PIN is longer than {PIN_INPUT_BYTES_MAX} bytes"),
        ));
    }
    if input.trim().is_empty() {
        return Err(ApiError::new(ReasonCode::PinRequired, "the case's PIN is required"));
    }
    Pin::parse_typed(input).ok_or_else(malformed_pin)
}

impl Lookups {
    /// Lookups over `store` with the given calendars, clock, PIN pepper and
    /// rate limits; no access log, the system's monotonic clock, the default
    /// guessing budgets in this process's memory (one replica; see
    /// [`Lookups::with_guard`]) and no proofs of work.
    pub fn new(
        store: SledStore,
        calendars: Arc<CalendarSet>,
        clock: Clock,
        pepper: PinPepper,
        limits: LookupLimits,
    ) -> Self {
        let guard = SharedGuard::in_memory(
            &pepper.derive_key(GUARD_KEY_LABEL),
            GuardSettings::in_memory(GuessBudgets::DEFAULT),
        );
        Self {
            store,
            calendars,
            clock,
            mono: system_mono_clock(),
            pepper: Arc::new(pepper),
            rate: Arc::new(Guard::new(limits)),
            guard,
            pow: None,
            access: None,
            metrics: None,
            commits: Arc::default(),
            names: Arc::default(),
            transparency: None,
        }
    }

    /// Lets this handle and every clone of it cache what it reads of service
    /// standards, dropping it whenever `changes` announces a commit (which
    /// ingest does after every batch). Without it nothing is cached. The
    /// first call wins; later ones (with the same announcer) change nothing.
    pub fn follow_commits(&self, changes: &CaseChanges) {
        let _ = self.commits.set(changes.epoch());
    }

    /// Checks and counts guesses in `guard` (the store every replica
    /// shares, in production).
    pub fn with_guard(mut self, guard: Arc<SharedGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// Asks proofs of work of `pow` while the global failed-lookup budget
    /// is spent (without it, none is asked).
    pub fn with_pow(mut self, pow: Arc<ProofOfWork>) -> Self {
        self.pow = Some(pow);
        self
    }

    /// The key, derived from the PIN pepper, of the guard's record names.
    pub fn guard_secret(&self) -> [u8; 32] {
        self.pepper.derive_key(GUARD_KEY_LABEL)
    }

    /// The guessing budgets' shared store and cache.
    pub fn shared_guard(&self) -> &Arc<SharedGuard> {
        &self.guard
    }

    /// The proofs of work, if asked.
    pub fn pow(&self) -> Option<&Arc<ProofOfWork>> {
        self.pow.as_ref()
    }

    /// Records every successful lookup in `log`.
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access = Some(log);
        self
    }

    /// Counts every lookup by channel and outcome, and times it, in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<HubMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves the hub's cosigned checkpoints and the receipt check with
    /// `transparency` (without it, `/checkpoint` serves the hub's own note
    /// and the receipt offers no check).
    pub fn with_transparency(mut self, transparency: Arc<Transparency>) -> Self {
        self.transparency = Some(transparency);
        self
    }

    /// What the hub publishes about its log, if set.
    pub fn transparency(&self) -> Option<&Arc<Transparency>> {
        self.transparency.as_ref()
    }

    /// Uses `mono` for rate limits (tests step it by hand).
    pub fn with_mono_clock(mut self, mono: MonoClock) -> Self {
        self.mono = mono;
        self
    }

    /// The store.
    pub fn store(&self) -> &SledStore {
        &self.store
    }

    /// The access log, if any (other surfaces, e.g. an audit API, record
    /// their reads in it).
    pub fn access_log(&self) -> Option<&AccessLog> {
        self.access.as_ref()
    }

    /// The per-replica rate limits.
    pub fn rate_limits(&self) -> &Guard {
        &self.rate
    }

    /// Now, Unix ms.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Takes one token of `client`'s rate limit (every lookup does; pages
    /// shown through a session too).
    pub fn admit(&self, client: IpAddr) -> Result<(), LookupError> {
        self.rate.admit(ClientKey::of(client), (self.mono)()).map_err(|r| {
            LookupError::limited(
                ReasonCode::RateLimited,
                "too many lookups from this address; retry later",
                r,
            )
        })
    }

    /// A citizen's lookup with the case's PIN. See the module docs for the
    /// order of checks. A success is recorded in the access log.
    pub async fn lookup(&self, req: &LookupRequest<'_>) -> Result<Found, LookupError> {
        let Some(metrics) = &self.metrics else { return self.lookup_unmetered(req).await };
        let started = Instant::now();
        let result = self.lookup_unmetered(req).await;
        if let Some(channel) = lookup_channel(req.channel) {
            metrics.record_lookup(channel, lookup_outcome(&result), started.elapsed());
        }
        result
    }

    /// The proof-of-work answer for `client`, with `message`; with a delay
    /// token when `page` (the tracking page's way without JavaScript).
    pub fn pow_required(&self, client: IpAddr, now_ms: i64, message: &str, page: bool) -> LookupError {
        let pow = self.pow.as_ref().map(|p| {
            let delay = page.then(|| p.delay_token(client, now_ms));
            PowChallenge {
                challenge: p.challenge(client, now_ms),
                difficulty_bits: p.difficulty_bits(),
                not_before_ms: delay.as_ref().map_or(now_ms, |d| d.1),
                delay_token: delay.map(|d| d.0),
            }
        });
        LookupError { error: ApiError::new(ReasonCode::ProofOfWorkRequired, message), retry_after: None, pow }
    }

    /// Whether lookups need a proof of work now.
    pub fn proof_of_work_required(&self) -> bool {
        self.pow.is_some() && self.guard.proof_of_work_required(self.now_ms())
    }

    fn check_proof(
        &self,
        req: &LookupRequest<'_>,
        tn: &TrackingNumber,
        now_ms: i64,
    ) -> Result<(), LookupError> {
        let Some(pow) = &self.pow else { return Ok(()) };
        if !self.guard.proof_of_work_required(now_ms) {
            return Ok(());
        }
        let check = req.proof.map_or(ProofCheck::Invalid, |p| pow.check(p, &tn.digits(), req.client, now_ms));
        let page = req.channel == AccessChannel::Web;
        match check {
            ProofCheck::Valid => Ok(()),
            ProofCheck::TooEarly { wait_ms } => {
                // Keep the token the client holds: a new one would wait longer.
                let mut e = self.pow_required(
                    req.client,
                    now_ms,
                    "the delay token is not good yet; wait, then send it again",
                    false,
                );
                e.retry_after = Some(RetryAfter::from_ms(u64::try_from(wait_ms).unwrap_or(0)));
                if let Some(p) = e.pow.as_mut() {
                    p.delay_token = req.proof.map(str::to_owned);
                    p.not_before_ms = now_ms.saturating_add(wait_ms);
                }
                Err(e)
            }
            ProofCheck::Invalid => Err(self.pow_required(
                req.client,
                now_ms,
                "many lookups failed lately: solve the challenge and send the proof",
                page,
            )),
        }
    }

    async fn lookup_unmetered(&self, req: &LookupRequest<'_>) -> Result<Found, LookupError> {
        self.admit(req.client)?;
        let tn = parse_tracking_number(req.tracking_number)?;
        let pin = parse_pin(req.pin)?;
        let now_ms = self.now_ms();
        self.check_proof(req, &tn, now_ms)?;
        let case = match self.store.case(&tn) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "Case lookup failed in the store");
                return Err(ApiError::internal().into());
            }
        };
        let epoch = case.as_ref().map_or(0, |c| pin_epoch(&c.pin_verifier));
        let keys = self.guard.keys(&tn.digits(), req.client);
        self.guard.check_networks(&keys, now_ms).map_err(|r| refusal_error(r, now_ms))?;
        let computed = pin_verifier(&self.pepper, &tn, &pin);
        // The same comparison with or without a case: against a dummy that
        // no verifier equals when there is none.
        let dummy = [0u8; PIN_VERIFIER_BYTES_MAX];
        let stored = case.as_ref().map_or(&dummy[..], |c| &c.pin_verifier[..]);
        let matches = verifier_matches(stored, &computed) && case.is_some();
        // Then the number's lock, which refuses a right PIN exactly as a
        // wrong one; a wrong PIN is checked and counted in one write.
        let Some(case) = case.filter(|_| matches) else {
            self.guard.wrong_pin(&keys, epoch, now_ms).await.map_err(|r| refusal_error(r, now_ms))?;
            return Err(ApiError::case_not_found().into());
        };
        let attempts =
            self.guard.right_pin(&keys, epoch, now_ms).await.map_err(|r| refusal_error(r, now_ms))?;
        if attempts.count > 0 {
            info!(region = %tn.region(), failed = attempts.count, "A case was opened after wrong PINs were tried");
        }
        let event = AccessEvent { at_ms: self.now_ms(), accessor: Accessor::Citizen, channel: req.channel };
        let mut found = self.dress(case, Some(event), req.timeline_before_seq)?;
        found.failed_attempts = Some(attempts);
        Ok(found)
    }

    /// Reads a case without a PIN, for callers that already proved they may
    /// see it (a page session, a running watch), with the newest timeline
    /// page. Records nothing.
    pub fn read(&self, tn: &TrackingNumber) -> Result<Option<Found>, LookupError> {
        self.read_page(tn, None)
    }

    /// [`Lookups::read`], with the timeline page of items older than
    /// `timeline_before_seq`.
    pub fn read_page(
        &self,
        tn: &TrackingNumber,
        timeline_before_seq: Option<u64>,
    ) -> Result<Option<Found>, LookupError> {
        match self.store.case(tn) {
            Ok(Some(case)) => self.dress(case, None, timeline_before_seq).map(Some),
            Ok(None) => Ok(None),
            Err(e) => {
                error!(error = %e, "Case lookup failed in the store");
                Err(ApiError::internal().into())
            }
        }
    }

    /// Status, SLA clocks, service names and access history, as of now, and
    /// the timeline page of items older than `timeline_before_seq`. A
    /// `new_access` is recorded and shown first.
    fn dress(
        &self,
        mut case: Case,
        new_access: Option<AccessEvent>,
        timeline_before_seq: Option<u64>,
    ) -> Result<Found, LookupError> {
        // Applications dropped when the case was opened (filed blind into
        // its number, or held too long: `mpp_core::hold`) are never shown.
        case.applications.retain(|a| a.state != mpp_core::AppState::Dropped);
        let now_ms = self.now_ms();
        let status = case_status_at(&case, &self.calendars, now_ms);
        let slas = case_sla(&case, &self.calendars, now_ms);
        let service_names =
            case.applications.iter().map(|a| self.service_name(&a.agency, &a.service)).collect();
        let mut access = Vec::new();
        if let Some(log) = &self.access {
            // Read before recording, so the new event is shown exactly once.
            let shown = ACCESS_EVENTS_SHOWN_MAX - usize::from(new_access.is_some());
            let recent = log.recent(&case.tracking_number, shown);
            if let Some(e) = new_access {
                // No case is shown without its access event on its way to
                // the store: a full queue refuses the lookup instead.
                if log.try_record(case.tracking_number, e.clone()).is_err() {
                    return Err(ApiError::new(
                        ReasonCode::Unavailable,
                        "the hub is busy; try again in a moment",
                    )
                    .into());
                }
                access.push(e);
            }
            access.extend(recent);
        }
        merge_opener_accesses(&mut access, &case);
        // Status and clocks read the whole timelines; the answer holds a page.
        let timeline = TimelinePage::cut(&mut case, timeline_before_seq);
        Ok(Found { case, status, slas, service_names, access, failed_attempts: None, now_ms, timeline })
    }

    /// The name of a service from its current standard: from memory while
    /// no commit was announced since it was read (see
    /// [`Lookups::follow_commits`]), else from the store.
    fn service_name(&self, agency: &AgencyId, service: &ServiceId) -> ServiceName {
        let Some(commits) = self.commits.get() else { return self.read_service_name(agency, service) };
        // Read the counter before the store: a commit announced after this
        // read moves it, and what is read below is then never trusted.
        let epoch = commits.current();
        {
            let cache = lock(&self.names);
            if cache.epoch == epoch {
                if let Some(name) = cache.names.get(agency).and_then(|m| m.get(service)) {
                    return name.clone();
                }
            }
        }
        let name = self.read_service_name(agency, service);
        let mut cache = lock(&self.names);
        if cache.epoch < epoch {
            *cache = NameCache { epoch, ..NameCache::default() };
        }
        if cache.epoch == epoch && cache.len < SERVICE_NAMES_CACHED_MAX {
            let fresh = cache
                .names
                .entry(agency.clone())
                .or_default()
                .insert(service.clone(), name.clone())
                .is_none();
            cache.len += usize::from(fresh);
        }
        name
    }

    fn read_service_name(&self, agency: &AgencyId, service: &ServiceId) -> ServiceName {
        match self.store.standard(agency, service) {
            Ok(Some(s)) => ServiceName { id: s.name_id, en: s.name_en },
            Ok(None) => ServiceName::default(),
            Err(e) => {
                warn!(error = %e, "Reading a service standard failed; showing the service id");
                ServiceName::default()
            }
        }
    }

    /// The calendars.
    pub fn calendars(&self) -> &CalendarSet {
        &self.calendars
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a cache behind that is still
    // consistent (entries are inserted whole).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Loads every `<dir>/<region>/<year>.txt` calendar file. A missing `dir`
/// is an error: the operator asked for it.
pub fn load_calendars(dir: &Path) -> anyhow::Result<CalendarSet> {
    let mut set = CalendarSet::new();
    let mut files = 0usize;
    let mut regions: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading calendars dir {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    regions.sort_by_key(|e| e.file_name());
    for region_dir in regions {
        if !region_dir.file_type()?.is_dir() {
            continue;
        }
        let name = region_dir.file_name().to_string_lossy().into_owned();
        let Ok(region) = RegionCode::parse(&name) else {
            warn!(dir = %region_dir.path().display(), "Skipping a calendar directory not named by a region code");
            continue;
        };
        let mut years: Vec<_> = std::fs::read_dir(region_dir.path())?.collect::<Result<_, _>>()?;
        years.sort_by_key(|e| e.file_name());
        for year in years {
            let path = year.path();
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            files += 1;
            anyhow::ensure!(files <= CALENDAR_FILES_MAX, "more than {CALENDAR_FILES_MAX} calendar files");
            let len = year.metadata()?.len();
            anyhow::ensure!(
                len <= CALENDAR_FILE_BYTES_MAX,
                "{} is larger than {CALENDAR_FILE_BYTES_MAX} bytes",
                path.display()
            );
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            set.insert_text(region, &text).with_context(|| format!("in {}", path.display()))?;
        }
    }
    info!(dir = %dir.display(), files, "Calendars loaded");
    Ok(set)
}

/// Reads a PIN pepper file: at most `PIN_PEPPER_BYTES_MAX + 1` bytes are
/// read (a wrong path to a huge file fails fast), trimmed and bounded as
/// [`PinPepper::from_bytes`] says.
pub fn read_pepper_file(path: &Path) -> anyhow::Result<PinPepper> {
    let buf = mpp_edge::files::read_at_most(path, mpp_core::pin::PIN_PEPPER_BYTES_MAX as u64)
        .with_context(|| format!("reading PIN pepper file {}", path.display()))?;
    PinPepper::from_bytes(&buf).with_context(|| format!("in PIN pepper file {}", path.display()))
}

/// Adds what `case` records of the agency that opened it (from its log, so
/// every replica shows them) to its access history `access`, newest first,
/// keeping the newest [`ACCESS_EVENTS_SHOWN_MAX`]: each PIN re-issue (the
/// officer at its counter) and each read of the citizen's personal data
/// (the authenticated client that read it).
fn merge_opener_accesses(access: &mut Vec<AccessEvent>, case: &Case) {
    if case.pin_reissues.is_empty() && case.personal_data_reads.is_empty() {
        return;
    }
    let reissues = case.pin_reissues.iter().rev().take(ACCESS_EVENTS_SHOWN_MAX).map(|r| AccessEvent {
        at_ms: r.at_ms,
        accessor: Accessor::Officer { agency: case.opened_by.clone() },
        channel: AccessChannel::Counter,
    });
    let reads = case.personal_data_reads.iter().rev().take(ACCESS_EVENTS_SHOWN_MAX).map(|r| AccessEvent {
        at_ms: r.at_ms,
        accessor: Accessor::DataReader { agency: case.opened_by.clone(), client_id: r.client_id.clone() },
        channel: AccessChannel::PersonalData,
    });
    access.extend(reissues.chain(reads));
    // Stable: events of one moment keep their order.
    access.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
    access.truncate(ACCESS_EVENTS_SHOWN_MAX);
}

/// The label of [`PinPepper::derive_key`] for the guard's record names.
pub const GUARD_KEY_LABEL: &[u8] = b"mpp-lookup-guard-keys";

/// The fingerprint of a case's current PIN (its verifier), 0 for none: a
/// tracking number's guess record counts against one PIN, and a re-issued
/// PIN starts a fresh one.
pub fn pin_epoch(verifier: &[u8]) -> u64 {
    if verifier.is_empty() {
        return 0;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"mpp-pin-epoch\0");
    ctx.update(verifier);
    let d = ctx.finish();
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(eight).max(1)
}

/// The answer to a lookup the guessing budgets refuse.
fn refusal_error(r: GuardRefusal, now_ms: i64) -> LookupError {
    let wait =
        |until_ms: i64| RetryAfter::from_ms(u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0));
    match r {
        GuardRefusal::Number(NumberRefusal::Locked { until_ms }) => LookupError::limited(
            ReasonCode::LookupLocked,
            "too many wrong PINs for this tracking number; retry later",
            wait(until_ms),
        ),
        GuardRefusal::Number(NumberRefusal::ReissueRequired) => ApiError::new(
            ReasonCode::PinReissueRequired,
            "too many wrong PINs for this tracking number today: ask at the MPP counter for a new PIN",
        )
        .into(),
        GuardRefusal::Network { kind, retry_at_ms } => LookupError::limited(
            ReasonCode::RateLimited,
            &format!("too many failed lookups from this network ({}); retry later", kind.as_str()),
            wait(retry_at_ms),
        ),
        GuardRefusal::Unavailable => ApiError::new(
            ReasonCode::LookupBudgetUnavailable,
            "the hub cannot check its lookup limits right now; retry later",
        )
        .into(),
    }
}

/// The metrics channel of an access channel; `None` for the audit API,
/// whose reads are not citizen lookups.
pub fn lookup_channel(channel: AccessChannel) -> Option<LookupChannel> {
    match channel {
        AccessChannel::Api => Some(LookupChannel::Http),
        AccessChannel::Grpc => Some(LookupChannel::Grpc),
        AccessChannel::Web => Some(LookupChannel::Page),
        AccessChannel::Audit | AccessChannel::Counter | AccessChannel::Feed | AccessChannel::PersonalData => {
            None
        }
    }
}

/// The metrics outcome of a lookup's result.
pub fn lookup_outcome<T>(result: &Result<T, LookupError>) -> LookupOutcome {
    match result {
        Ok(_) => LookupOutcome::Found,
        Err(e) => match e.code() {
            ReasonCode::CaseNotFound => LookupOutcome::NotFoundOrPin,
            ReasonCode::RateLimited | ReasonCode::ProofOfWorkRequired => LookupOutcome::RateLimited,
            ReasonCode::LookupLocked | ReasonCode::PinReissueRequired => LookupOutcome::Locked,
            ReasonCode::Unavailable | ReasonCode::LookupBudgetUnavailable => LookupOutcome::Error,
            _ => LookupOutcome::Invalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_tracking_numbers_are_normalised_or_refused_with_a_reason() {
        let canonical = "1771-0000012345-7";
        let want = TrackingNumber::parse(canonical).unwrap();
        for ok in [
            canonical,
            " 1771 0000012345 7 ",
            "177100000123457",
            "1771–0000012345–7",
            "１７７１-0000012345-7",
        ] {
            assert_eq!(parse_tracking_number(ok), Ok(want), "{ok:?}");
        }
        let code = |s: &str| parse_tracking_number(s).unwrap_err().code;
        assert_eq!(code("1771-0000012345-8"), ReasonCode::BadCheckDigit);
        assert_eq!(code("1771-12"), ReasonCode::MalformedTrackingNumber);
        assert_eq!(code("1771-0000012345-7\u{0}"), ReasonCode::MalformedTrackingNumber);
        assert_eq!(code("<script>alert(1)</script>"), ReasonCode::MalformedTrackingNumber);
        assert_eq!(code("1771\u{202E}0000012345-7"), ReasonCode::MalformedTrackingNumber);
        assert_eq!(code(&"1".repeat(65)), ReasonCode::FieldTooLong);
        assert_eq!(code(""), ReasonCode::MalformedTrackingNumber);
    }

    /// A store with a standard of dukcapil/kk named `name_id` (version
    /// `version`) committed through the ledger at `seq`.
    fn standard_message(seq: u64, name_id: &str, version: u32) -> mpp_ledger::ledger::RawMessage {
        let body = mpp_core::EventBody::ServiceStandardPublished {
            name_id: name_id.to_owned(),
            name_en: format!("{name_id} (en)"),
            completion_working_days: 5,
            fee_idr: 0,
            requirements: vec![],
            fiktif_positif: false,
            version,
            collection: None,
        };
        message(seq, None, "", body)
    }

    const T0_MS: i64 = 1_750_039_200_000;

    /// A case whose applications hold timeline items with these seqs.
    fn case_with_timelines(apps: &[&[u64]]) -> Case {
        let item = |seq: u64| mpp_core::case::TimelineItem {
            seq,
            recorded_at_ms: T0_MS,
            kind: mpp_core::EventKind::ReviewStarted,
            state_after: mpp_core::state::AppState::InReview,
            detail: "".into(),
        };
        Case {
            tracking_number: TrackingNumber::new(RegionCode::parse("1771").unwrap(), 5).unwrap(),
            opened_by: mpp_core::AgencyId::parse("dukcapil").unwrap(),
            opened_at_ms: T0_MS,
            opened_seq: 1,
            pin_verifier: vec![],
            nik_keyed_hash: vec![],
            updated_at_ms: T0_MS,
            last_seq: 1,
            applications: apps
                .iter()
                .enumerate()
                .map(|(i, seqs)| mpp_core::case::Application {
                    id: mpp_core::ApplicationId::parse(&format!("A-{i}")).unwrap(),
                    agency: mpp_core::AgencyId::parse("dukcapil").unwrap(),
                    service: mpp_core::ServiceId::parse("kk").unwrap(),
                    state: mpp_core::state::AppState::InReview,
                    filed_at_ms: T0_MS,
                    state_since_ms: T0_MS,
                    pending: None,
                    timeline: seqs.iter().copied().map(item).collect(),
                    sla_working_days: 5,
                    fiktif_positif: false,
                    standard_version: 1,
                })
                .collect(),
            personal_data: mpp_core::case::PersonalData::None,
            pin_reissues: Vec::new(),
            personal_data_reads: Vec::new(),
        }
    }

    #[test]
    fn the_opener_s_reissues_and_data_reads_join_the_access_history_newest_first() {
        let mut case = case_with_timelines(&[]);
        case.pin_reissues = vec![mpp_core::PinReissue { seq: 2, at_ms: T0_MS + 20 }];
        case.personal_data_reads = (0..3)
            .map(|i| mpp_core::DataRead {
                seq: 3 + i,
                at_ms: T0_MS + 10 * i as i64,
                client_id: format!("desk-{i}"),
            })
            .collect();
        let mut access =
            vec![AccessEvent { at_ms: T0_MS + 15, accessor: Accessor::Citizen, channel: AccessChannel::Web }];
        merge_opener_accesses(&mut access, &case);
        let got: Vec<(i64, &str, Option<&str>)> =
            access.iter().map(|e| (e.at_ms - T0_MS, e.channel.as_str(), e.accessor.client_id())).collect();
        assert_eq!(
            got,
            vec![
                (20, "counter", None),
                (20, "personal_data", Some("desk-2")),
                (15, "web", None),
                (10, "personal_data", Some("desk-1")),
                (0, "personal_data", Some("desk-0")),
            ]
        );
        assert!(access
            .iter()
            .filter(|e| e.channel != AccessChannel::Web)
            .all(|e| e.accessor.agency() == Some(&case.opened_by)));
        // However many, the history stays bounded.
        case.personal_data_reads = (0..100)
            .map(|i| mpp_core::DataRead { seq: 10 + i, at_ms: T0_MS + i as i64, client_id: "desk".into() })
            .collect();
        let mut access = Vec::new();
        merge_opener_accesses(&mut access, &case);
        assert_eq!(access.len(), ACCESS_EVENTS_SHOWN_MAX);
    }

    fn seqs_of(case: &Case) -> Vec<Vec<u64>> {
        case.applications.iter().map(|a| a.timeline.iter().map(|t| t.seq).collect()).collect()
    }

    #[test]
    fn timelines_are_paged_newest_first_across_applications() {
        let n = TIMELINE_PAGE_ITEMS_MAX as u64;
        // Two applications interleaved: even seqs in one, odd in the other.
        let evens: Vec<u64> = (0..n + 10).map(|i| 10 + 2 * i).collect();
        let odds: Vec<u64> = (0..n + 10).map(|i| 11 + 2 * i).collect();
        let full = case_with_timelines(&[&evens, &odds]);
        let total = full.applications.iter().map(|a| a.timeline.len()).sum::<usize>();

        let mut first = full.clone();
        let page = TimelinePage::cut(&mut first, None);
        let kept: Vec<u64> = seqs_of(&first).concat();
        assert_eq!(kept.len(), TIMELINE_PAGE_ITEMS_MAX);
        assert_eq!(page.items_total, total);
        let newest = *odds.last().unwrap();
        assert!(kept.contains(&newest), "the newest item is on the first page");
        let oldest_kept = *kept.iter().min().unwrap();
        assert_eq!(page.next_before_seq, Some(oldest_kept));
        for a in seqs_of(&first) {
            assert!(a.windows(2).all(|w| w[0] < w[1]), "log order within an application: {a:?}");
        }

        // Walking the cursor visits every item exactly once.
        let mut seen = kept;
        let mut cursor = page.next_before_seq;
        while let Some(before) = cursor {
            let mut next = full.clone();
            let page = TimelinePage::cut(&mut next, Some(before));
            let items = seqs_of(&next).concat();
            assert!(!items.is_empty() && items.len() <= TIMELINE_PAGE_ITEMS_MAX);
            assert!(items.iter().all(|s| *s < before));
            seen.extend(items);
            cursor = page.next_before_seq;
        }
        seen.sort_unstable();
        let mut all = [evens, odds].concat();
        all.sort_unstable();
        assert_eq!(seen, all);

        // A small case is one page.
        let mut small = case_with_timelines(&[&[3, 5], &[4]]);
        assert_eq!(
            TimelinePage::cut(&mut small, None),
            TimelinePage { items_total: 3, next_before_seq: None }
        );
        assert_eq!(seqs_of(&small), vec![vec![3, 5], vec![4]]);
    }

    fn message(
        seq: u64,
        case: Option<TrackingNumber>,
        app: &str,
        body: mpp_core::EventBody,
    ) -> mpp_ledger::ledger::RawMessage {
        use prost::Message as _;
        let ms = T0_MS as u64 + seq;
        let hex = format!("{ms:012x}");
        let event_id = format!(
            "{}-{}-7{:03x}-{:04x}-{:012x}",
            &hex[..8],
            &hex[8..],
            seq & 0xfff,
            0x8000 | (seq & 0x3fff),
            seq
        );
        let u = mpp_core::UncheckedEnvelope {
            schema_version: 1,
            event_id,
            case_id: case.map(|c| c.to_string()).unwrap_or_default(),
            region_code: "1771".to_owned(),
            agency_id: "dukcapil".to_owned(),
            service_id: "kk".to_owned(),
            application_id: app.to_owned(),
            occurred_at_ms: T0_MS,
            officer: "petugas-7".to_owned(),
            body: Some(body),
        };
        mpp_ledger::ledger::RawMessage {
            stream_seq: seq,
            stream_time_ns: (T0_MS + seq as i64 * 1000) * 1_000_000,
            subject: "mpp.events.dukcapil.kk".to_owned(),
            payload: bytes::Bytes::from(mpp_wire::from_unchecked(&u).encode_to_vec()),
            redrive: None,
        }
    }

    #[tokio::test]
    async fn cached_service_names_follow_a_new_standard_once_its_commit_is_announced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let mut ledger = mpp_ledger::ledger::Ledger::open(store.clone()).unwrap();
        let pepper = PinPepper::from_bytes(b"lookup-tests-pepper-0123456789").unwrap();
        let case = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 77).unwrap();
        let pin = Pin::parse("123456").unwrap();
        let verifier = pin_verifier(&pepper, &case, &pin).to_vec();
        let opened =
            mpp_core::EventBody::CaseOpened { pin_verifier: verifier, nik_keyed_hash: vec![0xAB; 32] };
        let filed = mpp_core::EventBody::ApplicationFiled { documents: vec![] };
        let first = [
            standard_message(1, "Kartu Keluarga", 1),
            message(2, Some(case), "", opened),
            message(3, Some(case), "KK-1", filed),
        ];
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let changes = CaseChanges::new(stop_rx);
        let outcome = ledger.commit_batch(&first).unwrap();
        assert_eq!(outcome.rejected, 0, "{outcome:?}");
        changes.publish(&outcome.touched_cases);
        let lookups = Lookups::new(
            store,
            Arc::new(CalendarSet::new()),
            Arc::new(|| T0_MS + 3_600_000),
            pepper,
            LookupLimits { per_minute: 1_000_000, burst: 1_000_000 },
        );
        // A clone made before following still shares the cache and the counter.
        let other = lookups.clone();
        lookups.follow_commits(&changes);
        let req = LookupRequest {
            tracking_number: &case.to_string(),
            pin: Some("123456"),
            proof: None,
            client: IpAddr::from([127, 0, 0, 1]),
            channel: AccessChannel::Api,
            timeline_before_seq: None,
        };
        async fn name(l: &Lookups, req: &LookupRequest<'_>) -> String {
            l.lookup(req).await.unwrap().service_names[0].id.clone()
        }
        assert_eq!(name(&lookups, &req).await, "Kartu Keluarga");
        assert_eq!(name(&other, &req).await, "Kartu Keluarga", "served from the cache");
        let outcome = ledger.commit_batch(&[standard_message(4, "Kartu Keluarga Baru", 2)]).unwrap();
        assert_eq!(outcome.rejected, 0, "{outcome:?}");
        assert!(outcome.touched_cases.is_empty(), "a standard touches no case, and is still announced");
        changes.publish(&outcome.touched_cases);
        assert_eq!(name(&other, &req).await, "Kartu Keluarga Baru");
        assert_eq!(name(&lookups, &req).await, "Kartu Keluarga Baru");
        drop(stop_tx);
    }

    #[tokio::test]
    async fn a_lookup_whose_access_event_cannot_be_queued_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let mut ledger = mpp_ledger::ledger::Ledger::open(store.clone()).unwrap();
        let pepper = PinPepper::from_bytes(b"lookup-tests-pepper-0123456789").unwrap();
        let case = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 78).unwrap();
        let verifier = pin_verifier(&pepper, &case, &Pin::parse("123456").unwrap()).to_vec();
        let opened =
            mpp_core::EventBody::CaseOpened { pin_verifier: verifier, nik_keyed_hash: vec![0xAB; 32] };
        let outcome = ledger.commit_batch(&[message(1, Some(case), "", opened)]).unwrap();
        assert_eq!(outcome.rejected, 0, "{outcome:?}");
        // A queue of one event, and no writer draining it.
        let (log, _stalled) = AccessLog::open_stalled(&dir.path().join("access"), 1).unwrap();
        let lookups = Lookups::new(
            store,
            Arc::new(CalendarSet::new()),
            Arc::new(|| T0_MS + 3_600_000),
            pepper,
            LookupLimits { per_minute: 1_000_000, burst: 1_000_000 },
        )
        .with_access_log(log.clone());
        let req = LookupRequest {
            tracking_number: &case.to_string(),
            pin: Some("123456"),
            proof: None,
            client: IpAddr::from([127, 0, 0, 1]),
            channel: AccessChannel::Web,
            timeline_before_seq: None,
        };
        let first = lookups.lookup(&req).await.unwrap();
        assert_eq!(first.access.len(), 1, "this lookup is shown as queued");
        let refused = lookups.lookup(&req).await.unwrap_err();
        assert_eq!(refused.code(), ReasonCode::Unavailable, "no case without its access event");
        assert_eq!(log.refused(), 1);
        assert_eq!(log.dropped(), 0);
        // A re-read (page session, watch) records nothing, so it still answers.
        assert!(lookups.read(&case).unwrap().is_some());
    }

    #[test]
    fn typed_pins_are_normalised_or_refused_with_a_reason() {
        assert_eq!(parse_pin(Some(" 042 137 ")).unwrap().expose(), "042137");
        assert_eq!(parse_pin(Some("０４２１３７")).unwrap().expose(), "042137");
        assert_eq!(parse_pin(Some(" k7m-r2x 9qh ")).unwrap().expose(), "K7MR2X9QH");
        assert!(!parse_pin(Some("K7M-R2X-9QH")).unwrap().is_legacy());
        let code = |s: Option<&str>| parse_pin(s).unwrap_err().code;
        assert_eq!(code(None), ReasonCode::PinRequired);
        assert_eq!(code(Some("   ")), ReasonCode::PinRequired);
        assert_eq!(code(Some("12345")), ReasonCode::MalformedPin);
        assert_eq!(code(Some("12345x")), ReasonCode::MalformedPin);
        assert_eq!(code(Some("K7M-R2X-9Q0")), ReasonCode::MalformedPin);
        assert_eq!(code(Some(&"1".repeat(33))), ReasonCode::FieldTooLong);
    }

    #[test]
    fn lookups_are_counted_by_channel_and_outcome() {
        use crate::error::ApiError;
        use mpp_obs::metrics::LOOKUP_SECONDS_BUCKETS;
        use mpp_obs::testing::{histogram_is_consistent, parse};
        let m = mpp_ledger::observe::hub_metrics();
        let err = |code| -> Result<(), LookupError> { Err(ApiError::new(code, "x").into()) };
        let cases: [(AccessChannel, Result<(), LookupError>); 7] = [
            (AccessChannel::Api, Ok(())),
            (AccessChannel::Api, err(ReasonCode::CaseNotFound)),
            (AccessChannel::Grpc, err(ReasonCode::BadCheckDigit)),
            (AccessChannel::Grpc, err(ReasonCode::PinRequired)),
            (AccessChannel::Web, err(ReasonCode::RateLimited)),
            (AccessChannel::Web, err(ReasonCode::LookupLocked)),
            (AccessChannel::Audit, Ok(())),
        ];
        for (channel, result) in &cases {
            if let Some(channel) = lookup_channel(*channel) {
                m.record_lookup(channel, lookup_outcome(result), std::time::Duration::from_micros(300));
            }
        }
        assert_eq!(m.lookups(LookupChannel::Http, LookupOutcome::Found), 1);
        assert_eq!(m.lookups(LookupChannel::Http, LookupOutcome::NotFoundOrPin), 1);
        assert_eq!(m.lookups(LookupChannel::Grpc, LookupOutcome::Invalid), 2);
        assert_eq!(m.lookups(LookupChannel::Page, LookupOutcome::RateLimited), 1);
        assert_eq!(m.lookups(LookupChannel::Page, LookupOutcome::Locked), 1);
        let health = mpp_ledger::observe::health(&mpp_store::Head::GENESIS);
        let scrape = health.scrape(Some(3), Some(7), 0);
        let s = parse(&m.render(&scrape));
        assert_eq!(s["mpp_hub_lookups_total{channel=\"grpc\",outcome=\"invalid\"}"], 2.0);
        assert_eq!(s["mpp_hub_lookups_total{channel=\"page\",outcome=\"found\"}"], 0.0);
        let total: f64 =
            s.iter().filter(|(k, _)| k.starts_with("mpp_hub_lookups_total{")).map(|(_, v)| v).sum();
        assert_eq!(total, 6.0, "the audit channel is not a citizen lookup");
        assert_eq!(histogram_is_consistent(&s, "mpp_hub_lookup_seconds", LOOKUP_SECONDS_BUCKETS), 6.0);
        assert_eq!(s["mpp_hub_lookup_seconds_bucket{le=\"0.00025\"}"], 0.0);
        assert_eq!(s["mpp_hub_lookup_seconds_bucket{le=\"0.0005\"}"], 6.0);
        assert_eq!(s["mpp_hub_ready"], 0.0, "starting");
    }
}
