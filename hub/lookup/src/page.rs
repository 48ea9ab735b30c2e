//! The citizen's tracking page: server-rendered HTML (minijinja templates
//! in `templates/`, autoescaped), usable without JavaScript and on a small
//! phone, in Bahasa Indonesia by default with an English switch.
//!
//! | method, path | what |
//! |---|---|
//! | `GET /lacak` | the lookup form (tracking number + PIN) |
//! | `POST /lacak` | form fields `nomor`, `pin`, `lang`: the case page, or the form again with a message |
//! | `GET /lacak/{tn}` | the case page with a session cookie, else the form with `tn` filled in (the QR target) |
//! | `GET /lacak/{tn}/tanda-terima` | the receipt: tracking number and a QR code of `/lacak/{tn}`; never the PIN. With the case's session, also the proof that the case's opening entry is in the witnessed log, the button that checks it in the browser, and the command that checks it offline |
//! | `GET /lacak/{tn}/bukti` | that proof as JSON ([`crate::receipt`]), for the session's case only |
//! | `GET /lacak/periksa.js` | the script that checks the proof with WebCrypto |
//! | `GET /lacak/{tn}/events` | server-sent events `case` (the re-rendered case section) for the session's case |
//! | `GET /lacak/live.js` | the small script that applies those events |
//! | `GET /lacak/pow.js` | the form's proof-of-work solver, used while the hub asks for proofs ([`crate::pow`]) |
//!
//! Every page takes `?lang=en` (or the form's `lang` field). The PIN travels
//! only in the POST body, never in a URL. A successful POST sets the session
//! cookie ([`crate::session`]), so the language switch and live updates work
//! without typing the PIN again. Bad input of any kind gets the form back
//! with a sentence saying what to fix, never an error trace.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use minijinja::value::Serde;
use mpp_core::case::Pending;
use mpp_core::{EventKind, ReasonCode, RegionCode, TrackingNumber};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, warn};

use crate::access::{AccessChannel, Accessor};
use crate::cosigned::Transparency;
use crate::error::ApiError;
use crate::i18n::{self, Lang, Text};
use crate::lookup::{http_status, parse_tracking_number, LookupError, LookupRequest, PowChallenge};
use crate::profile::MppProfiles;
use crate::receipt::{receipt_proof, ReceiptError, ReceiptProof};
use crate::session::{SESSION_COOKIE, SESSION_TTL_MS};
use crate::state::{AppState, ClientAddr, SharedState};
use crate::watch::{deliver, WatchRefused, WATCH_BUFFER_VIEWS_MAX};

pub use crate::web::{templates, Web, WebError, WebSettings, LAYOUT_HTML, REQUEST_BODY_BYTES_MAX};
use crate::web::{COOKIE_HEADER_BYTES_MAX, CSP, LIVE_JS, PERIKSA_JS, POW_JS, PUBLIC_URL_BYTES_MAX};

impl Web {
    fn render<S: Serialize>(&self, name: &str, ctx: &S) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(minijinja::Value::from(Serde(ctx)))
    }

    /// Renders a page, or a plain apology if a template fails (a defect,
    /// logged; never shown).
    fn page<S: Serialize>(&self, status: StatusCode, name: &str, ctx: &S) -> Response {
        match self.render(name, ctx) {
            Ok(body) => html(status, body),
            Err(e) => {
                error!(error = %e, template = name, "Rendering a page failed");
                html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "<!doctype html><html lang=\"id\"><title>MPP</title><p>Layanan sedang tidak dapat \
                     menjawab. / The service cannot answer right now.</p></html>"
                        .to_owned(),
                )
            }
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    security_headers(h);
    resp
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The `lang` query parameter; a malformed query string is ignored.
#[derive(Debug, Default, Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
    /// The timeline page of `/lacak/{tn}`: items older than this log
    /// sequence.
    timeline_before_seq: Option<u64>,
}

fn lang_of(q: &Result<Query<LangQuery>, QueryRejection>) -> Lang {
    match q {
        Ok(Query(q)) => Lang::parse(q.lang.as_deref()),
        Err(_) => Lang::Id,
    }
}

/// The lookup form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct LookupForm {
    nomor: Option<String>,
    pin: Option<String>,
    lang: Option<String>,
    /// A proof of work or delay token ([`crate::pow`]).
    bukti: Option<String>,
}

/// What every page's layout needs.
#[derive(Debug, Serialize)]
struct Layout {
    lang: &'static str,
    t: &'static Text,
    switch_href: String,
    other_lang: &'static str,
    other_name: &'static str,
    form_href: String,
    /// The MPP's profile, for a page about a case of a region that has
    /// one; `None` gives the neutral header and no footer.
    mpp: Option<MppVm>,
}

