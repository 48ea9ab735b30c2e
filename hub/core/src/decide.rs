//! Business rules: [`decide`] says whether a validated envelope may be
//! applied to the current state; [`apply`] applies it and cannot fail.
//! The projection is the fold of `apply` over the accepted entries of the log.

use std::collections::BTreeMap;

use crate::case::{
    Application, Case, Collection, DataRead, Pending, PersonalData, PinReissue, ServiceStandard,
    StandardTerms, TimelineItem, APPLICATION_FIXED_BYTES, PIN_REISSUE_FIXED_BYTES,
};
use crate::event::{Envelope, EventBody, EventKind, Target};
use crate::hold::{self, Holds, Resolution};
use crate::ids::{AgencyId, ServiceId, TrackingNumber};
use crate::limits;
use crate::reason::{ReasonCode, Rejection};
use crate::registry::{ParticipantKind, Registry};
use crate::state::{next_state, AppState};

/// Read access to the state a decision needs. Implementations must have
/// every case the envelope names loaded (the store preloads them).
pub trait State {
    /// The case, if opened.
    fn case(&self, id: &TrackingNumber) -> Option<&Case>;
    /// The terms of the service standard in force, if any was published.
    fn standard(&self, agency: &AgencyId, service: &ServiceId) -> Option<StandardTerms>;
    /// The participant registry (who each participant is, e.g. its kind),
    /// for states that keep it.
    fn registry(&self) -> Option<&Registry> {
        None
    }
}

/// Write access for [`apply`].
pub trait StateMut: State {
    /// The case, mutably.
    fn case_mut(&mut self, id: &TrackingNumber) -> Option<&mut Case>;
    /// Stores a newly opened case.
    fn insert_case(&mut self, case: Case);
    /// Stores a newly published standard (replacing the one in force).
    fn put_standard(&mut self, standard: ServiceStandard);
    /// The held applications, for states that keep the registry (see
    /// [`State::registry`]).
    fn holds_mut(&mut self) -> Option<&mut Holds> {
        None
    }
}

pub use crate::log::EntryMeta;

/// Decides whether `env` may be applied to `state` under the rules in force
/// now: [`decide_at`] for an entry recorded after every rule took effect.
/// The ledger judges log entries with [`decide_at`] and their time of
/// record.
pub fn decide(state: &impl State, env: &Envelope) -> Result<(), Rejection> {
    decide_at(state, env, i64::MAX)
}

