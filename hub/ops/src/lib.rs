//! The operators' dashboard: volumes, backlog, SLA compliance and rejected
//! submissions per MPP (region) and per agency, with redrive of rejected
//! submissions that were fixed upstream.
//!
//! | route | does |
//! |---|---|
//! | `GET /ops` | the dashboard (HTML), or the login form with `401` |
//! | `POST /ops/login` | checks a token from the form and sets the `mpp_ops` cookie |
//! | `POST /ops/logout` | clears the cookie |
//! | `POST /ops/redrive` | redrives the rejected entry `seq` (form), then back to `/ops` |
//! | `GET /ops/export/{table}.csv` | one table of the dashboard as CSV ([`csv::TABLES`]); `404` for another name |
//! | `GET /api/v1/ops/summary` | the dashboard's figures as JSON ([`Summary`]) |
//! | `POST /api/v1/ops/redrive/{seq}` | redrives the rejected entry `seq` ([`RedriveOutcome`]) |
//!
//! # Who may look
//!
//! Operators (MPP managers, the province) hold bearer tokens listed by
//! SHA-256 in `--operator-tokens-file`, the format of the auditors' file
//! ([`mpp_audit::auth::TokenTable`]). Every route checks the token before it
//! does any work: `Authorization: Bearer <token>`, or the `mpp_ops` cookie
//! the login form sets (HttpOnly, SameSite=Strict, Secure behind an https
//! `--public-url`; SameSite=Strict is what keeps another site from posting a
//! redrive with it). A missing or wrong token gets `401` and no figure.
//! Without a tokens file every route answers `401`.
//!
//! # What a redrive is
//!
//! The ledger judges a message from its subject, payload and time of record
//! only, and only accepted event ids are burned (see [`mpp_ledger::ledger`]): a
//! rejected event published again is judged afresh against the state at that
//! point. A redrive is the operator's act, never a new statement of the
//! participant ([`mpp_core::redrive`]): the hub publishes the rejected
//! entry's payload, byte for byte (the participant's signature with it),
//! on the redrive subject of the entry's subject
//! (`mpp.events.redrive.<agency>.<service>`, which only the hub's NATS user
//! may publish on), with the headers `Mpp-Redrive-Of: <seq>` and
//! `Mpp-Operator: <id>` (kept by the replicated stream) and the message id
//! `redrive-<seq>-at-<head seq>` (a double click at the same head is one
//! message). The ledger records it as a new log entry with the operator as
//! its actor and the redriven entry's seq (log format version 2), judged
//! as the payload on its original subject; so the log stays a pure
//! function of the stream and every replica and every replay agrees on it.
//! The dashboard shows each rejected entry's newest redrive, its operator
//! and its verdict.
//!
//! Only entries whose rejection can change are redrivable: not those refused
//! before the envelope could be read (`EMPTY_MESSAGE`, `MESSAGE_TOO_LARGE`,
//! `BAD_SUBJECT`, `UNDECODABLE_ENVELOPE`), not registry statements (the
//! registrar publishes again), not redrives (redrive the original), not
//! events whose id was accepted since (they would only be duplicates), and
//! not events a later accepted event superseded (`REDRIVE_SUPERSEDED`: the
//! application, case or standard they are about changed since; the ledger
//! refuses those too).
//!
//! # What it costs
//!
//! The figures are computed at request time from the projection and the log
//! tail, on a blocking thread, at most [`OPS_SCANS_CONCURRENT_MAX`] at once:
//! at most [`OPS_SCAN_CASES_MAX`] cases (one sled read, decode and SLA
//! clock each, tens of microseconds) and the last [`OPS_SCAN_ENTRIES_MAX`]
//! log entries. Beyond the case bound the page says the figures are partial
//! (`cases_truncated`); `mpp-hub audit sla-report` gives full figures
//! offline.

pub mod charts;
pub mod csv;
pub mod svg;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::value::Serde;
use minijinja::Environment;
use mpp_core::calendar::{Date, Zone};
use mpp_core::log::Verdict;
use mpp_core::sla::{sla, SlaView};
use mpp_core::{AppState as ApplicationState, LogEntry, ReasonCode};
use mpp_proto::v1 as pb;
use mpp_store::Store;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};
use tower::limit::ConcurrencyLimitLayer;
use tracing::{info, warn};

use mpp_edge::auth::{ClientId as OperatorId, TokenTable, TOKEN_BYTES_MAX};
use mpp_edge::nats::{connect_nats, NatsAccess, NatsLogin};
use mpp_lookup::error::ApiError;
use mpp_lookup::lookup::Lookups;
use mpp_obs::health::Health;

/// Most cases one dashboard scan reads (see the module docs).
pub const OPS_SCAN_CASES_MAX: usize = 50_000;

/// How many of the newest log entries one dashboard scan reads for
/// rejections and redrives.
pub const OPS_SCAN_ENTRIES_MAX: u64 = 10_000;

/// Most overdue applications listed (the count is always complete within
/// the scan).
pub const OVERDUE_LIST_MAX: usize = 200;

/// Most rejected entries listed, newest first.
pub const REJECTED_LIST_MAX: usize = 100;

/// Weeks the SLA chart covers, the current one included.
pub const OPS_CHART_WEEKS: usize = 12;

/// Days (UTC) the rejections chart covers, today included.
pub const OPS_CHART_DAYS: usize = 14;

/// Dashboard scans running at once; further requests wait.
pub const OPS_SCANS_CONCURRENT_MAX: usize = 2;

/// Operator requests served at once (scans are bounded separately).
pub const OPS_CONCURRENT_REQUESTS_MAX: usize = 64;

/// Largest operator request body (the login and redrive forms), in bytes.
pub const OPS_REQUEST_BODY_BYTES_MAX: usize = 8 * 1024;

/// How long a redrive waits for NATS (connect and PubAck), in milliseconds.
pub const REDRIVE_NATS_TIMEOUT_MS: u64 = 10_000;

/// The dashboard's session cookie: the operator's token itself.
pub const OPS_COOKIE: &str = "mpp_ops";

pub use mpp_core::redrive::{OPERATOR_HEADER, REDRIVE_OF_HEADER};

/// Reasons given before the envelope could be read: a redrive of the same
/// bytes can only be rejected again.
const NOT_REDRIVABLE: [ReasonCode; 4] = [
    ReasonCode::EmptyMessage,
    ReasonCode::MessageTooLarge,
    ReasonCode::BadSubject,
    ReasonCode::UndecodableEnvelope,
];

/// Where redrives are published: the hub's NATS server and login.
#[derive(Debug, Clone)]
pub struct RedriveTarget {
    /// NATS server URL.
    pub nats_url: String,
    /// NATS user and its secret's file, when the hub logs in.
    pub login: Option<NatsLogin>,
    /// CA of the NATS server's TLS certificate, when it must be TLS.
    pub tls_ca_file: Option<PathBuf>,
}