/// An MPP's profile in the page's language.
#[derive(Debug, Serialize)]
struct MppVm {
    name: String,
    logo: String,
    address: String,
    hours: String,
    phone: String,
    email: String,
    complaint_url: String,
}

impl Layout {
    /// The layout with the profile of the MPP of `region`, if it has one.
    fn for_region(mut self, profiles: &MppProfiles, region: RegionCode, lang: Lang) -> Layout {
        self.mpp = profiles.get(region).map(|p| MppVm {
            name: p.name.clone(),
            logo: p.logo_data_url.clone(),
            address: p.address.clone(),
            hours: match lang {
                Lang::Id => p.opening_hours_id.clone(),
                Lang::En => p.opening_hours_en.clone(),
            },
            phone: p.phone.clone(),
            email: p.email.clone(),
            complaint_url: p.complaint_url.clone(),
        });
        self
    }
}

fn layout(lang: Lang, switch_path: &str) -> Layout {
    let other = lang.other();
    Layout {
        mpp: None,
        lang: lang.code(),
        t: lang.text(),
        switch_href: format!("{switch_path}?lang={}", other.code()),
        other_lang: other.code(),
        other_name: other.text().language_name,
        form_href: format!("/lacak?lang={}", lang.code()),
    }
}

#[derive(Debug, Serialize)]
struct FormPage {
    #[serde(flatten)]
    layout: Layout,
    tracking_number: String,
    message: Option<String>,
    prompt: Option<&'static str>,
    field: &'static str,
    focus_pin: bool,
    /// The proof of work asked, while the global budget is spent.
    pow: Option<PowVm>,
}

/// The form's proof of work: a challenge the script solves, and the delay
/// token a browser without JavaScript sends after `wait_seconds`.
#[derive(Debug, Serialize)]
struct PowVm {
    challenge: String,
    bits: u8,
    delay_token: Option<String>,
    wait_seconds: i64,
}

fn pow_vm(pow: &PowChallenge, now_ms: i64) -> PowVm {
    PowVm {
        challenge: pow.challenge.clone(),
        bits: pow.difficulty_bits,
        delay_token: pow.delay_token.clone(),
        wait_seconds: (pow.not_before_ms.saturating_sub(now_ms) + 999).div_euclid(1000).max(0),
    }
}

/// The proof of work for a fresh form, when lookups need one now.
fn fresh_pow(s: &AppState, client: IpAddr) -> Option<PowVm> {
    if !s.lookups.proof_of_work_required() {
        return None;
    }
    let now = s.lookups.now_ms();
    s.lookups.pow_required(client, now, "", true).pow.map(|p| pow_vm(&p, now))
}

#[derive(Debug, Serialize)]
struct MessagePage {
    #[serde(flatten)]
    layout: Layout,
    message: String,
}

#[derive(Debug, Serialize)]
struct ReceiptPage {
    #[serde(flatten)]
    layout: Layout,
    tn: String,
    qr_svg: String,
    case_url: String,
    case_href: String,
    /// The proof and how to check it (with the case's session).
    periksa: Option<PeriksaVm>,
    /// Why there is no proof to check (with the case's session).
    periksa_note: Option<&'static str>,
}

/// The receipt's proof as the page shows it, and the keys the script
/// checks it with (rendered from the hub's configuration).
#[derive(Debug, Serialize)]
struct PeriksaVm {
    proof_href: String,
    download_name: String,
    origin: String,
    hub_key: String,
    witness_keys: Vec<String>,
    quorum: usize,
    seq: u64,
    tree_size: u64,
    checkpoint: String,
    path: String,
    command: String,
}

fn periksa_vm(tn: &str, t: &Transparency, proof: &ReceiptProof) -> PeriksaVm {
    let hub_key = hex::encode(t.hub_key);
    let witness_keys: Vec<String> = t.witness_keys().iter().map(|k| k.to_vkey()).collect();
    let download_name = format!("bukti-{tn}.json");
    let mut command =
        format!("python3 verify_receipt.py {download_name} --origin '{}' --hub-key {hub_key}", t.origin);
    for k in &witness_keys {
        command.push_str(&format!(" \\\n  --witness-key '{k}'"));
    }
    command.push_str(&format!(" --quorum {}", t.receipt_quorum()));
    PeriksaVm {
        proof_href: format!("/lacak/{tn}/bukti"),
        download_name,
        origin: t.origin.clone(),
        hub_key,
        witness_keys,
        quorum: t.receipt_quorum(),
        seq: proof.seq,
        tree_size: proof.tree_size,
        checkpoint: proof.checkpoint.clone(),
        path: proof.inclusion_proof.join("\n"),
        command,
    }
}