/// Decides whether `env`, recorded at `recorded_at_ms` (the time of record,
/// Unix ms), may be applied to `state`. Rules added after logs already
/// existed apply only to entries recorded from the moment they took effect
/// (e.g. [`limits::CASE_SIZE_RULES_FROM_MS`]), so an old log is judged again
/// exactly as it was judged when written.
pub fn decide_at(state: &impl State, env: &Envelope, recorded_at_ms: i64) -> Result<(), Rejection> {
    let size_rules = recorded_at_ms >= limits::CASE_SIZE_RULES_FROM_MS;
    let kind = env.body.kind();
    // `validate` always pairs a body with the target its kind needs, but an
    // `Envelope` can be built by hand: refuse a mismatch rather than accept
    // an event that `apply` would then silently ignore.
    let target_fits = match env.target {
        Target::Catalogue => kind == EventKind::ServiceStandardPublished,
        Target::Case(_) => kind.is_case_event(),
        Target::Application(..) => kind.is_application_event(),
    };
    if !target_fits {
        return Err(Rejection::new(
            ReasonCode::InvalidFieldValue,
            format!("{} does not apply to this target", kind.as_str()),
        ));
    }
    if let Target::Catalogue = env.target {
        if let (Some(cur), EventBody::ServiceStandardPublished { version, .. }) =
            (state.standard(&env.agency, &env.service), &env.body)
        {
            if *version <= cur.version {
                return Err(Rejection::new(
                    ReasonCode::StaleStandardVersion,
                    format!("version {version} is not above the version {} in force", cur.version),
                ));
            }
        }
        return Ok(());
    }
    if !kind.is_case_event() && state.standard(&env.agency, &env.service).is_none() {
        return Err(Rejection::new(
            ReasonCode::UnknownService,
            format!("agency {} has published no standard for service {}", env.agency, env.service),
        ));
    }
    if kind == EventKind::ApplicationFiled && registry_in_force(state) {
        if let Target::Application(id, _) = &env.target {
            if state.case(id).is_none_or(Case::is_shell) {
                if let Some(registry) = state.registry() {
                    registry.holds.decide_hold(&env.agency, recorded_at_ms)?;
                }
            }
        }
    }
    match &env.target {
        Target::Catalogue => Ok(()),
        // A case known only from an application filed before its opening
        // (see `Case::is_shell`) may still be opened, once.
        Target::Case(id) if kind == EventKind::CaseOpened => {
            decide_opener(state.registry(), env)?;
            match state.case(id) {
                Some(case) if !case.is_shell() => {
                    Err(Rejection::new(ReasonCode::CaseAlreadyOpen, format!("case {id} is already open")))
                }
                Some(_) | None => Ok(()),
            }
        }
        Target::Case(id) if kind == EventKind::PinReissued => decide_pin_reissue(state.case(id), id, env),
        Target::Case(id) if kind == EventKind::PersonalDataRead => {
            decide_personal_data_read(state.case(id), id, env)
        }
        Target::Case(id) => decide_personal_data(state.case(id), id, env),
        Target::Application(id, _) if kind == EventKind::ApplicationFiled && state.case(id).is_none() => {
            // Agencies publish independently: the front office's case_opened
            // and an agency's application_filed for that case can reach the
            // stream in either order (each agency's outbox keeps only its own
            // order). Filing into a case not yet opened is therefore accepted
            // and creates the case's shell; the opening fills it in later.
            Ok(())
        }
        Target::Application(id, app_id) => {
            let case = state.case(id).ok_or_else(|| {
                Rejection::new(ReasonCode::UnknownCase, format!("case {id} was never opened"))
            })?;
            let app = case.application(app_id);
            if kind == EventKind::ApplicationFiled {
                if app.is_some() {
                    return Err(Rejection::new(
                        ReasonCode::ApplicationAlreadyFiled,
                        format!("application {app_id} is already filed in case {id}"),
                    ));
                }
                if case.applications.len() >= limits::APPLICATIONS_PER_CASE_MAX {
                    return Err(Rejection::new(
                        ReasonCode::CaseLimitExceeded,
                        format!("a case holds at most {} applications", limits::APPLICATIONS_PER_CASE_MAX),
                    ));
                }
                if size_rules {
                    let own = case.applications.iter().filter(|a| a.agency == env.agency).count();
                    if own >= limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX {
                        return Err(Rejection::new(
                            ReasonCode::AgencyApplicationsExceeded,
                            format!(
                                "agency {} already filed {own} applications in case {id}; one agency may file \
                                 at most {}",
                                env.agency,
                                limits::APPLICATIONS_PER_AGENCY_PER_CASE_MAX
                            ),
                        ));
                    }
                    if let Some(to) = next_state(None, kind) {
                        let growth = APPLICATION_FIXED_BYTES
                            + Application::ids_bytes(
                                app_id.as_str(),
                                env.agency.as_str(),
                                env.service.as_str(),
                            )
                            + growth_bytes(None, to, &env.body, None);
                        check_case_size(case, env, growth, false)?;
                    }
                }
                return Ok(());
            }
            let app = app.ok_or_else(|| {
                Rejection::new(
                    ReasonCode::UnknownApplication,
                    format!("application {app_id} was never filed in case {id}"),
                )
            })?;
            if app.agency != env.agency || app.service != env.service {
                return Err(Rejection::new(
                    ReasonCode::ApplicationOwnerMismatch,
                    format!("application {app_id} belongs to {}/{}", app.agency, app.service),
                ));
            }
            let Some(to) = next_state(Some(app.state), kind) else {
                return Err(Rejection::new(
                    ReasonCode::IllegalTransition,
                    format!("{} is not allowed in state {}", kind.as_str(), app.state.as_str()),
                ));
            };
            // The last few slots are kept for events that finish the
            // application, so one at its limit can still be closed.
            let room = if to.is_finished() {
                limits::TIMELINE_ITEMS_PER_APPLICATION_MAX
            } else {
                limits::TIMELINE_ITEMS_PER_APPLICATION_MAX - limits::TIMELINE_ITEMS_RESERVED_FOR_FINISH
            };
            if app.timeline.len() >= room {
                return Err(Rejection::new(
                    ReasonCode::CaseLimitExceeded,
                    format!(
                        "an application holds at most {} events, the last {} of them only to issue, \
                         collect, reject or withdraw it",
                        limits::TIMELINE_ITEMS_PER_APPLICATION_MAX,
                        limits::TIMELINE_ITEMS_RESERVED_FOR_FINISH
                    ),
                ));
            }
            if size_rules {
                check_case_size(
                    case,
                    env,
                    growth_bytes(app.pending.as_ref(), to, &env.body, collection_of(state, env).as_deref()),
                    to.is_finished(),
                )?;
            }
            Ok(())
        }
    }
}