/// Settings of the dashboard.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// The operators; `None` refuses everything.
    pub tokens: Option<Arc<TokenTable>>,
    /// Where redrives go; `None` disables redrive.
    pub redrive: Option<RedriveTarget>,
    /// Mark the cookie `Secure` (the hub is served over https).
    pub secure_cookie: bool,
}

/// The dashboard's shared state.
#[derive(Debug, Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: OpsSettings,
    lookups: Lookups,
    health: Arc<Health>,
    env: Environment<'static>,
    scans: Semaphore,
    js: Mutex<Option<async_nats::jetstream::Context>>,
}

/// The templates of the dashboard.
pub fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.add_template("layout.html", mpp_lookup::page::LAYOUT_HTML)?;
    env.add_template("ops_base.html", include_str!("templates/ops_base.html"))?;
    env.add_template("ops.html", include_str!("templates/ops.html"))?;
    env.add_template("ops_login.html", include_str!("templates/ops_login.html"))?;
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    Ok(env)
}

impl Ops {
    /// The dashboard over the hub's store (through `lookups`) and health.
    pub fn new(
        settings: OpsSettings,
        lookups: Lookups,
        health: Arc<Health>,
    ) -> Result<Self, minijinja::Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                lookups,
                health,
                env: templates()?,
                scans: Semaphore::new(OPS_SCANS_CONCURRENT_MAX),
                js: Mutex::new(None),
            }),
        })
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<OperatorId, &'static str> {
        let table =
            self.inner.settings.tokens.as_ref().ok_or("this hub has no operator tokens configured")?;
        let result = (|| {
            let token = bearer(headers).or_else(|| cookie_value(headers, OPS_COOKIE)).ok_or("no token")?;
            if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
                return Err("malformed token");
            }
            table.authenticate(token.as_bytes()).cloned().ok_or("unknown token")
        })();
        if result.is_err() {
            self.inner.health.metrics().record_ops_auth_failure();
        }
        result
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case("bearer ").then(|| token.trim())
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

/// A token the cookie can carry unchanged (RFC 6265 cookie-octets minus a few).
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= TOKEN_BYTES_MAX
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b))
}

/// The routes of the dashboard (see the module docs), with their own body
/// and concurrency limits; merged into the hub's HTTP router.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/ops", get(dashboard))
        .route("/ops/login", post(login))
        .route("/ops/logout", post(logout))
        .route("/ops/redrive", post(redrive_form))
        .route("/ops/export/{file}", get(export_csv))
        .route("/api/v1/ops/summary", get(summary_json))
        .route("/api/v1/ops/redrive/{seq}", post(redrive_json))
        .layer(DefaultBodyLimit::max(OPS_REQUEST_BODY_BYTES_MAX))
        .layer(ConcurrencyLimitLayer::new(OPS_CONCURRENT_REQUESTS_MAX))
        .with_state(ops)
}

// ---------------------------------------------------------------------------
// Figures.

/// The head the figures were read at.
#[derive(Debug, Clone, Serialize)]
pub struct HeadView {
    /// Last log sequence.
    pub last_seq: u64,
    /// Last stream sequence (the checkpoint).
    pub last_stream_seq: u64,
    /// Hash of the last entry, hex.
    pub head_hash: String,
    /// Whether the hub is ready (ingesting, no gap, disk ok).
    pub ready: bool,
}

/// How much the figures cover.
#[derive(Debug, Clone, Serialize)]
pub struct ScanView {
    /// Cases read.
    pub cases_read: usize,
    /// The store holds more than [`OPS_SCAN_CASES_MAX`] cases: the case
    /// figures are partial.
    pub cases_truncated: bool,
    /// First log sequence read for rejections.
    pub entries_from_seq: u64,
    /// Log entries read for rejections.
    pub entries_read: u64,
}

/// One application state and how many applications are in it.
#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    /// The state (`submitted`, `in_review`, …).
    pub state: &'static str,
    /// Its Indonesian label.
    pub label: &'static str,
    /// Applications in it.
    pub count: u64,
}

/// The figures of one MPP, one agency, or everything.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Region code (per MPP), agency id (per agency) or `all`.
    pub key: String,
    /// Cases opened (per agency: opened by that agency).
    pub cases_opened: u64,
    /// Applications filed.
    pub applications: u64,
    /// Applications per state, every state listed.
    pub by_state: Vec<StateCount>,
    /// Finished within their standard.
    pub on_time: u64,
    /// Finished after their standard.
    pub late: u64,
    /// Open and past their due date.
    pub overdue: u64,
    /// `on_time / (finished + overdue)` in percent; `None` when nothing is
    /// decided yet.
    pub sla_compliance_pct: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct Tally {
    cases_opened: u64,
    states: BTreeMap<usize, u64>,
    applications: u64,
    on_time: u64,
    late: u64,
    overdue: u64,
}

impl Tally {
    fn group(&self, key: String) -> Group {
        let decided = self.on_time + self.late + self.overdue;
        Group {
            key,
            cases_opened: self.cases_opened,
            applications: self.applications,
            by_state: ApplicationState::ALL
                .iter()
                .enumerate()
                .map(|(i, s)| StateCount {
                    state: s.as_str(),
                    label: s.label_id(),
                    count: self.states.get(&i).copied().unwrap_or(0),
                })
                .collect(),
            on_time: self.on_time,
            late: self.late,
            overdue: self.overdue,
            sla_compliance_pct: compliance_pct(self.on_time, decided),
        }
    }
}

/// `on_time / decided` in percent with one decimal (so the JSON and the
/// page show the same figure); `None` when nothing is decided.
fn compliance_pct(on_time: u64, decided: u64) -> Option<f64> {
    (decided > 0).then(|| (1000.0 * on_time as f64 / decided as f64).round() / 10.0)
}