#[derive(Debug, Serialize)]
struct StatusVm {
    code: &'static str,
    label: &'static str,
    explain: &'static str,
}

#[derive(Debug, Serialize)]
struct ActionVm {
    kind: &'static str,
    title: &'static str,
    service: String,
    documents: Vec<String>,
    place: String,
    amount: Option<String>,
    billing_code: String,
    when: Option<String>,
    act_by: Option<String>,
    /// A date set for this action (pay by, collect by) and its caption.
    deadline: Option<(&'static str, String)>,
}

#[derive(Debug, Serialize)]
struct TimelineVm {
    label: &'static str,
    when: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct ApplicationVm {
    agency_id: String,
    agency: String,
    service: String,
    state_code: &'static str,
    state: &'static str,
    overdue: bool,
    paused: bool,
    filed_on: String,
    standard: Option<String>,
    due: Option<String>,
    days: Option<String>,
    finished: Option<String>,
    /// Why it was rejected or withdrawn, in words.
    outcome: Option<OutcomeVm>,
    fiktif: Option<&'static str>,
    calendar_note: bool,
    timeline: Vec<TimelineVm>,
}

/// A refusal's reason: the page's words for the agency's reason code when
/// it knows the code, and the agency's own text.
#[derive(Debug, Serialize)]
struct OutcomeVm {
    reason: Option<&'static str>,
    note: String,
}

/// A rejection's reason code the page knows and the agency's text after it
/// (the timeline detail `reason_code: reason`).
fn known_rejection(detail: &str, lang: Lang) -> Option<(&'static str, &str)> {
    let (code, rest) = detail.split_once(": ")?;
    i18n::rejection_reason(code, lang).map(|words| (words, rest))
}

/// A timeline item's detail as the page shows it: a rejection's known
/// reason code in words, anything else as recorded.
fn timeline_detail(item: &mpp_core::TimelineItem, lang: Lang) -> String {
    match (item.kind, known_rejection(&item.detail, lang)) {
        (EventKind::Rejected, Some((words, rest))) => format!("{words} {rest}"),
        _ => item.detail.to_string(),
    }
}

/// The outcome of a rejected or withdrawn application, from its last
/// timeline item (`reason_code: reason`, or the reason alone; the newest
/// page of a timeline always holds it). `None` for any other state.
fn outcome_vm(a: &mpp_core::Application, lang: Lang) -> Option<OutcomeVm> {
    let t = lang.text();
    let kind = match a.state {
        mpp_core::AppState::Rejected => EventKind::Rejected,
        mpp_core::AppState::Withdrawn => EventKind::Withdrawn,
        _ => return None,
    };
    // An older page of the timeline may not hold it: then nothing is said.
    let detail = &*a.timeline.iter().rev().find(|i| i.kind == kind)?.detail;
    let known = match kind {
        EventKind::Rejected => known_rejection(detail, lang),
        _ => None,
    };
    // An unknown code stays with the agency's words: a reason text may hold
    // ": " itself, so only a code the page knows is taken off.
    let (reason, note) = match known {
        Some((words, rest)) => (Some(words), rest.to_owned()),
        None if detail.is_empty() => (Some(t.no_reason), String::new()),
        None => (None, detail.to_owned()),
    };
    Some(OutcomeVm { reason, note })
}

#[derive(Debug, Serialize)]
struct AccessVm {
    who: String,
    when: String,
}

#[derive(Debug, Serialize)]
struct CasePage {
    #[serde(flatten)]
    layout: Layout,
    tn: String,
    status: StatusVm,
    updated: Option<String>,
    actions: Vec<ActionVm>,
    applications: Vec<ApplicationVm>,
    access: Vec<AccessVm>,
    /// Wrong PINs since the last visit (after a lookup with the PIN).
    failed: Option<FailedVm>,
    receipt_href: String,
    events_href: String,
    /// "Newest history shown: N of M" when the timelines hold one page.
    timeline_note: Option<String>,
    /// The next, older page of the timelines.
    older_href: Option<String>,
}

#[derive(Debug, Serialize)]
struct FailedVm {
    count: u32,
    last: Option<String>,
}

/// The overall status the page shows: the case's, except that a finished
/// case with a rejected or withdrawn application is "not granted" in its
/// own colour, never a green "Selesai".
fn status_vm(found: &crate::lookup::Found, lang: Lang) -> StatusVm {
    let refused = found.status == mpp_core::CaseStatus::Done
        && found
            .case
            .applications
            .iter()
            .any(|a| matches!(a.state, mpp_core::AppState::Rejected | mpp_core::AppState::Withdrawn));
    if refused {
        let (label, explain) = i18n::refused_status(lang);
        return StatusVm { code: i18n::STATUS_REFUSED_CODE, label, explain };
    }
    StatusVm {
        code: found.status.as_str(),
        label: i18n::status_label(found.status, lang),
        explain: i18n::status_explain(found.status, lang),
    }
}

fn case_page(
    found: &crate::lookup::Found,
    calendars: &mpp_core::CalendarSet,
    profiles: &MppProfiles,
    lang: Lang,
) -> CasePage {
    let c = &found.case;
    let t = lang.text();
    let tn = c.tracking_number.to_string();
    let cal = calendars.calendar(c.tracking_number.region());
    let offset = cal.zone_offset_minutes();
    let zone = cal.zone().as_str();
    let moment = |ms: i64| i18n::date_time(ms, offset, zone, lang);
    let service_of = |i: usize| -> String {
        let a = &c.applications[i];
        let name = found.service_names.get(i).map_or("", |n| match lang {
            Lang::Id => n.id.as_str(),
            Lang::En => n.en.as_str(),
        });
        let name = if name.is_empty() { a.service.as_str() } else { name };
        format!("{name} ({})", i18n::agency_name(a.agency.as_str()))
    };
    let applications = c
        .applications
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let sla = found.slas.get(i);
            let open = sla.is_some_and(|s| s.finished_on.is_none());
            ApplicationVm {
                agency_id: a.agency.to_string(),
                agency: i18n::agency_name(a.agency.as_str()),
                service: service_of(i),
                state_code: a.state.as_str(),
                state: i18n::state_label(a.state, lang),
                overdue: sla.is_some_and(|s| s.overdue),
                paused: sla.is_some_and(|s| s.paused),
                filed_on: moment(a.filed_at_ms),
                standard: sla.map(|s| t.working_days.count(u64::from(s.standard_working_days))),
                due: sla.filter(|_| open).and_then(|s| s.due_date).map(|d| i18n::date(d, lang)),
                days: sla.filter(|_| open).map(|s| {
                    let days = u64::from(s.working_days_left.unsigned_abs());
                    if s.working_days_left < 0 {
                        t.working_days_late.count(days)
                    } else {
                        t.working_days_left.count(days)
                    }
                }),
                finished: sla.and_then(|s| {
                    let on = i18n::date(s.finished_on?, lang);
                    Some(match a.state {
                        // A refusal is never "finished on time".
                        mpp_core::AppState::Rejected => format!("{} {on}", t.rejected_on),
                        mpp_core::AppState::Withdrawn => format!("{} {on}", t.withdrawn_on),
                        _ if s.finished_on_time == Some(false) => format!("{}: {on}", t.finished_late),
                        _ => format!("{}: {on}", t.finished_on_time),
                    })
                }),
                outcome: outcome_vm(a, lang),
                fiktif: sla.and_then(|s| {
                    if s.fiktif_positif_reached {
                        Some(t.fiktif_positif_reached)
                    } else {
                        s.fiktif_positif_deadline.map(|_| t.fiktif_positif_note)
                    }
                }),
                calendar_note: sla.is_some_and(|s| !s.calendar_covers_period),
                timeline: a
                    .timeline
                    .iter()
                    .map(|item| TimelineVm {
                        label: i18n::event_label(item.kind, lang),
                        when: moment(item.recorded_at_ms),
                        detail: timeline_detail(item, lang),
                    })
                    .collect(),
            }
        })
        .collect();
    let actions = c
        .next_actions()
        .into_iter()
        .map(|n| {
            let i = c.applications.iter().position(|a| a.id == n.application_id).unwrap_or(0);
            let kind = crate::json::pending_kind(&n.pending);
            let mut vm = ActionVm {
                kind,
                title: i18n::action_title(kind, lang),
                service: if c.applications.is_empty() { String::new() } else { service_of(i) },
                documents: Vec::new(),
                place: String::new(),
                amount: None,
                billing_code: String::new(),
                when: None,
                act_by: None,
                deadline: None,
            };
            let projected_due = found.slas.get(i).and_then(|s| s.due_date).map(|d| i18n::date(d, lang));
            match &n.pending {
                Pending::BringDocuments { documents, counter } => {
                    vm.documents = documents.clone();
                    vm.place = counter.clone();
                    vm.act_by = projected_due;
                }
                Pending::PayFee { .. } | Pending::PayFeeBy { .. } => {
                    if let Some(fee) = n.pending.fee() {
                        vm.amount = Some(i18n::rupiah(fee.amount_idr, lang));
                        vm.place = fee.payment_channel.to_owned();
                        vm.billing_code = fee.billing_code.to_owned();
                        vm.deadline = fee.due_at_ms.map(|ms| (t.pay_by_caption, moment(ms)));
                    }
                    vm.act_by = projected_due;
                }
                Pending::Attend { kind, at_ms, place } => {
                    vm.when = Some(format!("{} — {}", i18n::appointment_kind(kind, lang), moment(*at_ms)));
                    vm.place = place.clone();
                }
                // Not an action: `Case::next_actions` leaves it out.
                Pending::Collect => {}
                Pending::CollectAt { place, .. } => {
                    vm.place = place.clone();
                    vm.deadline = found
                        .slas
                        .get(i)
                        .and_then(|s| s.collect_by)
                        .map(|d| (t.collect_by_caption, i18n::date(d, lang)));
                }
            }
            vm
        })
        .collect();
    let access = found
        .access
        .iter()
        .map(|e| AccessVm {
            who: match &e.accessor {
                Accessor::Citizen => t.accessor_citizen.to_owned(),
                Accessor::Officer { agency } => {
                    format!("{} {}", t.accessor_officer, i18n::agency_name(agency.as_str()))
                }
                Accessor::Auditor => t.accessor_auditor.to_owned(),
                Accessor::DataReader { agency, client_id } => format!(
                    "{} {} ({} {client_id})",
                    t.data_reader,
                    i18n::agency_name(agency.as_str()),
                    t.data_reader_system
                ),
                Accessor::Agency { agency } => {
                    t.accessor_agency.replace("{agency}", &i18n::agency_name(agency.as_str()))
                }
            },
            when: moment(e.at_ms),
        })
        .collect();
    CasePage {
        layout: layout(lang, &format!("/lacak/{tn}")).for_region(profiles, c.tracking_number.region(), lang),
        status: status_vm(found, lang),
        updated: (c.updated_at_ms > 0).then(|| moment(c.updated_at_ms)),
        actions,
        applications,
        access,
        failed: found.failed_attempts.map(|f| FailedVm { count: f.count, last: f.last_at_ms.map(moment) }),
        receipt_href: format!("/lacak/{tn}/tanda-terima?lang={}", lang.code()),
        events_href: format!("/lacak/{tn}/events?lang={}", lang.code()),
        timeline_note: {
            let shown: usize = c.applications.iter().map(|a| a.timeline.len()).sum();
            (shown < found.timeline.items_total).then(|| {
                format!("{} {shown} {} {}", t.timeline_shown, t.timeline_of, found.timeline.items_total)
            })
        },
        older_href: found
            .timeline
            .next_before_seq
            .map(|seq| format!("/lacak/{tn}?lang={}&timeline_before_seq={seq}", lang.code())),
        tn,
    }
}

