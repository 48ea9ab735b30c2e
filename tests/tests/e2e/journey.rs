//! A multi-agency journey end to end: the citizen's case view shows every
//! agency's step and what they must do next.
//!
//! Real processes: a private nats-server, `mpp-hub serve`, the front office
//! (`mpp-frontoffice`) and three agency services (`mpp-dpmptsp`,
//! `mpp-pdam`, `mpp-pln`), all sharing one PIN pepper. The simulator's
//! small-business journey (`mpp_sim`, fixed seed) opens the case at the
//! front office and files a NIB and a PBG at DPMPTSP, a water connection at
//! PDAM and an electricity connection at PLN into it. The test stops after
//! the first visit, when DPMPTSP waits on documents and PDAM and PLN on
//! payment, and checks the case over HTTP and gRPC: every application with
//! its state and timeline, status `action_needed`, and the next actions
//! (`bring_documents` with the documents and counter, `pay_fee` with the
//! amount, where to pay and the billing code). It then plays the second
//! visit (documents brought, connections paid; the PBG's retribution now
//! waits) and the third (retribution paid) and checks the case is done.
//! Finally the stopped hub's store is audited: every answered event accepted
//! exactly once, nothing rejected, chain intact, rebuild = projection.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::{ApplicationState, CaseStatus, CaseView, GetCaseRequest};
use mpp_sim::{
    Action, Agency, AppChoice, CaseRun, Endpoints, Fate, Journey, Pacer, Plan, Rng, Stack, Target,
};
use mpp_tests::envelope::stream_last_seq;
use mpp_tests::services::{AgencyOptions, FrontOfficeLink, HubOptions, TEST_PIN_PEPPER};
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{check, wait_for, AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};
use serde_json::Value;

/// Region of the MPP: Kota Bengkulu.
const REGION: &str = "1771";

/// Seed of the simulated citizen and the journey's details.
const SEED: u64 = 1771;

/// Service standards published at start: DPMPTSP (nib, pbg), PDAM
/// (sambungan, balik-nama), PLN (pasang-baru, tambah-daya); the front office
/// publishes none.
const STANDARDS: u64 = 6;

/// Application slots of the small-business journey (`Journey::services`).
const NIB: usize = 0;
const PBG: usize = 1;
const PDAM: usize = 2;
const PLN: usize = 3;

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// The applications of the small-business journey: (slot, agency, service).
const APPLICATIONS: [(usize, &str, &str); 4] = [
    (NIB, "dpmptsp", "nib"),
    (PBG, "dpmptsp", "pbg"),
    (PDAM, "pdam", "sambungan"),
    (PLN, "pln", "pasang-baru"),
];

/// What one application (of [`APPLICATIONS`], in its order) must look like.
#[derive(Debug)]
struct Want {
    state: &'static str,
    pb_state: ApplicationState,
    timeline: &'static [&'static str],
}