/// The SLA of one agency in one ISO week.
#[derive(Debug, Clone, Serialize)]
pub struct SlaWeek {
    /// Agency.
    pub agency: String,
    /// ISO week (`2025-W02`).
    pub week: String,
    /// Its Monday (`YYYY-MM-DD`).
    pub starts_on: String,
    /// Finished within their standard in this week.
    pub on_time: u64,
    /// Finished after their standard in this week.
    pub late: u64,
    /// Open, overdue, and due in this week.
    pub overdue: u64,
    /// `on_time / (on_time + late + overdue)` in percent.
    pub sla_compliance_pct: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct WeekTally {
    on_time: u64,
    late: u64,
    overdue: u64,
}

/// Rejections of one reason on one day.
#[derive(Debug, Clone, Serialize)]
pub struct DayReasonCount {
    /// The day of the time of record, UTC (`YYYY-MM-DD`).
    pub day: String,
    /// Reason code.
    pub reason: &'static str,
    /// Entries.
    pub count: u64,
}

/// The Monday of the ISO week of `d`.
fn week_start(d: Date) -> Date {
    d.add_days(-i32::from(d.weekday().index_from_monday()))
}

/// The ISO week (`YYYY-Www`) that starts on `monday`.
fn iso_week(monday: Date) -> String {
    // The ISO year is the year of the week's Thursday.
    let thursday = monday.add_days(3);
    let year = thursday.year();
    let jan1 = Date::from_ymd(year, 1, 1).unwrap_or(thursday);
    format!("{year:04}-W{:02}", (thursday.days() - jan1.days()) / 7 + 1)
}

/// The Mondays of the SLA chart's [`OPS_CHART_WEEKS`] weeks, oldest first.
/// Weeks are those of the applications' local dates; the current week is
/// that of `now_ms` in WIT (UTC+9), the easternmost zone, so no local date
/// in any zone lies past it.
pub fn chart_weeks(now_ms: i64) -> Vec<Date> {
    let this = week_start(Date::from_unix_ms(now_ms, Zone::Wit.offset_minutes()));
    (0..OPS_CHART_WEEKS).rev().map(|i| this.add_days(-7 * i as i32)).collect()
}

/// The [`OPS_CHART_DAYS`] days (UTC) of the rejections chart, oldest first.
pub fn chart_days(now_ms: i64) -> Vec<Date> {
    let today = Date::from_unix_ms(now_ms, 0);
    (0..OPS_CHART_DAYS).rev().map(|i| today.add_days(-(i as i32))).collect()
}

/// The week an application counts in for the SLA chart, and how: the week
/// it finished (on time or late), or for an open overdue one the week of
/// its due date. `None` for one still within its time.
fn sla_week_of(v: &SlaView) -> Option<(Date, Option<bool>)> {
    match (v.finished_on_time, v.finished_on, v.due_date) {
        (Some(on_time), Some(d), _) => Some((week_start(d), Some(on_time))),
        (None, _, Some(d)) if v.overdue => Some((week_start(d), None)),
        _ => None,
    }
}

/// One overdue application.
#[derive(Debug, Clone, Serialize)]
pub struct Overdue {
    /// Tracking number of its case.
    pub tracking_number: String,
    /// Region code of the MPP.
    pub region: String,
    /// Agency.
    pub agency: String,
    /// Service.
    pub service: String,
    /// Application id.
    pub application_id: String,
    /// Its state.
    pub state: &'static str,
    /// Its due date (`YYYY-MM-DD`), if within reach.
    pub due_date: Option<String>,
    /// Working days past due.
    pub working_days_over: u32,
}

/// How many rejections one reason (and agency) had.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    /// Agency from the subject (`?` when the subject names none).
    pub agency: String,
    /// Reason code.
    pub reason: &'static str,
    /// Entries.
    pub count: u64,
}

/// An operator's redrive of a rejected entry, as the log recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct Redriven {
    /// Its log sequence.
    pub seq: u64,
    /// The operator who redrove it (the entry's actor).
    pub operator: String,
    /// Its verdict.
    pub verdict: &'static str,
    /// Its reason, if rejected.
    pub reason: Option<&'static str>,
}

/// One rejected entry.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Log sequence.
    pub seq: u64,
    /// Time of record, Unix ms.
    pub recorded_at_ms: i64,
    /// Agency from the subject.
    pub agency: String,
    /// Subject.
    pub subject: String,
    /// Reason code.
    pub reason: &'static str,
    /// Deterministic detail.
    pub detail: String,
    /// Event id, when the payload is an envelope.
    pub event_id: Option<String>,
    /// A redrive may change the verdict (see the module docs).
    pub redrivable: bool,
    /// The accepted redrive of this entry, or else its newest.
    pub redriven: Option<Redriven>,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// When the SLA clocks were read, Unix ms.
    pub as_of_ms: i64,
    /// The head at the scan.
    pub head: HeadView,
    /// What the scan covered.
    pub scan: ScanView,
    /// Everything.
    pub total: Group,
    /// Per MPP (region code), in code order.
    pub by_mpp: Vec<Group>,
    /// Per agency, in id order.
    pub by_agency: Vec<Group>,
    /// Overdue applications (at most [`OVERDUE_LIST_MAX`], most overdue first).
    pub overdue: Vec<Overdue>,
    /// Rejections in the scanned entries per agency and reason.
    pub rejections_by_reason: Vec<ReasonCount>,
    /// Rejections in the scanned entries.
    pub rejected_total: u64,
    /// The newest rejected entries (at most [`REJECTED_LIST_MAX`]).
    pub rejected: Vec<Rejected>,
    /// Whether this hub can redrive (NATS configured).
    pub redrive_enabled: bool,
    /// The SLA chart's ISO weeks, oldest first ([`OPS_CHART_WEEKS`]).
    pub sla_weeks: Vec<String>,
    /// SLA per agency and week within `sla_weeks`, by agency then week;
    /// weeks with nothing decided are left out.
    pub sla_weekly: Vec<SlaWeek>,
    /// The rejections chart's days (UTC), oldest first ([`OPS_CHART_DAYS`]).
    pub rejection_days: Vec<String>,
    /// Rejections in the scanned entries per day within `rejection_days`
    /// and reason, by day then reason.
    pub rejections_daily: Vec<DayReasonCount>,
}

/// The agency a subject names (a redrive's, that of the subject it
/// redrives); registry statements count under "registrar".
fn agency_of(subject: &str) -> String {
    if subject == mpp_core::registry::REGISTRY_SUBJECT {
        return "registrar".to_owned();
    }
    let original = mpp_core::redrive::original_subject(subject);
    let subject = original.as_deref().unwrap_or(subject);
    mpp_core::validate::parse_subject(subject).map_or_else(|_| "?".to_owned(), |(a, _)| a.to_owned())
}

fn event_id_of(payload: &[u8]) -> Option<String> {
    pb::Envelope::decode(payload).ok().map(|e| e.event_id).filter(|id| !id.is_empty())
}

/// Whether a redrive of `e` could change its verdict: rejected, neither a
/// registry statement nor itself a redrive, read as an envelope, its event
/// id not accepted since and nothing it is about changed since
/// ([`superseded`]).
pub fn redrivable(store: &impl Store, e: &LogEntry) -> Result<bool, mpp_store::StoreError> {
    if e.verdict != Verdict::Rejected
        || e.reason.is_some_and(|r| NOT_REDRIVABLE.contains(&r))
        || e.redrive.is_some()
        || mpp_core::redrive::redrive_subject(&e.subject).is_none()
        || e.subject == mpp_core::registry::REGISTRY_SUBJECT
    {
        return Ok(false);
    }
    let Some(id) = event_id_of(&e.payload) else { return Ok(false) };
    if let Ok(id) = mpp_core::EventId::parse(&id) {
        if store.event_seq(&id)?.is_some() {
            return Ok(false);
        }
    }
    Ok(superseded(store, e)?.is_none())
}

/// The case and standard a redrive of one entry is judged against.
struct Snapshot {
    case: Option<mpp_core::Case>,
    standard: Option<mpp_core::ServiceStandard>,
}

impl mpp_core::State for Snapshot {
    fn case(&self, id: &mpp_core::TrackingNumber) -> Option<&mpp_core::Case> {
        self.case.as_ref().filter(|c| c.tracking_number == *id)
    }