/// The sentence for a failed lookup, and the form field it concerns.
fn message_of(e: &LookupError, lang: Lang) -> (String, &'static str) {
    let t = lang.text();
    let secs = e.retry_after.map_or(60, |r| r.seconds);
    match e.code() {
        ReasonCode::CaseNotFound => (t.not_found.to_owned(), "pin"),
        ReasonCode::BadCheckDigit => (t.bad_check_digit.to_owned(), "nomor"),
        ReasonCode::MalformedTrackingNumber => (t.malformed_tracking_number.to_owned(), "nomor"),
        ReasonCode::PinRequired => (t.pin_required.to_owned(), "pin"),
        ReasonCode::MalformedPin => (t.malformed_pin.to_owned(), "pin"),
        ReasonCode::FieldTooLong => (t.too_long.to_owned(), "nomor"),
        ReasonCode::RateLimited => (format!("{} {}.", t.rate_limited, t.seconds.count(secs)), ""),
        ReasonCode::LookupLocked => (format!("{} {}.", t.locked, t.minutes.count(secs.div_ceil(60))), ""),
        ReasonCode::PinReissueRequired => (t.pin_reissue_required.to_owned(), ""),
        ReasonCode::ProofOfWorkRequired => (t.pow_required.to_owned(), ""),
        _ => (t.unavailable.to_owned(), ""),
    }
}