/// Decides who may open a case: while the registry is in force (see
/// [`Registry::in_force`]), only a participant registered as a
/// [`ParticipantKind::FrontOffice`]. Whatever event types the registrar
/// lists for an agency, its `case_opened` is refused: a case opened by an
/// agency would carry a PIN the agency chose, so the agency (not the
/// citizen) would watch the case. Before the registry, any agency opened
/// cases, and the log is judged as it was.
fn decide_opener(registry: Option<&Registry>, env: &Envelope) -> Result<(), Rejection> {
    let Some(registry) = registry.filter(|r| r.in_force()) else { return Ok(()) };
    match registry.kind_of(&env.agency) {
        Some(ParticipantKind::FrontOffice) => Ok(()),
        kind => Err(Rejection::new(
            ReasonCode::NotAFrontOffice,
            format!(
                "participant {} is registered as {}; only a front office opens cases",
                env.agency,
                kind.map_or("nothing", ParticipantKind::as_str)
            ),
        )),
    }
}

/// How many bytes (as [`Case::size_bytes`] counts them) an application
/// event grows its application by: its timeline item, and the change of
/// what is pending, from `pending` to what the event leaves in state `to`.
/// Negative growth (a shorter pending) counts as none.
fn growth_bytes(
    pending: Option<&Pending>,
    to: AppState,
    body: &EventBody,
    collection: Option<&Collection>,
) -> usize {
    let next = pending_after(to, body, collection);
    (TimelineItem::size_bytes_of(&timeline_detail(body)) + Pending::size_bytes(next.as_ref()))
        .saturating_sub(Pending::size_bytes(pending))
}

/// Refuses an application event that would grow `case` by `growth` bytes
/// past [`limits::CASE_BYTES_MAX`] (less the reserve for finishing events
/// unless `finishes`), or, unless `finishes`, grow the agency's
/// applications past [`limits::CASE_BYTES_PER_AGENCY_MAX`].
fn check_case_size(case: &Case, env: &Envelope, growth: usize, finishes: bool) -> Result<(), Rejection> {
    let room = if finishes {
        limits::CASE_BYTES_MAX
    } else {
        limits::CASE_BYTES_MAX - limits::CASE_BYTES_RESERVED_FOR_FINISH
    };
    let size = case.size_bytes();
    if size + growth > room {
        return Err(Rejection::new(
            ReasonCode::CaseTooLarge,
            format!(
                "case {} takes {size} bytes; this event adds {growth}, past the {room} allowed (a case \
                 holds at most {} bytes, the last {} of them only to finish applications)",
                case.tracking_number,
                limits::CASE_BYTES_MAX,
                limits::CASE_BYTES_RESERVED_FOR_FINISH
            ),
        ));
    }
    if !finishes {
        let own = case.agency_bytes(&env.agency);
        if own + growth > limits::CASE_BYTES_PER_AGENCY_MAX {
            return Err(Rejection::new(
                ReasonCode::AgencyCaseShareExceeded,
                format!(
                    "the applications of agency {} take {own} bytes of case {}; this event adds {growth}, \
                     past the {} one agency may take",
                    env.agency,
                    case.tracking_number,
                    limits::CASE_BYTES_PER_AGENCY_MAX
                ),
            ));
        }
    }
    Ok(())
}