    fn standard(
        &self,
        agency: &mpp_core::AgencyId,
        service: &mpp_core::ServiceId,
    ) -> Option<mpp_core::StandardTerms> {
        self.standard.as_ref().filter(|s| s.agency == *agency && s.service == *service).map(|s| s.terms())
    }
}

/// Why the ledger would refuse a redrive of `e` as superseded now
/// ([`mpp_core::redrive::superseded`] against the stored projection); `None`
/// when it would not, or when the payload is no valid envelope (the ledger
/// then rejects it for that again).
pub fn superseded(
    store: &impl Store,
    e: &LogEntry,
) -> Result<Option<mpp_core::Rejection>, mpp_store::StoreError> {
    let Ok(decoded) = pb::Envelope::decode(e.payload.as_slice()) else { return Ok(None) };
    let Ok(env) =
        mpp_core::validate::validate(&e.subject, &mpp_wire::to_unchecked(&decoded), e.recorded_at_ms())
    else {
        return Ok(None);
    };
    let case = match env.case_id() {
        Some(t) => store.case(&t)?,
        None => None,
    };
    let standard = store.standard(&env.agency, &env.service)?;
    Ok(mpp_core::redrive::superseded(&Snapshot { case, standard }, &env, e.seq))
}

/// Computes the figures (blocking: reads the store).
pub fn summarize(lookups: &Lookups, health: &Health, now_ms: i64) -> Result<Summary, mpp_store::StoreError> {
    let store = lookups.store();
    let readiness = health.readiness();
    let head = store.head()?;
    let calendars = lookups.calendars();
    let (mut total, mut by_mpp, mut by_agency) =
        (Tally::default(), BTreeMap::<String, Tally>::new(), BTreeMap::<String, Tally>::new());
    let mut overdue = Vec::new();
    let weeks = chart_weeks(now_ms);
    let mut weekly: BTreeMap<(String, Date), WeekTally> = BTreeMap::new();
    let mut scan = ScanView { cases_read: 0, cases_truncated: false, entries_from_seq: 0, entries_read: 0 };
    for case in store.cases() {
        if scan.cases_read == OPS_SCAN_CASES_MAX {
            scan.cases_truncated = true;
            break;
        }
        let case = case?;
        if case.is_shell() {
            continue;
        }
        scan.cases_read += 1;
        let region = case.tracking_number.region();
        let cal = calendars.calendar(region);
        let region = region.to_string();
        total.cases_opened += 1;
        by_mpp.entry(region.clone()).or_default().cases_opened += 1;
        by_agency.entry(case.opened_by.to_string()).or_default().cases_opened += 1;
        for app in &case.applications {
            let v = sla(app, &cal, now_ms);
            let state = ApplicationState::ALL.iter().position(|s| *s == app.state).unwrap_or(0);
            let mpp = by_mpp.entry(region.clone()).or_default();
            let agency = by_agency.entry(app.agency.to_string()).or_default();
            for t in [&mut total, mpp, agency] {
                t.applications += 1;
                *t.states.entry(state).or_default() += 1;
                match v.finished_on_time {
                    Some(true) => t.on_time += 1,
                    Some(false) => t.late += 1,
                    None if v.overdue => t.overdue += 1,
                    None => {}
                }
            }
            if let Some((week, on_time)) = sla_week_of(&v).filter(|(w, _)| weeks.contains(w)) {
                let t = weekly.entry((app.agency.to_string(), week)).or_default();
                match on_time {
                    Some(true) => t.on_time += 1,
                    Some(false) => t.late += 1,
                    None => t.overdue += 1,
                }
            }
            if v.overdue {
                overdue.push(Overdue {
                    tracking_number: case.tracking_number.to_string(),
                    region: region.clone(),
                    agency: app.agency.to_string(),
                    service: app.service.to_string(),
                    application_id: app.id.to_string(),
                    state: app.state.as_str(),
                    due_date: v.due_date.map(|d| d.to_string()),
                    working_days_over: v.working_days_left.unsigned_abs(),
                });
            }
        }
    }
    overdue.sort_by(|a, b| {
        b.working_days_over.cmp(&a.working_days_over).then_with(|| a.tracking_number.cmp(&b.tracking_number))
    });
    overdue.truncate(OVERDUE_LIST_MAX);

    // The log tail: rejections, and later entries repeating them (redrives).
    let from = head.last_seq.saturating_sub(OPS_SCAN_ENTRIES_MAX - 1).max(1);
    scan.entries_from_seq = from;
    let mut reasons: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut rejected_total = 0u64;
    let days = chart_days(now_ms);
    let mut daily: BTreeMap<(Date, &'static str), u64> = BTreeMap::new();
    // The seq of each listed rejected entry → its index.
    let mut listed: HashMap<u64, usize> = HashMap::new();
    let take = usize::try_from(head.last_seq.saturating_sub(from) + 1).unwrap_or(usize::MAX);
    if head.last_seq > 0 {
        for e in store.entries(from).take(take) {
            let e = e?;
            scan.entries_read += 1;
            // The newest redrive of an entry, unless one was accepted
            // already: that one stays shown.
            let shown =
                |r: &Rejected| r.redriven.as_ref().is_some_and(|d| d.verdict == Verdict::Accepted.as_str());
            if let Some(i) =
                e.redrive.as_ref().and_then(|r| listed.get(&r.of_seq)).filter(|i| !shown(&rejected[**i]))
            {
                rejected[*i].redriven = Some(Redriven {
                    seq: e.seq,
                    operator: e.redrive.as_ref().map(|r| r.operator.clone()).unwrap_or_default(),
                    verdict: e.verdict.as_str(),
                    reason: e.reason.map(ReasonCode::as_str),
                });
            }
            if e.verdict != Verdict::Rejected {
                continue;
            }
            rejected_total += 1;
            let reason = e.reason.map_or("-", ReasonCode::as_str);
            let agency = agency_of(&e.subject);
            *reasons.entry((agency.clone(), reason)).or_default() += 1;
            let day = Date::from_unix_ms(e.stream_time_ns.div_euclid(1_000_000), 0);
            if days.contains(&day) {
                *daily.entry((day, reason)).or_default() += 1;
            }
            listed.insert(e.seq, rejected.len());
            rejected.push(Rejected {
                seq: e.seq,
                recorded_at_ms: e.stream_time_ns.div_euclid(1_000_000),
                agency,
                subject: e.subject.clone(),
                reason,
                detail: e.detail.clone(),
                event_id: event_id_of(&e.payload),
                redrivable: redrivable(store, &e)?,
                redriven: None,
            });
        }
    }
    // A rejection redriven and accepted is no longer redrivable.
    for r in &mut rejected {
        if r.redriven.as_ref().is_some_and(|d| d.verdict == Verdict::Accepted.as_str()) {
            r.redrivable = false;
        }
    }
    rejected.reverse();
    rejected.truncate(REJECTED_LIST_MAX);
    let mut rejections_by_reason: Vec<ReasonCount> =
        reasons.into_iter().map(|((agency, reason), count)| ReasonCount { agency, reason, count }).collect();
    rejections_by_reason.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.agency.cmp(&b.agency)));
    Ok(Summary {
        as_of_ms: now_ms,
        head: HeadView {
            last_seq: head.last_seq,
            last_stream_seq: head.last_stream_seq,
            head_hash: hex::encode(head.head_hash),
            ready: readiness.ready,
        },
        scan,
        total: total.group("all".to_owned()),
        by_mpp: by_mpp.into_iter().map(|(k, t)| t.group(k)).collect(),
        by_agency: by_agency.into_iter().map(|(k, t)| t.group(k)).collect(),
        overdue,
        rejections_by_reason,
        rejected_total,
        rejected,
        redrive_enabled: false,
        sla_weeks: weeks.iter().map(|w| iso_week(*w)).collect(),
        sla_weekly: weekly
            .into_iter()
            .map(|((agency, week), t)| SlaWeek {
                agency,
                week: iso_week(week),
                starts_on: week.to_string(),
                on_time: t.on_time,
                late: t.late,
                overdue: t.overdue,
                sla_compliance_pct: compliance_pct(t.on_time, t.on_time + t.late + t.overdue),
            })
            .collect(),
        rejection_days: days.iter().map(Date::to_string).collect(),
        rejections_daily: daily
            .into_iter()
            .map(|((day, reason), count)| DayReasonCount { day: day.to_string(), reason, count })
            .collect(),
    })
}