/// Keeps what a person typed for showing it back: at most 64 characters,
/// without control characters (the template escapes the rest).
fn echo(input: &str) -> String {
    input.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn form_page(
    web: &Web,
    status: StatusCode,
    lang: Lang,
    tracking_number: String,
    message: Option<(String, &'static str)>,
    prompt: bool,
) -> Response {
    form_page_with(web, status, lang, tracking_number, message, prompt, None)
}

fn form_page_with(
    web: &Web,
    status: StatusCode,
    lang: Lang,
    tracking_number: String,
    message: Option<(String, &'static str)>,
    prompt: bool,
    pow: Option<PowVm>,
) -> Response {
    let switch_path = "/lacak".to_owned();
    let field = message.as_ref().map_or("", |m| m.1);
    let ctx = FormPage {
        layout: layout(lang, &switch_path),
        focus_pin: prompt || field == "pin",
        tracking_number,
        message: message.map(|m| m.0),
        prompt: prompt.then_some(lang.text().pin_prompt),
        field,
        pow,
    };
    web.page(status, "form.html", &ctx)
}

/// `GET /lacak`.
pub async fn form(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    q: Result<Query<LangQuery>, QueryRejection>,
) -> Response {
    let pow = fresh_pow(&s, client);
    form_page_with(&s.web, StatusCode::OK, lang_of(&q), String::new(), None, false, pow)
}

fn session_cookie(web: &Web, tn: &TrackingNumber, value: &str) -> HeaderValue {
    let secure = web.settings.secure_cookies();
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/lacak/{tn}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    );
    // The value is digits, dots and hex; the path is digits and hyphens.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /lacak`.
pub async fn submit(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    q: Result<Query<LangQuery>, QueryRejection>,
    form: Result<Form<LookupForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        let lang = lang_of(&q);
        return form_page(
            &s.web,
            StatusCode::BAD_REQUEST,
            lang,
            String::new(),
            Some((lang.text().bad_form.to_owned(), "")),
            false,
        );
    };
    let lang = match f.lang.as_deref() {
        Some(l) => Lang::parse(Some(l)),
        None => lang_of(&q),
    };
    let typed = f.nomor.unwrap_or_default();
    let req = LookupRequest {
        tracking_number: &typed,
        pin: f.pin.as_deref(),
        proof: f.bukti.as_deref(),
        client,
        channel: AccessChannel::Web,
        timeline_before_seq: None,
    };
    match s.lookups.lookup(&req).await {
        Ok(found) => {
            let ctx = case_page(&found, s.lookups.calendars(), &s.web.settings.profiles, lang);
            let mut resp = s.web.page(StatusCode::OK, "case.html", &ctx);
            let value = s.web.sessions.issue(&found.case.tracking_number, found.now_ms);
            resp.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&s.web, &found.case.tracking_number, &value));
            resp
        }
        Err(e) => {
            let now = s.lookups.now_ms();
            let pow = e.pow.as_ref().map(|p| pow_vm(p, now)).or_else(|| fresh_pow(&s, client));
            let message = Some(message_of(&e, lang));
            form_page_with(&s.web, http_status(&e), lang, echo(&typed), message, false, pow)
        }
    }
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        if v.len() > COOKIE_HEADER_BYTES_MAX {
            return None;
        }
        v.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    })
}