/// The open case `id` (not a shell) whose opener is `env`'s agency.
fn opened_by_sender<'c>(
    case: Option<&'c Case>,
    id: &TrackingNumber,
    env: &Envelope,
) -> Result<&'c Case, Rejection> {
    let case = case
        .filter(|c| !c.is_shell())
        .ok_or_else(|| Rejection::new(ReasonCode::UnknownCase, format!("case {id} was never opened")))?;
    if case.opened_by != env.agency {
        return Err(Rejection::new(
            ReasonCode::NotCaseOpener,
            format!("case {id} was opened by {}, not {}", case.opened_by, env.agency),
        ));
    }
    Ok(case)
}

/// Decides a `pin_reissued` for case `id`: the case must be open, and only
/// the agency that opened it (whose counter handed out the first PIN) may
/// re-issue its PIN.
fn decide_pin_reissue(case: Option<&Case>, id: &TrackingNumber, env: &Envelope) -> Result<(), Rejection> {
    let case = opened_by_sender(case, id, env)?;
    // Each re-issue stays in the case (its access history): the case's
    // size bounds how many.
    check_case_size(case, env, PIN_REISSUE_FIXED_BYTES, true)
}

/// Decides a `personal_data_read` for case `id`: from the agency that opened
/// the case (the custodian of the data key), of data sealed and not erased.
/// No size check: the case keeps only the newest
/// [`limits::PERSONAL_DATA_READS_KEPT`] reads, so reads grow it by a bounded
/// amount however many come.
fn decide_personal_data_read(
    case: Option<&Case>,
    id: &TrackingNumber,
    env: &Envelope,
) -> Result<(), Rejection> {
    let case = opened_by_sender(case, id, env)?;
    match &case.personal_data {
        PersonalData::Sealed { .. } => Ok(()),
        PersonalData::Erased { .. } => Err(Rejection::new(
            ReasonCode::PersonalDataErased,
            format!("the personal data of case {id} was erased"),
        )),
        PersonalData::None => Err(Rejection::new(
            ReasonCode::UnknownDataKey,
            format!("no personal data is sealed in case {id}"),
        )),
    }
}

/// Decides a `personal_data_sealed` or `personal_data_erased` for case `id`:
/// the case must be open (not a shell), the event must come from the agency
/// that opened it (the custodian of the citizen's data key), a case is
/// sealed once, and only data sealed under the same key can be erased, once.
fn decide_personal_data(case: Option<&Case>, id: &TrackingNumber, env: &Envelope) -> Result<(), Rejection> {
    let case = opened_by_sender(case, id, env)?;
    match (&env.body, &case.personal_data) {
        (_, PersonalData::Erased { .. }) => Err(Rejection::new(
            ReasonCode::PersonalDataErased,
            format!("the personal data of case {id} was erased"),
        )),
        (EventBody::PersonalDataSealed { .. }, PersonalData::None) => Ok(()),
        (EventBody::PersonalDataSealed { .. }, PersonalData::Sealed { .. }) => Err(Rejection::new(
            ReasonCode::PersonalDataAlreadySealed,
            format!("the personal data of case {id} is already sealed"),
        )),
        (EventBody::PersonalDataErased { key_id }, PersonalData::Sealed { key_id: sealed, .. })
            if key_id == sealed =>
        {
            Ok(())
        }
        (EventBody::PersonalDataErased { .. }, _) => Err(Rejection::new(
            ReasonCode::UnknownDataKey,
            format!("the personal data of case {id} is not sealed under this key"),
        )),
        // `decide` calls this only for the two personal-data kinds.
        _ => Err(Rejection::new(
            ReasonCode::InvalidFieldValue,
            format!("{} does not apply to this target", env.body.kind().as_str()),
        )),
    }
}