const fn want(state: &'static str, pb_state: ApplicationState, timeline: &'static [&'static str]) -> Want {
    Want { state, pb_state, timeline }
}

const FILED: &str = "application_filed";

/// A connection (PDAM, PLN) surveyed and billed.
const BILLED: Want = want(
    "awaiting_payment",
    ApplicationState::AwaitingPayment,
    &[FILED, "appointment_scheduled", "fee_assessed"],
);

/// A connection (PDAM, PLN) paid for and installed.
const CONNECTED: Want = want(
    "issued",
    ApplicationState::Issued,
    &[FILED, "appointment_scheduled", "fee_assessed", "payment_received", "appointment_scheduled", "issued"],
);

/// After the first visit.
const FIRST_VISIT: [Want; 4] = [
    want("issued", ApplicationState::Issued, &[FILED, "review_started", "issued"]),
    want("documents_required", ApplicationState::DocumentsRequired, &[FILED, "documents_requested"]),
    BILLED,
    BILLED,
];

/// After the last visit.
const DONE: [Want; 4] = [
    want("issued", ApplicationState::Issued, &[FILED, "review_started", "issued"]),
    want(
        "issued",
        ApplicationState::Issued,
        &[
            FILED,
            "documents_requested",
            "documents_received",
            "review_started",
            "appointment_scheduled",
            // The inspection was held; the technical review goes on.
            "review_started",
            "fee_assessed",
            "payment_received",
            "issued",
        ],
    ),
    CONNECTED,
    CONNECTED,
];

/// The fee the plan assesses on `slot`: amount, billing code, where to pay,
/// days to pay.
fn assessed_fee(plan: &Plan, slot: usize) -> Result<(i64, String, String, u32)> {
    plan.steps_of(slot)
        .find_map(|s| match &s.action {
            Action::AssessFee { amount_idr, billing_code, channel, due_days } => {
                Some((*amount_idr, billing_code.clone(), channel.clone(), *due_days))
            }
            _ => None,
        })
        .ok_or_else(|| anyhow!("the plan assesses no fee on slot {slot}"))
}

/// The documents the plan requests on `slot`, and where to bring them.
fn requested_documents(plan: &Plan, slot: usize) -> Result<(Vec<String>, String)> {
    plan.steps_of(slot)
        .find_map(|s| match &s.action {
            Action::RequestDocuments { documents, counter, .. } => Some((documents.clone(), counter.clone())),
            _ => None,
        })
        .ok_or_else(|| anyhow!("the plan requests no documents on slot {slot}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The application `id` in a case JSON.
fn app_json<'a>(case: &'a Value, id: &str) -> Result<&'a Value> {
    case.get("applications")
        .and_then(Value::as_array)
        .context("no applications array")?
        .iter()
        .find(|a| str_of(a, "application_id") == id)
        .ok_or_else(|| anyhow!("application {id} is not in the case: {case}"))
}

/// Checks every application of the case JSON against `wants`.
fn check_apps_json(case: &Value, run: &CaseRun, wants: &[Want; 4]) -> Result<()> {
    let apps = case.get("applications").and_then(Value::as_array).context("no applications array")?;
    ensure!(apps.len() == wants.len(), "{} applications, expected {}: {case}", apps.len(), wants.len());
    for (w, &(slot, agency, service)) in wants.iter().zip(&APPLICATIONS) {
        let id = run.application_id(slot).context("application not filed")?;
        let a = app_json(case, id)?;
        ensure!(
            str_of(a, "agency_id") == agency && str_of(a, "service_id") == service,
            "application {id} belongs to {}/{}, expected {}/{}",
            str_of(a, "agency_id"),
            str_of(a, "service_id"),
            agency,
            service
        );
        ensure!(
            str_of(a, "state") == w.state,
            "application {id} ({}) is {}, expected {}",
            service,
            str_of(a, "state"),
            w.state
        );
        let timeline = a.get("timeline").and_then(Value::as_array).context("no timeline")?;
        let types: Vec<&str> = timeline.iter().map(|t| str_of(t, "event_type")).collect();
        ensure!(types == w.timeline, "{} timeline {types:?}, expected {:?}", service, w.timeline);
        let seqs: Vec<u64> = timeline.iter().filter_map(|t| t.get("seq").and_then(Value::as_u64)).collect();
        ensure!(seqs.len() == types.len() && seqs.windows(2).all(|p| p[0] < p[1]), "timeline seqs {seqs:?}");
        let last = timeline.last().map(|t| str_of(t, "state_after"));
        ensure!(last == Some(w.state), "{} timeline ends in {last:?}, expected {}", service, w.state);
    }
    Ok(())
}

/// The next actions of a case JSON.
fn next_actions(case: &Value) -> Result<Vec<&Value>> {
    Ok(case.get("next_actions").and_then(Value::as_array).context("no next_actions array")?.iter().collect())
}

fn check_apps_grpc(view: &CaseView, run: &CaseRun, wants: &[Want; 4], status: CaseStatus) -> Result<()> {
    ensure!(view.status == status as i32, "gRPC status {}, expected {status:?}", view.status);
    ensure!(view.region_code == REGION, "gRPC region {:?}", view.region_code);
    ensure!(view.applications.len() == wants.len(), "gRPC: {} applications", view.applications.len());
    for (w, &(slot, agency, service)) in wants.iter().zip(&APPLICATIONS) {
        let id = run.application_id(slot).context("application not filed")?;
        let a = view
            .applications
            .iter()
            .find(|a| a.application_id == id)
            .ok_or_else(|| anyhow!("gRPC view lacks application {id}"))?;
        ensure!(a.agency_id == agency && a.service_id == service, "gRPC owner of {id}: {a:?}");
        ensure!(
            a.state == w.pb_state as i32,
            "gRPC state of {} is {}, expected {:?}",
            service,
            a.state,
            w.pb_state
        );
        let types: Vec<&str> = a.timeline.iter().map(|t| t.event_type.as_str()).collect();
        ensure!(types == w.timeline, "gRPC {} timeline {types:?}", service);
    }
    Ok(())
}

/// Waits until the stream holds `messages` messages (no more) and the hub
/// has ingested all of them.
async fn wait_ingested(nats: &NatsServer, hub: &mut HubProcess, messages: u64) -> Result<()> {
    let js = nats.jetstream().await?;
    let probe = js.clone();
    wait_for(&format!("the stream to hold {messages} messages"), CATCH_UP_DEADLINE, || {
        let js = probe.clone();
        async move {
            let last = stream_last_seq(&js).await?;
            if last >= messages {
                Ok(Some(()))
            } else {
                bail!("stream last seq {last}")
            }
        }
    })
    .await?;
    let last = stream_last_seq(&js).await?;
    ensure!(last == messages, "the stream holds {last} messages, expected {messages}");
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    Ok(())
}

/// `GET /api/v1/cases/{tn}` with the PIN the front office returned.
async fn lookup(hub: &HubProcess, tn: &str, pin: &str) -> Result<Value> {
    let (status, body) = hub.case_json(tn, pin).await?;
    ensure!(status == 200, "GET /api/v1/cases/{tn}: {status} {body}");
    ensure!(str_of(&body, "tracking_number") == tn && str_of(&body, "region_code") == REGION, "{body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_agency_journey_shows_every_agencys_step_and_what_to_do_next() -> Result<()> {
    // Given: NATS, the hub, the front office and three agencies, one pepper.
    let nats = NatsServer::start().await?;
    let secrets = mpp_tests::temp_dir("mpp-journey-secrets-")?;
    let pepper = secrets.path().join("pin-pepper");
    std::fs::write(&pepper, TEST_PIN_PEPPER).context("cannot write the pepper")?;
    let hub_options = HubOptions { pin_pepper_file: Some(pepper.clone()), ..HubOptions::default() };
    let mut hub = HubProcess::spawn_with(&nats.url(), hub_options)?;
    hub.wait_ready(READY_DEADLINE).await?;
    // Every case is opened at the front office: the agencies need none for walk-ins.
    let options = AgencyOptions {
        pin_pepper_file: Some(pepper.clone()),
        front_office: FrontOfficeLink::None,
        ..AgencyOptions::region(REGION)
    };
    let mut front = AgencyProcess::spawn_frontoffice(&nats.url(), options.clone())?;
    let mut dpmptsp = AgencyProcess::spawn("mpp-dpmptsp", &nats.url(), options.clone())?;
    let mut pdam = AgencyProcess::spawn("mpp-pdam", &nats.url(), options.clone())?;
    let mut pln = AgencyProcess::spawn("mpp-pln", &nats.url(), options)?;
    for p in [&mut front, &mut dpmptsp, &mut pdam, &mut pln] {
        p.wait_listening(READY_DEADLINE).await?;
    }

    // Services this journey does not use point at the discard port: any
    // call to them would fail loudly.
    let mut endpoints = Endpoints::default();
    for agency in Agency::ALL {
        endpoints.set(agency, Target { addr: "http://127.0.0.1:9".to_owned(), token: None });
    }
    for (agency, p) in [
        (Agency::FrontOffice, &front),
        (Agency::Dpmptsp, &dpmptsp),
        (Agency::Pdam, &pdam),
        (Agency::Pln, &pln),
    ] {
        endpoints.set(agency, Target { addr: p.grpc_endpoint(), token: Some(p.token().to_owned()) });
    }
    let mut stack = Stack::connect_lazy(endpoints)?;
    let mut pacer = Pacer::unpaced();

    // The PBG's documents are found missing; everything else goes straight.
    let choices = [
        AppChoice::COMPLETED,
        AppChoice { documents_missing: true, fate: Fate::Completed },
        AppChoice::COMPLETED,
        AppChoice::COMPLETED,
    ];
    let plan = Plan::with_choices(Journey::UsahaBaru, REGION, &choices, &mut Rng::new(SEED))?;
    let ends = plan.round_ends();
    ensure!(ends.len() == 3, "expected three visits, the plan has {ends:?}");
    let (pbg_documents, pbg_counter) = requested_documents(&plan, PBG)?;
    let (pdam_fee, pdam_code, pdam_place, pdam_days) = assessed_fee(&plan, PDAM)?;
    let (pln_fee, pln_code, pln_place, pln_days) = assessed_fee(&plan, PLN)?;
    let (pbg_fee, pbg_code, _, _) = assessed_fee(&plan, PBG)?;
    let mut run = CaseRun::new(0, plan);

    // When: the first visit: case opened, four applications filed, the
    // agencies go as far as they can.
    run.run_until(ends[0], &mut stack, &mut pacer).await?;
    let tn = run.tracking_number().context("no tracking number")?.to_owned();
    let pin = run.pin().context("no PIN")?.to_owned();
    ensure!(mpp_tests::pin::is_strong(&pin), "PIN {pin:?} is not a strong 9-character PIN");
    println!("case {tn}: {} events answered in the first visit", run.event_ids().len());
    wait_ingested(&nats, &mut hub, run.event_ids().len() as u64 + STANDARDS).await?;

    // Then: the case opens only with its PIN (the hub checks it against the
    // verifier the front office published under the shared pepper) ...
    let wrong = if pin == "000000" { "000001" } else { "000000" };
    let (status, body) = hub.case_json(&tn, wrong).await?;
    ensure!(
        status == 404 && body.pointer("/error/code").and_then(Value::as_str) == Some("CASE_NOT_FOUND"),
        "a wrong PIN must look like an unknown case, got {status} {body}"
    );
    // ... and shows every agency's application, and what the citizen must do.
    let case = lookup(&hub, &tn, &pin).await?;
    ensure!(str_of(&case, "status") == "action_needed", "status: {case}");
    check_apps_json(&case, &run, &FIRST_VISIT)?;
    let pbg_owned = run.application_id(PBG).context("PBG")?.to_owned();
    let pbg_id = pbg_owned.as_str();
    let pdam_owned = run.application_id(PDAM).context("PDAM")?.to_owned();
    let pdam_id = pdam_owned.as_str();
    let pln_owned = run.application_id(PLN).context("PLN")?.to_owned();
    let pln_id = pln_owned.as_str();
    let actions = next_actions(&case)?;
    let find = |id: &str, kind: &str| {
        actions
            .iter()
            .copied()
            .find(|a| str_of(a, "application_id") == id && str_of(a, "kind") == kind)
            .ok_or_else(|| anyhow!("no {kind} next action for {id}: {case}"))
    };
    let bring = find(pbg_id, "bring_documents")?;
    let docs: Vec<&str> = bring
        .get("documents")
        .and_then(Value::as_array)
        .context("documents")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(docs == pbg_documents, "bring_documents lists {docs:?}, expected {pbg_documents:?}");
    ensure!(str_of(bring, "place") == pbg_counter, "bring_documents place: {bring}");
    for (id, fee, code, place, days) in [
        (pdam_id, pdam_fee, &pdam_code, &pdam_place, pdam_days),
        (pln_id, pln_fee, &pln_code, &pln_place, pln_days),
    ] {
        let pay = find(id, "pay_fee")?;
        ensure!(
            pay.get("amount_idr").and_then(Value::as_i64) == Some(fee),
            "pay_fee amount: {pay}, expected {fee}"
        );
        ensure!(str_of(pay, "billing_code") == code.as_str(), "pay_fee billing code: {pay}, expected {code}");
        ensure!(str_of(pay, "place") == place.as_str(), "pay_fee place: {pay}, expected {place}");
        // The agency's due date: `days` after the fee was assessed, which
        // was during this test.
        let due = pay.get("due_at_ms").and_then(Value::as_i64).context("pay_fee has no due_at_ms")?;
        let now = mpp_tests::envelope::now_ms();
        let days_ms = i64::from(days) * 86_400_000;
        ensure!(
            due > now && due <= now + days_ms,
            "pay_fee due_at_ms {due}: expected within {days} days of now ({now})"
        );
    }
    // Anything else the citizen is told to do concerns the issued NIB (collect it).
    let waiting = [pbg_id, pdam_id, pln_id];
    for a in &actions {
        let id = str_of(a, "application_id");
        ensure!(
            waiting.contains(&id)
                || (Some(id) == run.application_id(NIB) && str_of(a, "kind") == "collect_document"),
            "unexpected next action {a}"
        );
    }
    ensure!(actions.iter().filter(|a| waiting.contains(&str_of(a, "application_id"))).count() == 3, "{case}");

    // The same over gRPC.
    let mut grpc = CasesServiceClient::connect(hub.grpc_endpoint()).await?;
    let view = grpc
        .get_case(GetCaseRequest { tracking_number: tn.clone(), pin: pin.clone(), ..Default::default() })
        .await
        .context("GetCase")?
        .into_inner();
    check_apps_grpc(&view, &run, &FIRST_VISIT, CaseStatus::ActionNeeded)?;
    let kinds: Vec<(&str, &str)> =
        view.next_actions.iter().map(|n| (n.application_id.as_str(), n.kind.as_str())).collect();
    for want in [(pbg_id, "bring_documents"), (pdam_id, "pay_fee"), (pln_id, "pay_fee")] {
        ensure!(kinds.contains(&want), "gRPC next actions {kinds:?} lack {want:?}");
    }
    let pay = view
        .next_actions
        .iter()
        .find(|n| n.application_id == pdam_id && n.kind == "pay_fee")
        .context("gRPC pay_fee")?;
    ensure!(
        pay.amount_idr == pdam_fee && pay.billing_code == pdam_code && pay.place == pdam_place,
        "gRPC pay_fee {pay:?}"
    );
    let bring =
        view.next_actions.iter().find(|n| n.application_id == pbg_id).context("gRPC bring_documents")?;
    ensure!(bring.documents == pbg_documents && bring.place == pbg_counter, "gRPC bring_documents {bring:?}");

    // When: the second visit: documents brought, connections paid; the PBG
    // is inspected and its retribution assessed.
    run.run_until(ends[1], &mut stack, &mut pacer).await?;
    wait_ingested(&nats, &mut hub, run.event_ids().len() as u64 + STANDARDS).await?;
    let case = lookup(&hub, &tn, &pin).await?;
    ensure!(str_of(&case, "status") == "action_needed", "status after the second visit: {case}");
    ensure!(str_of(app_json(&case, pbg_id)?, "state") == "awaiting_payment", "{case}");
    let actions = next_actions(&case)?;
    let pay = actions
        .iter()
        .find(|a| str_of(a, "application_id") == pbg_id && str_of(a, "kind") == "pay_fee")
        .ok_or_else(|| anyhow!("no pay_fee for the PBG retribution: {case}"))?;
    ensure!(
        pay.get("amount_idr").and_then(Value::as_i64) == Some(pbg_fee)
            && str_of(pay, "billing_code") == pbg_code,
        "{pay}"
    );
    for id in [pdam_id, pln_id] {
        ensure!(str_of(app_json(&case, id)?, "state") == "issued", "{id} after the second visit: {case}");
    }

    // When: the last visit: the retribution is paid and the PBG issued.
    run.run_to_end(&mut stack, &mut pacer).await?;
    ensure!(run.is_finished());
    wait_ingested(&nats, &mut hub, run.event_ids().len() as u64 + STANDARDS).await?;
    let case = lookup(&hub, &tn, &pin).await?;
    ensure!(str_of(&case, "status") == "done", "status at the end: {case}");
    check_apps_json(&case, &run, &DONE)?;
    let view = grpc
        .get_case(GetCaseRequest { tracking_number: tn.clone(), pin: pin.clone(), ..Default::default() })
        .await
        .context("GetCase")?
        .into_inner();
    check_apps_grpc(&view, &run, &DONE, CaseStatus::Done)?;
    ensure!(
        view.next_actions.iter().all(|n| n.kind == "collect_document"),
        "a done case asks for nothing but collections: {:?}",
        view.next_actions
    );

    // Finally: the stopped hub's store.
    for p in [&mut front, &mut dpmptsp, &mut pdam, &mut pln] {
        p.terminate().await?;
    }
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    println!("store: {:?}, {} cases", audit.summary, audit.cases);
    let answered = run.event_ids();
    if audit.summary.rejected_total() != 0 {
        bail!(
            "rejected entries {:?}; log entries of the case:\n{}",
            audit.summary.rejected,
            check::describe_case_entries(&audit.entries, &tn).join("\n")
        );
    }
    ensure!(audit.summary.duplicates == 0, "duplicate entries: {}", audit.summary.duplicates);
    ensure!(
        audit.summary.accepted as u64 == answered.len() as u64 + STANDARDS,
        "accepted {}, expected {} answered events + {STANDARDS} standards",
        audit.summary.accepted,
        answered.len()
    );
    ensure!(audit.cases == 1, "{} cases in the projection", audit.cases);
    let accepted = check::accepted_by_event_id(&audit.entries);
    for id in answered {
        match accepted.get(id).map(Vec::len) {
            Some(1) => {}
            n => bail!("event {id} answered by a service is accepted {n:?} times"),
        }
    }
    Ok(())
}