fn has_session(web: &Web, headers: &HeaderMap, tn: &TrackingNumber, now_ms: i64) -> bool {
    cookie_value(headers, SESSION_COOKIE).is_some_and(|v| web.sessions.check(v, tn, now_ms))
}

/// A tracking number from the path (and the path's text), or the form
/// with a message saying what is wrong with it.
fn path_tracking_number(
    s: &AppState,
    path: Result<Path<String>, PathRejection>,
    lang: Lang,
) -> Result<(TrackingNumber, String), Box<Response>> {
    let text = match path {
        Ok(Path(p)) => p,
        Err(_) => String::new(),
    };
    parse_tracking_number(&text).map(|tn| (tn, text.clone())).map_err(|e| {
        let e = LookupError::from(e);
        Box::new(form_page(&s.web, http_status(&e), lang, echo(&text), Some(message_of(&e, lang)), false))
    })
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    security_headers(resp.headers_mut());
    resp
}

/// `GET /lacak/{tn}`.
pub async fn case(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<LangQuery>, QueryRejection>,
) -> Response {
    let lang = lang_of(&q);
    let (tn, text) = match path_tracking_number(&s, path, lang) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if text != tn.to_string() {
        // One canonical address per case (the session cookie's path).
        return redirect(&format!("/lacak/{tn}?lang={}", lang.code()));
    }
    if let Err(e) = s.lookups.admit(client) {
        return form_page(&s.web, http_status(&e), lang, tn.to_string(), Some(message_of(&e, lang)), false);
    }
    let now = s.lookups.now_ms();
    if has_session(&s.web, &headers, &tn, now) {
        let before = q.as_ref().ok().and_then(|Query(q)| q.timeline_before_seq).filter(|s| *s != 0);
        match s.lookups.read_page(&tn, before) {
            Ok(Some(found)) => {
                return s.web.page(
                    StatusCode::OK,
                    "case.html",
                    &case_page(&found, s.lookups.calendars(), &s.web.settings.profiles, lang),
                );
            }
            Ok(None) => {}
            Err(e) => {
                return form_page(
                    &s.web,
                    http_status(&e),
                    lang,
                    tn.to_string(),
                    Some(message_of(&e, lang)),
                    false,
                )
            }
        }
    }
    let pow = fresh_pow(&s, client);
    form_page_with(&s.web, StatusCode::OK, lang, tn.to_string(), None, true, pow)
}