/// A short, deterministic description of an event for the timeline.
fn timeline_detail(body: &EventBody) -> String {
    match body {
        EventBody::ApplicationFiled { documents } | EventBody::DocumentsReceived { documents } => {
            documents.join(", ")
        }
        EventBody::DocumentsRequested { documents, counter, .. } => {
            format!("{} @ {counter}", documents.join(", "))
        }
        EventBody::FeeAssessed { amount_idr, payment_channel, .. } => {
            format!("Rp {amount_idr} @ {payment_channel}")
        }
        EventBody::PaymentReceived { amount_idr, .. } => format!("Rp {amount_idr}"),
        EventBody::AppointmentScheduled { kind, place, .. } => format!("{kind} @ {place}"),
        EventBody::Issued { document_number } => document_number.clone(),
        EventBody::Rejected { reason_code, reason } if reason_code.is_empty() => reason.clone(),
        EventBody::Rejected { reason_code, reason } => format!("{reason_code}: {reason}"),
        EventBody::Withdrawn { reason } => reason.clone(),
        EventBody::CaseOpened { .. }
        | EventBody::ReviewStarted
        | EventBody::Collected
        | EventBody::ServiceStandardPublished { .. }
        | EventBody::PersonalDataSealed { .. }
        | EventBody::PersonalDataErased { .. }
        | EventBody::PinReissued { .. }
        | EventBody::PersonalDataRead { .. } => String::new(),
    }
}

/// What the citizen must do after `body` moved an application to `state`;
/// `collection` is what the service's standard in force says about
/// collecting its document. Without a due date or a collection the result
/// is what it was before either existed, so an old log projects the same.
fn pending_after(state: AppState, body: &EventBody, collection: Option<&Collection>) -> Option<Pending> {
    match (state, body) {
        (AppState::DocumentsRequired, EventBody::DocumentsRequested { documents, counter, .. }) => {
            Some(Pending::BringDocuments { documents: documents.clone(), counter: counter.clone() })
        }
        (
            AppState::AwaitingPayment,
            EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms: 0 },
        ) => Some(Pending::PayFee {
            amount_idr: *amount_idr,
            payment_channel: payment_channel.clone(),
            billing_code: billing_code.clone(),
        }),
        (
            AppState::AwaitingPayment,
            EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms },
        ) => Some(Pending::PayFeeBy {
            amount_idr: *amount_idr,
            payment_channel: payment_channel.clone(),
            billing_code: billing_code.clone(),
            due_at_ms: *due_at_ms,
        }),
        (AppState::Scheduled, EventBody::AppointmentScheduled { kind, at_ms, place }) => {
            Some(Pending::Attend { kind: kind.clone(), at_ms: *at_ms, place: place.clone() })
        }
        (AppState::Issued, _) => Some(match collection {
            Some(c) => {
                Pending::CollectAt { place: c.place.clone(), within_working_days: c.within_working_days }
            }
            None => Pending::Collect,
        }),
        _ => None,
    }
}

/// Whether `state` keeps a participant registry that is in force.
fn registry_in_force(state: &impl State) -> bool {
    state.registry().is_some_and(Registry::in_force)
}

/// Applies an envelope that [`decide`] accepted. Infallible: an envelope
/// that does not fit (which `decide` rules out) leaves the state unchanged.
pub fn apply(state: &mut impl StateMut, env: &Envelope, meta: EntryMeta) {
    apply_noted(state, env, meta);
}

/// [`apply`], returning what the entry did to held applications
/// ([`crate::hold`]), which the log notes on the entry.
pub fn apply_noted(state: &mut impl StateMut, env: &Envelope, meta: EntryMeta) -> Resolution {
    let kind = env.body.kind();
    let holding = registry_in_force(state);
    let mut resolution = Resolution::default();
    match (&env.target, &env.body) {
        (Target::Case(id), EventBody::CaseOpened { .. }) if holding => {
            if let Some(shell) = state.case(id).filter(|c| c.is_shell()) {
                resolution.dropped = hold::dropped_by_opening(shell, env, meta.recorded_at_ms);
                if let Some(holds) = state.holds_mut() {
                    holds.release(id);
                }
                if let Some(shell) = state.case_mut(id) {
                    hold::drop_from(shell, &resolution.dropped, meta.recorded_at_ms);
                }
            }
        }
        (Target::Application(id, _), EventBody::ApplicationFiled { .. })
            if holding && state.case(id).is_none_or(Case::is_shell) =>
        {
            if let Some(holds) = state.holds_mut() {
                resolution = holds.hold(env, meta.seq, meta.recorded_at_ms);
            }
        }
        _ => {}
    }
    apply_unnoted(state, env, meta, kind);
    resolution
}