// ---------------------------------------------------------------------------
// Redrive.

/// Why a redrive was refused.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// This hub has no NATS target for redrives.
    #[error("redrive is not enabled on this hub")]
    Disabled,
    /// No log entry has this sequence.
    #[error("no log entry {0}")]
    NoSuchEntry(u64),
    /// The entry is not a rejection a redrive could change.
    #[error("entry {0} is not a redrivable rejection (accepted, a duplicate, unreadable bytes, a registry statement, a redrive, or its event was accepted since)")]
    NotRedrivable(u64),
    /// A later accepted event superseded the entry's event.
    #[error("entry {0} is superseded: {1}")]
    Superseded(u64, String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] mpp_store::StoreError),
    /// NATS failed or timed out.
    #[error("NATS: {0}")]
    Nats(String),
}

impl From<&RedriveError> for ApiError {
    fn from(e: &RedriveError) -> Self {
        let code = match e {
            RedriveError::Disabled => ReasonCode::RedriveDisabled,
            RedriveError::NoSuchEntry(_) => ReasonCode::NotFound,
            RedriveError::NotRedrivable(_) => ReasonCode::NotRedrivable,
            RedriveError::Superseded(..) => ReasonCode::RedriveSuperseded,
            RedriveError::Store(_) | RedriveError::Nats(_) => ReasonCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

/// What a redrive published.
#[derive(Debug, Clone, Serialize)]
pub struct RedriveOutcome {
    /// The rejected entry republished.
    pub redrive_of: u64,
    /// The stream sequence of the republished message.
    pub stream_seq: u64,
    /// JetStream saw the same redrive already (same entry, same head).
    pub duplicate: bool,
}

impl Ops {
    async fn jetstream(&self) -> Result<async_nats::jetstream::Context, RedriveError> {
        let target = self.inner.settings.redrive.as_ref().ok_or(RedriveError::Disabled)?;
        let mut slot = self.inner.js.lock().await;
        if let Some(js) = slot.as_ref() {
            return Ok(js.clone());
        }
        // Read at every connect, so a rotated password file is picked up.
        let credentials = match &target.login {
            Some(login) => {
                Some(login.load().map_err(|e| RedriveError::Nats(format!("NATS credentials: {e}")))?)
            }
            None => None,
        };
        let timeout = std::time::Duration::from_millis(REDRIVE_NATS_TIMEOUT_MS);
        let access = NatsAccess::new(credentials, target.tls_ca_file.as_deref())
            .map_err(|e| RedriveError::Nats(format!("NATS TLS: {e}")))?;
        let connect = connect_nats(&target.nats_url, "mpp-hub/ops-redrive", &access);
        let client = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| RedriveError::Nats("connect timed out".to_owned()))?
            .map_err(|e| RedriveError::Nats(e.to_string()))?;
        let js = async_nats::jetstream::new(client);
        *slot = Some(js.clone());
        Ok(js)
    }

    /// Republishes the rejected entry `seq` (see the module docs).
    pub async fn redrive(&self, seq: u64, operator: &OperatorId) -> Result<RedriveOutcome, RedriveError> {
        let result = self.republish(seq, operator).await;
        self.inner.health.metrics().record_redrive(result.is_ok());
        if let Err(e) = &result {
            warn!(operator = operator.as_str(), redrive_of = seq, error = %e, "Redrive refused");
        }
        result
    }

    async fn republish(&self, seq: u64, operator: &OperatorId) -> Result<RedriveOutcome, RedriveError> {
        if self.inner.settings.redrive.is_none() {
            return Err(RedriveError::Disabled);
        }
        let lookups = self.inner.lookups.clone();
        let (entry, head_seq) = tokio::task::spawn_blocking(move || {
            let store = lookups.store();
            let entry = store.entry(seq)?.ok_or(RedriveError::NoSuchEntry(seq))?;
            if let Some(r) = superseded(store, &entry)? {
                return Err(RedriveError::Superseded(seq, r.detail));
            }
            if !redrivable(store, &entry)? {
                return Err(RedriveError::NotRedrivable(seq));
            }
            Ok((entry, store.head()?.last_seq))
        })
        .await
        .map_err(|e| RedriveError::Nats(format!("redrive task failed: {e}")))??;
        let subject =
            mpp_core::redrive::redrive_subject(&entry.subject).ok_or(RedriveError::NotRedrivable(seq))?;
        let js = self.jetstream().await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("redrive-{seq}-at-{head_seq}").as_str());
        headers.insert(REDRIVE_OF_HEADER, seq.to_string().as_str());
        headers.insert(OPERATOR_HEADER, operator.as_str());
        let timeout = std::time::Duration::from_millis(REDRIVE_NATS_TIMEOUT_MS);
        let publish = async {
            js.publish_with_headers(subject, headers, entry.payload.clone().into())
                .await
                .map_err(|e| RedriveError::Nats(e.to_string()))?
                .await
                .map_err(|e| RedriveError::Nats(e.to_string()))
        };
        let ack = tokio::time::timeout(timeout, publish)
            .await
            .map_err(|_| RedriveError::Nats("no PubAck in time".to_owned()))??;
        info!(
            operator = operator.as_str(),
            redrive_of = seq,
            stream_seq = ack.sequence,
            duplicate = ack.duplicate,
            "Rejected entry redriven"
        );
        Ok(RedriveOutcome { redrive_of: seq, stream_seq: ack.sequence, duplicate: ack.duplicate })
    }

    async fn summary(&self) -> Result<Summary, String> {
        let _permit = self.inner.scans.acquire().await.map_err(|e| e.to_string())?;
        let (lookups, health) = (self.inner.lookups.clone(), self.inner.health.clone());
        let now_ms = lookups.now_ms();
        let mut s = tokio::task::spawn_blocking(move || summarize(&lookups, &health, now_ms))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        s.redrive_enabled = self.inner.settings.redrive.is_some();
        Ok(s)
    }
}

// ---------------------------------------------------------------------------
// Handlers.

fn unauthorized_json(reason: &str) -> Response {
    warn!(reason, "Unauthenticated operator request refused");
    let mut r = ApiError::new(
        ReasonCode::Unauthenticated,
        "send 'Authorization: Bearer <token>' with an operator token",
    )
    .into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mpp-ops\""));
    r
}