fn base_url(web: &Web, headers: &HeaderMap) -> String {
    if let Some(u) = &web.settings.public_url {
        return u.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= PUBLIC_URL_BYTES_MAX
                && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// An SVG QR code of `text` (medium error correction), without the XML
/// declaration so it can sit inside HTML.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

/// Why the receipt's proof is not given.
enum NoProof {
    /// No session for this case: the caller has not shown the PIN.
    NoSession,
    /// The hub publishes no keys to check it with (a bare in-process router).
    NotConfigured,
    /// The case is unknown, or its opening is in no signed checkpoint yet.
    NotYet,
    /// Refused or failed; the answer to give.
    Refused(Box<Response>),
}

/// The proof of the case's opening entry, for the holder of the case's
/// session, after this client's rate limit.
fn proof_for(
    s: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
    tn: &TrackingNumber,
) -> Result<(Arc<Transparency>, ReceiptProof), NoProof> {
    if !has_session(&s.web, headers, tn, s.lookups.now_ms()) {
        return Err(NoProof::NoSession);
    }
    let Some(t) = s.lookups.transparency().cloned() else { return Err(NoProof::NotConfigured) };
    if let Err(e) = s.lookups.admit(client) {
        return Err(NoProof::Refused(Box::new(e.into_response())));
    }
    let found = match s.lookups.read(tn) {
        Ok(Some(found)) if found.case.opened_seq != 0 => found,
        Ok(_) => return Err(NoProof::NotYet),
        Err(e) => return Err(NoProof::Refused(Box::new(e.into_response()))),
    };
    match receipt_proof(s.lookups.store(), &t, &tn.to_string(), found.case.opened_seq) {
        Ok(proof) => Ok((t, proof)),
        Err(ReceiptError::NotYetSigned(_)) => Err(NoProof::NotYet),
        Err(e) => {
            error!(error = %e, "Building a receipt's proof failed");
            Err(NoProof::Refused(Box::new(ApiError::internal().into_response())))
        }
    }
}

/// `GET /lacak/{tn}/tanda-terima`: without the case's session it shows
/// only what the URL already holds (the tracking number), for any
/// well-formed number, so it reveals nothing about which cases exist; with
/// it, also the proof of the case's opening entry and how to check it.
pub async fn receipt(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<LangQuery>, QueryRejection>,
) -> Response {
    let lang = lang_of(&q);
    let (tn, _) = match path_tracking_number(&s, path, lang) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let case_url = format!("{}/lacak/{tn}", base_url(&s.web, &headers));
    let qr = qr_svg(&case_url).unwrap_or_default();
    let (periksa, periksa_note) = match proof_for(&s, client, &headers, &tn) {
        Ok((t, proof)) => (Some(periksa_vm(&tn.to_string(), &t, &proof)), None),
        Err(NoProof::NoSession | NoProof::NotConfigured) => (None, None),
        Err(NoProof::NotYet) => (None, Some(lang.text().verify_not_yet)),
        Err(NoProof::Refused(_)) => (None, Some(lang.text().unavailable)),
    };
    let ctx = ReceiptPage {
        layout: layout(lang, &format!("/lacak/{tn}/tanda-terima")).for_region(
            &s.web.settings.profiles,
            tn.region(),
            lang,
        ),
        tn: tn.to_string(),
        qr_svg: qr,
        case_href: format!("/lacak/{tn}?lang={}", lang.code()),
        case_url,
        periksa,
        periksa_note,
    };
    s.web.page(StatusCode::OK, "receipt.html", &ctx)
}

/// `GET /lacak/{tn}/bukti`: the proof of the case's opening entry as JSON
/// ([`crate::receipt`]), for the holder of the case's session.
pub async fn receipt_proof_json(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let tn = match path.ok().map(|Path(p)| parse_tracking_number(&p)) {
        Some(Ok(tn)) => tn,
        Some(Err(e)) => return LookupError::from(e).into_response(),
        None => {
            return ApiError::new(ReasonCode::MalformedTrackingNumber, "the path holds no tracking number")
                .into_response()
        }
    };
    let mut resp = match proof_for(&s, client, &headers, &tn) {
        Ok((_, proof)) => axum::Json(proof).into_response(),
        Err(NoProof::NoSession) => ApiError::new(
            ReasonCode::PinRequired,
            "no session for this case: look it up with its PIN on /lacak first",
        )
        .into_response(),
        Err(NoProof::NotConfigured) => {
            ApiError::new(ReasonCode::NotFound, "this hub publishes no keys to check a receipt with")
                .into_response()
        }
        Err(NoProof::NotYet) => ApiError::new(
            ReasonCode::NotFound,
            "the case's opening is in no signed checkpoint yet: retry in a minute",
        )
        .into_response(),
        Err(NoProof::Refused(r)) => *r,
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /lacak/{tn}/events`: server-sent events for the session's case.
pub async fn events(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<LangQuery>, QueryRejection>,
) -> Response {
    let lang = lang_of(&q);
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = (status, text).into_response();
        security_headers(r.headers_mut());
        r
    };
    let Ok(Path(text)) = path else { return plain(StatusCode::BAD_REQUEST, "bad tracking number\n") };
    let Ok(tn) = parse_tracking_number(&text) else {
        return plain(StatusCode::BAD_REQUEST, "bad tracking number\n");
    };
    if !has_session(&s.web, &headers, &tn, s.lookups.now_ms()) {
        return plain(StatusCode::FORBIDDEN, "no session for this case: look it up with its PIN first\n");
    }
    if let Err(e) = s.lookups.admit(client) {
        return e.into_response();
    }
    let mut sub = match s.web.changes.subscribe(tn, client) {
        Ok(sub) => sub,
        Err(WatchRefused::Full) => {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "too many live updates open; reload later\n")
        }
        Err(WatchRefused::ClientFull | WatchRefused::CaseFull) => {
            return plain(StatusCode::TOO_MANY_REQUESTS, "too many live updates open here; close one\n")
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(WATCH_BUFFER_VIEWS_MAX);
    let web = s.web.clone();
    let lookups = s.lookups.clone();
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        loop {
            // A store error is logged by `read`; the next change retries.
            if let Ok(Some(found)) = lookups.read(&tn) {
                let ctx = case_page(&found, lookups.calendars(), &web.settings.profiles, lang);
                match web.render("case_body.html", &ctx) {
                    Ok(fragment) if last.as_deref() != Some(fragment.as_str()) => {
                        if !deliver(&tx, Ok(Event::default().event("case").data(&fragment))).await {
                            return;
                        }
                        last = Some(fragment);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "Rendering a live update failed"),
                }
            }
            tokio::select! {
                r = sub.changed() => {
                    if r.is_err() {
                        deliver(&tx, Ok(Event::default().event("end").data("end"))).await;
                        return;
                    }
                }
                // The browser went away: free the watch at once.
                _ = tx.closed() => return,
            }
        }
    });
    let mut resp = Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /lacak/live.js`.
pub async fn live_js() -> Response {
    script(LIVE_JS)
}

/// `GET /lacak/periksa.js`: the receipt's check in the browser.
pub async fn periksa_js() -> Response {
    script(PERIKSA_JS)
}

/// `GET /lacak/pow.js`: the form's proof-of-work solver.
pub async fn pow_js() -> Response {
    script(POW_JS)
}

fn script(body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// Unknown paths under `/lacak`: a friendly page.
pub fn not_found_page(web: &Web, lang: Lang) -> Response {
    let ctx = MessagePage { layout: layout(lang, "/lacak"), message: lang.text().page_not_found.to_owned() };
    web.page(StatusCode::NOT_FOUND, "message.html", &ctx)
}

#[cfg(test)]
mod tests {
    use super::WebSettings;

    #[test]
    fn cookies_are_secure_whenever_the_browser_comes_over_https() {
        let s = |public_url: Option<&str>, serves_tls| WebSettings {
            public_url: public_url.map(str::to_owned),
            client_addr: crate::proxy::ClientAddrPolicy::Peer,
            serves_tls,
            profiles: Default::default(),
        };
        assert!(!s(None, false).secure_cookies());
        assert!(!s(Some("http://lacak.example"), false).secure_cookies());
        assert!(s(Some("https://lacak.example"), false).secure_cookies());
        assert!(s(None, true).secure_cookies(), "the hub's own TLS");
        assert!(s(Some("http://lacak.example"), true).secure_cookies());
    }
}