/// A case without applications, opened by `env`'s agency at `opened_seq`,
/// as of the entry `meta`.
fn new_case(
    id: TrackingNumber,
    env: &Envelope,
    opened_seq: u64,
    pin_verifier: Vec<u8>,
    nik_keyed_hash: Vec<u8>,
    meta: EntryMeta,
) -> Case {
    Case {
        tracking_number: id,
        opened_by: env.agency.clone(),
        opened_at_ms: meta.recorded_at_ms,
        opened_seq,
        pin_verifier,
        nik_keyed_hash,
        updated_at_ms: meta.recorded_at_ms,
        last_seq: meta.seq,
        applications: Vec::new(),
        personal_data: PersonalData::None,
        pin_reissues: Vec::new(),
        personal_data_reads: Vec::new(),
    }
}

fn apply_unnoted(state: &mut impl StateMut, env: &Envelope, meta: EntryMeta, kind: EventKind) {
    match (&env.target, &env.body) {
        (
            Target::Catalogue,
            EventBody::ServiceStandardPublished {
                name_id,
                name_en,
                completion_working_days,
                fee_idr,
                requirements,
                fiktif_positif,
                version,
                collection,
            },
        ) => state.put_standard(ServiceStandard {
            agency: env.agency.clone(),
            service: env.service.clone(),
            name_id: name_id.clone(),
            name_en: name_en.clone(),
            completion_working_days: *completion_working_days,
            fee_idr: *fee_idr,
            requirements: requirements.clone(),
            fiktif_positif: *fiktif_positif,
            version: *version,
            effective_from_seq: meta.seq,
            effective_from_ms: meta.recorded_at_ms,
            collection: collection.clone(),
        }),
        (Target::Catalogue, _) => {}
        (Target::Case(id), EventBody::CaseOpened { pin_verifier, nik_keyed_hash }) => {
            if let Some(shell) = state.case_mut(id) {
                // Fill in the shell an earlier application created.
                shell.opened_by = env.agency.clone();
                shell.opened_seq = meta.seq;
                shell.pin_verifier = pin_verifier.clone();
                shell.nik_keyed_hash = nik_keyed_hash.clone();
                shell.updated_at_ms = meta.recorded_at_ms;
                shell.last_seq = meta.seq;
                return;
            }
            state.insert_case(new_case(
                *id,
                env,
                meta.seq,
                pin_verifier.clone(),
                nik_keyed_hash.clone(),
                meta,
            ))
        }
        (Target::Case(id), EventBody::PersonalDataSealed { key_id, .. }) => {
            let Some(case) = state.case_mut(id) else { return };
            case.personal_data = PersonalData::Sealed { key_id: key_id.clone(), sealed_seq: meta.seq };
            case.updated_at_ms = meta.recorded_at_ms;
            case.last_seq = meta.seq;
        }
        (Target::Case(id), EventBody::PersonalDataErased { key_id }) => {
            let Some(case) = state.case_mut(id) else { return };
            let PersonalData::Sealed { sealed_seq, .. } = case.personal_data else { return };
            case.personal_data =
                PersonalData::Erased { key_id: key_id.clone(), sealed_seq, erased_seq: meta.seq };
            case.updated_at_ms = meta.recorded_at_ms;
            case.last_seq = meta.seq;
        }
        (Target::Case(id), EventBody::PinReissued { pin_verifier }) => {
            let Some(case) = state.case_mut(id) else { return };
            case.pin_verifier = pin_verifier.clone();
            case.pin_reissues.push(PinReissue { seq: meta.seq, at_ms: meta.recorded_at_ms });
            case.updated_at_ms = meta.recorded_at_ms;
            case.last_seq = meta.seq;
        }
        (Target::Case(id), EventBody::PersonalDataRead { client_id }) => {
            let Some(case) = state.case_mut(id) else { return };
            let reads = &mut case.personal_data_reads;
            if reads.len() >= limits::PERSONAL_DATA_READS_KEPT {
                reads.drain(..=reads.len() - limits::PERSONAL_DATA_READS_KEPT);
            }
            reads.push(DataRead { seq: meta.seq, at_ms: meta.recorded_at_ms, client_id: client_id.clone() });
            case.updated_at_ms = meta.recorded_at_ms;
            case.last_seq = meta.seq;
        }
        (Target::Case(_), _) => {}
        (Target::Application(id, app_id), body) => {
            // The standard in force at filing governs the application for its
            // whole life (see `crate::sla`), so it is copied in now; read it
            // before the case is borrowed mutably.
            let terms = if kind == EventKind::ApplicationFiled {
                state
                    .standard(&env.agency, &env.service)
                    .map(|s| (s.completion_working_days, s.fiktif_positif, s.version))
            } else {
                None
            };
            if state.case(id).is_none() && kind == EventKind::ApplicationFiled {
                // A shell: its `case_opened` fills it in (opened_seq 0 until then).
                state.insert_case(new_case(*id, env, 0, Vec::new(), Vec::new(), meta));
            }
            let collection = if kind == EventKind::Issued { collection_of(state, env) } else { None };
            let Some(case) = state.case_mut(id) else { return };
            let from = case.application(app_id).map(|a| a.state);
            let Some(to) = next_state(from, kind) else { return };
            let item = TimelineItem {
                seq: meta.seq,
                recorded_at_ms: meta.recorded_at_ms,
                kind,
                state_after: to,
                detail: timeline_detail(body).into(),
            };
            case.updated_at_ms = meta.recorded_at_ms;
            case.last_seq = meta.seq;
            match case.application_mut(app_id) {
                Some(app) => {
                    app.state = to;
                    app.state_since_ms = meta.recorded_at_ms;
                    app.pending = pending_after(to, body, collection.as_deref());
                    app.timeline.push(item);
                }
                None => case.applications.push(Application {
                    id: app_id.clone(),
                    agency: env.agency.clone(),
                    service: env.service.clone(),
                    state: to,
                    filed_at_ms: meta.recorded_at_ms,
                    state_since_ms: meta.recorded_at_ms,
                    pending: pending_after(to, body, None),
                    timeline: vec![item],
                    sla_working_days: terms.map_or(0, |t| t.0),
                    fiktif_positif: terms.is_some_and(|t| t.1),
                    standard_version: terms.map_or(0, |t| t.2),
                }),
            }
        }
    }
}