fn html(status: StatusCode, body: Result<String, minijinja::Error>) -> Response {
    match body {
        Ok(b) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            b,
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "Rendering an operator page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page error").into_response()
        }
    }
}

fn login_page(ops: &Ops, status: StatusCode, error: Option<&str>) -> Response {
    let body = ops
        .inner
        .env
        .get_template("ops_login.html")
        .and_then(|t| t.render(minijinja::context! { error => error }));
    html(status, body)
}

async fn summary_json(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    if let Err(reason) = ops.authenticate(&headers) {
        return unauthorized_json(reason);
    }
    match ops.summary().await {
        Ok(s) => ([(header::CACHE_CONTROL, "no-store")], Json(s)).into_response(),
        Err(e) => ApiError::new(ReasonCode::Unavailable, e).into_response(),
    }
}

async fn export_csv(
    State(ops): State<Ops>,
    headers: HeaderMap,
    file: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(reason) = ops.authenticate(&headers) {
        return unauthorized_json(reason);
    }
    let name = file.ok().and_then(|Path(f)| f.strip_suffix(".csv").map(str::to_owned));
    let Some(name) = name.filter(|n| csv::TABLES.contains(&n.as_str())) else {
        return ApiError::new(
            ReasonCode::NotFound,
            format!("no such table; the tables are {}", csv::TABLES.map(|t| format!("{t}.csv")).join(", ")),
        )
        .into_response();
    };
    let s = match ops.summary().await {
        Ok(s) => s,
        Err(e) => return ApiError::new(ReasonCode::Unavailable, e).into_response(),
    };
    let Some(body) = csv::table(&s, &name) else {
        return ApiError::new(ReasonCode::NotFound, "no such table").into_response();
    };
    let disposition = format!("attachment; filename=\"mpp-ops-{name}.csv\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response()
}

async fn redrive_json(
    State(ops): State<Ops>,
    headers: HeaderMap,
    seq: Result<Path<u64>, PathRejection>,
) -> Response {
    let operator = match ops.authenticate(&headers) {
        Ok(o) => o,
        Err(reason) => return unauthorized_json(reason),
    };
    let Ok(Path(seq)) = seq else {
        return ApiError::new(ReasonCode::BadRequest, "the path must end in a log sequence number")
            .into_response();
    };
    match ops.redrive(seq, &operator).await {
        Ok(o) => (StatusCode::ACCEPTED, Json(o)).into_response(),
        Err(e) => ApiError::from(&e).into_response(),
    }
}

/// Minutes and seconds of a Unix ms instant, UTC, as `YYYY-MM-DD HH:MM:SS`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = mpp_core::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Query of `GET /ops`.
#[derive(Debug, Deserialize)]
struct DashboardQuery {
    redriven: Option<u64>,
    error: Option<String>,
}

async fn dashboard(
    State(ops): State<Ops>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<DashboardQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let operator = match ops.authenticate(&headers) {
        Ok(o) => o,
        Err(reason) => {
            warn!(reason, "Unauthenticated dashboard request refused");
            return login_page(&ops, StatusCode::UNAUTHORIZED, None);
        }
    };
    let s = match ops.summary().await {
        Ok(s) => s,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")).into_response()
        }
    };
    let q = query.map(|q| q.0).unwrap_or(DashboardQuery { redriven: None, error: None });
    let notice_error = q.error.filter(|e| e.len() <= 200);
    let rejected_times: Vec<String> = s.rejected.iter().map(|r| utc(r.recorded_at_ms)).collect();
    let body = ops.inner.env.get_template("ops.html").and_then(|t| {
        t.render(minijinja::context! {
            operator => operator.as_str(),
            as_of => utc(s.as_of_ms),
            redriven => q.redriven,
            notice_error => notice_error,
            rejected_times => rejected_times,
            states => ApplicationState::ALL.iter().map(|s| s.label_id()).collect::<Vec<_>>(),
            charts => Serde(&charts::charts(&s)),
            s => Serde(&s),
            overdue_list_max => OVERDUE_LIST_MAX,
            rejected_list_max => REJECTED_LIST_MAX,
        })
    });
    html(StatusCode::OK, body)
}

/// The login form.
#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(ops): State<Ops>, form: Result<Form<LoginForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(&ops, StatusCode::BAD_REQUEST, Some("Formulir tidak terbaca / unreadable form"));
    };
    let token = form.token.trim();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static("")),
    );
    if ops.authenticate(&headers).is_err() || !cookie_safe(token) {
        warn!("Operator login refused");
        return login_page(&ops, StatusCode::UNAUTHORIZED, Some("Token salah / wrong token"));
    }
    let secure = if ops.inner.settings.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{OPS_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let Ok(cookie) = HeaderValue::from_str(&cookie) else {
        return login_page(&ops, StatusCode::UNAUTHORIZED, Some("Token salah / wrong token"));
    };
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, HeaderValue::from_static("/ops"))],
    )
        .into_response()
}

async fn logout() -> Response {
    let cookie = format!("{OPS_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""))),
            (header::LOCATION, HeaderValue::from_static("/ops")),
        ],
    )
        .into_response()
}

/// The redrive form.
#[derive(Debug, Deserialize)]
struct RedriveForm {
    seq: u64,
}