/// What the standard in force for `env`'s service says about collecting
/// its document (read when an application is issued).
fn collection_of(state: &impl State, env: &Envelope) -> Option<std::sync::Arc<Collection>> {
    state.standard(&env.agency, &env.service).and_then(|s| s.collection)
}

/// An in-memory state: the model for tests and the engine of offline rebuilds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    /// Cases by tracking number.
    pub cases: BTreeMap<TrackingNumber, Case>,
    /// Standards in force by agency and service.
    pub standards: BTreeMap<(AgencyId, ServiceId), ServiceStandard>,
    /// The participant registry.
    pub registry: Registry,
}

impl State for MemState {
    fn case(&self, id: &TrackingNumber) -> Option<&Case> {
        self.cases.get(id)
    }

    fn standard(&self, agency: &AgencyId, service: &ServiceId) -> Option<StandardTerms> {
        self.standards.get(&(agency.clone(), service.clone())).map(ServiceStandard::terms)
    }

    fn registry(&self) -> Option<&Registry> {
        Some(&self.registry)
    }
}

impl StateMut for MemState {
    fn case_mut(&mut self, id: &TrackingNumber) -> Option<&mut Case> {
        self.cases.get_mut(id)
    }

    fn insert_case(&mut self, case: Case) {
        self.cases.insert(case.tracking_number, case);
    }

    fn put_standard(&mut self, standard: ServiceStandard) {
        self.standards.insert((standard.agency.clone(), standard.service.clone()), standard);
    }

    fn holds_mut(&mut self) -> Option<&mut Holds> {
        Some(&mut self.registry.holds)
    }
}