async fn redrive_form(
    State(ops): State<Ops>,
    headers: HeaderMap,
    form: Result<Form<RedriveForm>, FormRejection>,
) -> Response {
    let operator = match ops.authenticate(&headers) {
        Ok(o) => o,
        Err(_) => return login_page(&ops, StatusCode::UNAUTHORIZED, None),
    };
    let Ok(Form(form)) = form else {
        let location = format!("/ops?error={}", ReasonCode::BadRequest.as_str());
        return (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    };
    let location = match ops.redrive(form.seq, &operator).await {
        Ok(o) => format!("/ops?redriven={}", o.redrive_of),
        Err(e) => format!("/ops?error={}", ApiError::from(&e).code.as_str()),
    };
    match HeaderValue::from_str(&location) {
        Ok(l) => (StatusCode::SEE_OTHER, [(header::LOCATION, l)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use mpp_core::calendar::CalendarSet;
    use mpp_store::SledStore;
    use tower::ServiceExt as _;

    use mpp_audit::cli::fixture::{fill, Generator};
    use mpp_audit::cli::Progress;
    use mpp_lookup::ratelimit::LookupLimits;

    /// `printf %s test | sha256sum`.
    const TEST_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const NOW_MS: i64 = 1_900_000_000_000;

    struct World {
        _dir: tempfile::TempDir,
        store: SledStore,
        app: Router,
    }

    fn world(redrive: bool) -> World {
        world_at(redrive, |_| NOW_MS)
    }

    /// A world whose clock reads `now(store)` once the fixture is written.
    fn world_at(redrive: bool, now: impl Fn(&SledStore) -> i64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        fill(&store, &mut Generator::new(11), 400, None, &mut Progress::quiet("t")).unwrap();
        let now_ms = now(&store);
        let health = Arc::new(mpp_ledger::observe::health(&store.head().unwrap()));
        let limits = LookupLimits { per_minute: 60, burst: 20 };
        let lookups = Lookups::new(
            store.clone(),
            Arc::new(CalendarSet::new()),
            Arc::new(move || now_ms),
            mpp_core::pin::PinPepper::insecure_dev(),
            limits,
        );
        let settings = OpsSettings {
            tokens: Some(Arc::new(TokenTable::parse(&format!("op-1:{TEST_HASH}")).unwrap())),
            // A port nothing listens on: a redrive that gets past the checks fails on NATS.
            redrive: redrive.then(|| RedriveTarget {
                nats_url: "nats://127.0.0.1:1".to_owned(),
                login: None,
                tls_ca_file: None,
            }),
            secure_cookie: false,
        };
        let app = router(Ops::new(settings, lookups, health).unwrap());
        World { _dir: dir, store, app }
    }

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn get(path: &str, auth: Option<&str>) -> Request<Body> {
        let mut b = Request::get(path);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn wrong_or_missing_tokens_get_401_and_no_figures() {
        let w = world(false);
        for auth in [None, Some("Bearer nope"), Some("Basic dGVzdA=="), Some("Bearer ")] {
            let (status, headers, body) = call(&w.app, get("/api/v1/ops/summary", auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert!(headers.get(header::WWW_AUTHENTICATE).is_some());
            assert!(body.contains("UNAUTHENTICATED") && !body.contains("cases_opened"), "{body}");
            let (status, _, body) = call(&w.app, get("/ops", auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(body.contains("name=\"token\"") && !body.contains("kpi-cases"), "{body}");
        }
        let req = Request::post("/api/v1/ops/redrive/1").body(Body::empty()).unwrap();
        assert_eq!(call(&w.app, req).await.0, StatusCode::UNAUTHORIZED);
        let req = Request::get("/ops").header(header::COOKIE, "mpp_ops=nope").body(Body::empty()).unwrap();
        assert_eq!(call(&w.app, req).await.0, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_figures_match_the_store_and_the_page_matches_the_json() {
        let w = world(false);
        let (status, _, body) = call(&w.app, get("/api/v1/ops/summary", Some("Bearer test"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        // Counted independently from the store.
        let cases: Vec<_> = w.store.cases().map(Result::unwrap).filter(|c| !c.is_shell()).collect();
        let apps: usize = cases.iter().map(|c| c.applications.len()).sum();
        let rejected =
            w.store.entries(1).map(Result::unwrap).filter(|e| e.verdict == Verdict::Rejected).count();
        assert!(!cases.is_empty() && rejected > 0);
        assert_eq!(v["total"]["cases_opened"], cases.len());
        assert_eq!(v["total"]["applications"], apps);
        assert_eq!(v["rejected_total"], rejected);
        let per_mpp: u64 =
            v["by_mpp"].as_array().unwrap().iter().map(|g| g["cases_opened"].as_u64().unwrap()).sum();
        assert_eq!(per_mpp, cases.len() as u64);
        let per_state: u64 =
            v["total"]["by_state"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
        assert_eq!(per_state, apps as u64);
        let by_reason: u64 =
            v["rejections_by_reason"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
        assert_eq!(by_reason, rejected as u64);
        assert_eq!(v["redrive_enabled"], false);

        // The login form sets the cookie; the page shows the same figures.
        let req = Request::post("/ops/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=test"))
            .unwrap();
        let (status, headers, _) = call(&w.app, req).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
        assert!(
            cookie.starts_with("mpp_ops=test;")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
        );
        let req = Request::get("/ops").header(header::COOKIE, "mpp_ops=test").body(Body::empty()).unwrap();
        let (status, _, page) = call(&w.app, req).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(&format!("id=\"kpi-cases\">{}<", cases.len())), "{page}");
        assert!(page.contains(&format!("id=\"kpi-rejected\">{rejected}<")));
        let req = Request::post("/ops/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=wrong"))
            .unwrap();
        let (status, headers, _) = call(&w.app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get(header::SET_COOKIE).is_none());
    }

    #[tokio::test]
    async fn redrive_refuses_what_it_cannot_change() {
        let w = world(true);
        let post = |seq: &str| {
            Request::post(format!("/api/v1/ops/redrive/{seq}"))
                .header(header::AUTHORIZATION, "Bearer test")
                .body(Body::empty())
                .unwrap()
        };
        let accepted =
            w.store.entries(1).map(Result::unwrap).find(|e| e.verdict == Verdict::Accepted).unwrap();
        let (status, _, body) = call(&w.app, post(&accepted.seq.to_string())).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("NOT_REDRIVABLE"));
        let (status, _, _) = call(&w.app, post("999999")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&w.app, post("x")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // A redrivable rejection gets past the checks and fails on NATS (nothing listens).
        let store = w.store.clone();
        let target = w
            .store
            .entries(1)
            .map(Result::unwrap)
            .find(|e| redrivable(&store, e).unwrap())
            .expect("the fixture holds a redrivable rejection");
        let (status, _, body) = call(&w.app, post(&target.seq.to_string())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("NATS"), "{body}");
        // Without a NATS target, redrive is off.
        let off = world(false);
        let (status, _, body) = call(&off.app, post(&target.seq.to_string())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("REDRIVE_DISABLED"));
    }

    /// The fixture's last time of record plus `days`, Unix ms.
    fn after_last_entry(store: &SledStore, days: i64) -> i64 {
        let last = store.entry(store.head().unwrap().last_seq).unwrap().unwrap();
        last.stream_time_ns.div_euclid(1_000_000) + days * 86_400_000
    }

    #[test]
    fn weeks_and_days_come_from_now_ms() {
        // 2025-01-08 is a Wednesday in ISO week 2; 2021-01-03 a Sunday in 2020-W53.
        let wed = Date::from_ymd(2025, 1, 8).unwrap();
        assert_eq!(week_start(wed), Date::from_ymd(2025, 1, 6).unwrap());
        assert_eq!(iso_week(week_start(wed)), "2025-W02");
        assert_eq!(iso_week(week_start(Date::from_ymd(2021, 1, 3).unwrap())), "2020-W53");
        assert_eq!(iso_week(week_start(Date::from_ymd(2024, 12, 30).unwrap())), "2025-W01");
        // Sunday 2025-01-12 16:00 UTC is Monday 01:00 WIT: the week of 01-13 is the current one.
        let now = Date::from_ymd(2025, 1, 12).unwrap().start_unix_ms(0) + 16 * 3_600_000;
        let weeks = chart_weeks(now);
        assert_eq!(weeks.len(), OPS_CHART_WEEKS);
        assert_eq!(*weeks.last().unwrap(), Date::from_ymd(2025, 1, 13).unwrap());
        assert!(weeks.windows(2).all(|w| w[1].days() - w[0].days() == 7));
        let days = chart_days(now);
        assert_eq!(days.len(), OPS_CHART_DAYS);
        assert_eq!(*days.last().unwrap(), Date::from_ymd(2025, 1, 12).unwrap());
        assert_eq!(days[0], Date::from_ymd(2024, 12, 30).unwrap());
    }

    #[tokio::test]
    async fn weekly_sla_and_daily_rejections_match_the_store() {
        let w = world_at(false, |store| after_last_entry(store, 1));
        let now_ms = after_last_entry(&w.store, 1);
        let (status, _, body) = call(&w.app, get("/api/v1/ops/summary", Some("Bearer test"))).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        // Counted independently: every application finished, or overdue with
        // its due date, in the last OPS_CHART_WEEKS weeks of WIT dates.
        let this_monday = week_start(Date::from_unix_ms(now_ms, 9 * 60));
        let first = this_monday.add_days(-7 * (OPS_CHART_WEEKS as i32 - 1));
        let calendars = CalendarSet::new();
        let (mut on_time, mut late, mut overdue) = (0u64, 0u64, 0u64);
        for case in w.store.cases().map(Result::unwrap).filter(|c| !c.is_shell()) {
            let cal = calendars.calendar(case.tracking_number.region());
            for app in &case.applications {
                let v = sla(app, &cal, now_ms);
                let when = v.finished_on.or(v.due_date.filter(|_| v.overdue));
                if when.is_none_or(|d| d < first) {
                    continue;
                }
                match v.finished_on_time {
                    Some(true) => on_time += 1,
                    Some(false) => late += 1,
                    None => overdue += 1,
                }
            }
        }
        let rows = v["sla_weekly"].as_array().unwrap();
        let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
        assert!(on_time + late + overdue > 0, "the fixture decides something in the window");
        assert_eq!((sum("on_time"), sum("late"), sum("overdue")), (on_time, late, overdue));
        let weeks: Vec<&str> =
            v["sla_weeks"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(weeks.len(), OPS_CHART_WEEKS);
        assert!(rows.iter().all(|r| weeks.contains(&r["week"].as_str().unwrap())));
        for r in rows {
            let n =
                r["on_time"].as_u64().unwrap() + r["late"].as_u64().unwrap() + r["overdue"].as_u64().unwrap();
            let want = (1000.0 * r["on_time"].as_f64().unwrap() / n as f64).round() / 10.0;
            assert_eq!(r["sla_compliance_pct"].as_f64().unwrap(), want, "{r}");
        }
        // Rejections per UTC day in the last OPS_CHART_DAYS days.
        let today = now_ms.div_euclid(86_400_000);
        let rejected = w
            .store
            .entries(1)
            .map(Result::unwrap)
            .filter(|e| e.verdict == Verdict::Rejected)
            .filter(|e| today - e.stream_time_ns.div_euclid(86_400_000_000_000) < OPS_CHART_DAYS as i64)
            .count() as u64;
        let daily: u64 =
            v["rejections_daily"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
        assert!(rejected > 0);
        assert_eq!(daily, rejected);
        assert_eq!(v["rejection_days"].as_array().unwrap().len(), OPS_CHART_DAYS);

        // The page draws the three charts.
        let (status, _, page) = call(&w.app, get("/ops", Some("Bearer test"))).await;
        assert_eq!(status, StatusCode::OK);
        for label in [charts::SLA_CHART_LABEL, charts::BACKLOG_CHART_LABEL, charts::REJECTIONS_CHART_LABEL] {
            assert!(page.contains(&format!("aria-label=\"{}\"", svg::escape(label))), "{label}");
        }
        assert!(!page.contains("&lt;svg"), "the charts are not escaped twice");
        assert!(!page.contains("no data yet"), "every chart has data");
    }

    #[tokio::test]
    async fn an_empty_window_draws_no_data_charts() {
        let w = world(false);
        let (_, _, page) = call(&w.app, get("/ops", Some("Bearer test"))).await;
        // NOW_MS is years after the fixture: nothing decided or rejected in the window.
        assert_eq!(page.matches("no data yet").count(), 2, "the backlog is a snapshot and has data");
    }

    #[tokio::test]
    async fn every_table_exports_as_csv_behind_the_token() {
        let w = world_at(false, |store| after_last_entry(store, 1));
        let (_, _, json) = call(&w.app, get("/api/v1/ops/summary", Some("Bearer test"))).await;
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        for table in csv::TABLES {
            let path = format!("/ops/export/{table}.csv");
            let (status, _, body) = call(&w.app, get(&path, None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{table}");
            assert!(body.contains("UNAUTHENTICATED"));
            let (status, headers, body) = call(&w.app, get(&path, Some("Bearer test"))).await;
            assert_eq!(status, StatusCode::OK, "{table}: {body}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
            let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
            assert_eq!(disposition, format!("attachment; filename=\"mpp-ops-{table}.csv\""));
            // A header row, then one row per entry of the JSON list of the same name.
            let rows = json[table].as_array().unwrap().len();
            assert!(body.ends_with("\r\n") && body.lines().count() == rows + 1, "{table}: {body}");
        }
        let req = Request::get("/ops/export/by_agency.csv").header(header::COOKIE, "mpp_ops=test");
        let (status, _, body) = call(&w.app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let first = &json["by_agency"][0];
        let mut lines = body.lines();
        assert!(lines.next().unwrap().starts_with("agency,cases_opened,applications,submitted,"));
        let row = lines.next().unwrap();
        assert!(
            row.starts_with(&format!(
                "{},{},{},",
                first["key"].as_str().unwrap(),
                first["cases_opened"],
                first["applications"]
            )),
            "{row} vs {first}"
        );
        for bad in ["/ops/export/nope.csv", "/ops/export/by_mpp", "/ops/export/by_mpp.csv.csv"] {
            let (status, _, body) = call(&w.app, get(bad, Some("Bearer test"))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
            let e: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e["error"]["code"], "NOT_FOUND", "{body}");
        }
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        let mut c = HeaderMap::new();
        c.insert(header::COOKIE, HeaderValue::from_static("x=1; mpp_ops=tok; y=2"));
        assert_eq!(cookie_value(&c, OPS_COOKIE), Some("tok"));
        assert!(cookie_safe("abc-DEF_123"));
        assert!(!cookie_safe("a;b"));
        assert!(!cookie_safe(""));
    }
}
