//! The citizen's side: the tracking page in a real headless browser, the
//! abuse limits of lookups, and live updates.
//!
//! Real processes: a private nats-server, `mpp-hub serve` and
//! `mpp-dukcapil`. Each test builds one multi-agency case from real events
//! through NATS: Dukcapil opens it and files a family card (KK) through its
//! gRPC service (which answers the citizen's PIN) and asks for documents;
//! DPMPTSP, an agency integrating directly with NATS, publishes its service
//! standard and files a building approval (PBG) into the same case, reviews
//! it and assesses a fee. So the case waits on the citizen twice: documents
//! at Dukcapil, a payment for DPMPTSP.
//!
//! - `the_tracking_page_works_in_a_real_browser`: Chromium (headless, phone
//!   viewport) opens `/lacak`, types the tracking number and PIN, sees each
//!   agency's state, switches to English, sees a live update arrive without
//!   reloading, and gets the generic message for a wrong PIN. Screenshots go
//!   to `test-artifacts/citizen-case.png` (and `-en`, `-receipt`).
//! - `rate_limits_lockout_and_identical_answers_behave_as_documented`: the
//!   hub's documented limits (20 lookups in a burst per client address, 5
//!   wrong PINs lock a number for 15 minutes), and an unknown case and a
//!   wrong PIN answered identically (JSON, page and gRPC).
//! - `a_watch_stream_receives_the_update_after_a_new_event`: gRPC
//!   `WatchCase` sends the case, then the case again after Dukcapil's next
//!   step is ingested.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::{ApplicationState, GetCaseRequest, WatchCaseRequest};
use mpp_tests::browser::{artifact_dir, Browser};
use mpp_tests::envelope::{body, publish_envelope, stream_last_seq, tracking_number, EventFactory};
use mpp_tests::http::{parse_response, HttpResponse};
use mpp_tests::pin::other_pin;
use mpp_tests::services::HubOptions;
use mpp_tests::{wait_for, AgencyProcess, Bearer, HubProcess, NatsServer, READY_DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use dk::dukcapil_service_client::DukcapilServiceClient;

type Dukcapil = DukcapilServiceClient<InterceptedService<Channel, Bearer>>;

const REGION: &str = "1771";
/// Standards mpp-dukcapil publishes when it starts (kk, ktp-el, akta-lahir).
const DUKCAPIL_STANDARDS: u64 = 3;
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
const PBG: &str = "PBG-E2E-0001";

/// One multi-agency case built by real events, and the processes behind it.
struct World {
    nats: NatsServer,
    hub: HubProcess,
    dukcapil: AgencyProcess,
    client: Dukcapil,
    tn: String,
    pin: String,
    kk: String,
    /// Stream messages so far.
    published: u64,
}

impl World {
    async fn start(options: HubOptions) -> Result<Self> {
        let nats = NatsServer::start().await?;
        let mut hub = HubProcess::spawn_with(&nats.url(), options)?;
        hub.wait_ready(READY_DEADLINE).await?;
        let mut dukcapil = AgencyProcess::spawn_dukcapil(&nats.url(), REGION)?;
        dukcapil.wait_listening(READY_DEADLINE).await?;
        let channel = Channel::from_shared(dukcapil.grpc_endpoint())?.connect().await?;
        let mut client = DukcapilServiceClient::with_interceptor(channel, dukcapil.bearer()?);

        // Dukcapil opens the case with a KK application and asks for documents.
        let opened = client
            .ajukan_permohonan(mpp_tests::dukcapil::permohonan("", dk::Layanan::Kk))
            .await
            .context("AjukanPermohonan")?
            .into_inner();
        ensure!(mpp_tests::pin::is_strong(&opened.pin), "a new case must come with a strong PIN: {opened:?}");
        let (tn, kk) = (opened.nomor_berkas.clone(), opened.nomor_permohonan.clone());
        client
            .minta_kelengkapan(dk::KekuranganBerkas {
                langkah: Some(langkah(&tn, &kk)),
                dokumen: vec!["akta nikah".to_owned(), "surat keterangan pindah".to_owned()],
                loket: "Loket 3 Disdukcapil".to_owned(),
                catatan: "bawa asli dan fotokopi".to_owned(),
            })
            .await
            .context("MintaKelengkapan")?;
        let mut world = World {
            nats,
            hub,
            dukcapil,
            client,
            tn,
            pin: opened.pin,
            kk,
            published: DUKCAPIL_STANDARDS + opened.event_ids.len() as u64 + 1,
        };
        // The case must be in the stream before another agency files into it.
        world.wait_stream(world.published).await?;

        // DPMPTSP, straight onto NATS: its standard, then a PBG filed into the
        // same case, reviewed, and a fee assessed.
        let f = EventFactory::new("dpmptsp", "pbg", REGION);
        let events = [
            f.standard(1),
            f.app_event(&world.tn, PBG, body::filed()),
            f.app_event(&world.tn, PBG, body::review_started()),
            f.app_event(&world.tn, PBG, body::fee_assessed()),
        ];
        let js = world.nats.jetstream().await?;
        for e in &events {
            publish_envelope(&js, e).await?;
        }
        world.published += events.len() as u64;
        world.caught_up().await?;
        Ok(world)
    }

    async fn wait_stream(&self, messages: u64) -> Result<u64> {
        let js = self.nats.jetstream().await?;
        wait_for(&format!("the stream to hold {messages} messages"), CATCH_UP_DEADLINE, || {
            let js = js.clone();
            async move { Ok(stream_last_seq(&js).await.ok().filter(|n| *n >= messages)) }
        })
        .await
    }

    /// Waits until the stream holds every message so far and the hub has
    /// ingested them all.
    async fn caught_up(&mut self) -> Result<()> {
        let last = self.wait_stream(self.published).await?;
        ensure!(last == self.published, "the stream holds {last} messages, expected {}", self.published);
        self.hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
        Ok(())
    }

    /// Publishes DPMPTSP's payment receipt for the PBG fee.
    async fn pay_pbg(&mut self) -> Result<()> {
        let f = EventFactory::new("dpmptsp", "pbg", REGION);
        let js = self.nats.jetstream().await?;
        publish_envelope(&js, &f.app_event(&self.tn, PBG, body::payment_received())).await?;
        self.published += 1;
        Ok(())
    }

    fn page_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.hub.http_addr())
    }
}

fn langkah(tn: &str, app: &str) -> dk::Langkah {
    dk::Langkah {
        nomor_berkas: tn.to_owned(),
        nomor_permohonan: app.to_owned(),
        petugas: "petugas-loket-1".to_owned(),
    }
}

/// An unknown tracking number of the region.
fn unknown_tracking_number() -> Result<String> {
    tracking_number(1771, 4_999_999_998)
}

/// Fills the lookup form of the current page and submits it.
async fn submit_form(b: &mut Browser, tn: &str, pin: &str) -> Result<()> {
    let (tn, pin) = (serde_json::to_string(tn)?, serde_json::to_string(pin)?);
    b.navigate_by(&format!(
        "document.getElementById('nomor').value = {tn}; document.getElementById('pin').value = {pin}; \
         document.getElementById('kirim').click();"
    ))
    .await
}

/// `agency=state label` of every application shown, in order.
async fn agency_states(b: &mut Browser) -> Result<Vec<String>> {
    let v = b
        .eval(
            "[...document.querySelectorAll('article.application')].map(a => a.dataset.agency + '=' + \
             a.querySelector('.state').textContent.trim())",
        )
        .await?;
    Ok(v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default())
}

async fn alert(b: &mut Browser) -> Result<String> {
    b.eval_string("(document.getElementById('pesan') || {textContent: ''}).textContent.trim()").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracking_page_works_in_a_real_browser() -> Result<()> {
    // Fails (does not skip) when no browser can be found.
    let mut b = Browser::launch().await.context("the tracking page test needs a headless browser")?;
    let mut w = World::start(HubOptions::default()).await?;
    let artifacts = artifact_dir()?;

    // The form, in Bahasa Indonesia by default, with labelled inputs.
    b.goto(&w.page_url("/lacak")).await?;
    ensure!(b.eval_string("document.documentElement.lang").await? == "id");
    let labels = b
        .eval("['nomor','pin'].map(id => (document.querySelector(`label[for=${id}]`) || {}).textContent)")
        .await?;
    ensure!(labels == serde_json::json!(["Nomor berkas", "PIN"]), "form labels: {labels}");

    // A wrong PIN, and an unknown case: the same generic message.
    submit_form(&mut b, &w.tn, &other_pin(&w.pin)).await?;
    let wrong = alert(&mut b).await?;
    ensure!(wrong == "Nomor berkas atau PIN tidak cocok. Periksa kembali keduanya.", "wrong PIN: {wrong:?}");
    submit_form(&mut b, &unknown_tracking_number()?, &w.pin).await?;
    ensure!(alert(&mut b).await? == wrong, "an unknown case must get the wrong-PIN message");
    // A mistyped number: check the number.
    let mut typo = w.tn.clone();
    let last = typo.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
    typo.push(char::from_digit((last + 1) % 10, 10).unwrap_or('0'));
    submit_form(&mut b, &typo, &w.pin).await?;
    let msg = alert(&mut b).await?;
    ensure!(msg.starts_with("Periksa kembali nomor berkas"), "bad check digit: {msg:?}");
    ensure!(!b.text().await?.contains(&w.pin), "the PIN must never be shown back");

    // The right PIN: the case, every agency with its state, what to do next.
    submit_form(&mut b, &w.tn, &w.pin).await?;
    let text = b.text().await?;
    ensure!(text.contains("Perlu tindakan Anda"), "status word missing:\n{text}");
    let states = agency_states(&mut b).await?;
    ensure!(
        states == ["dukcapil=Perlu Kelengkapan", "dpmptsp=Menunggu Pembayaran"],
        "agency states {states:?}:\n{text}"
    );
    for want in
        ["akta nikah", "Loket 3 Disdukcapil", "Rp 50.000", "Bank Bengkulu", "820001234567", "Anda (warga)"]
    {
        ensure!(text.contains(want), "the case page lacks {want:?}:\n{text}");
    }
    ensure!(!text.contains(&w.pin), "the PIN must never be shown");
    b.screenshot(&artifacts.join("citizen-case.png")).await?;

    // English, through the switch (the session keeps the PIN out of URLs).
    b.navigate_by("document.getElementById('lang-switch').click();").await?;
    ensure!(b.eval_string("document.documentElement.lang").await? == "en");
    let text = b.text().await?;
    ensure!(!b.eval_string("location.href").await?.contains(&w.pin), "the PIN must not be in a URL");
    for want in ["Action needed from you", "What you need to do", "Documents required", "Awaiting payment"] {
        ensure!(text.contains(want), "the English page lacks {want:?}:\n{text}");
    }
    let states = agency_states(&mut b).await?;
    ensure!(states == ["dukcapil=Documents required", "dpmptsp=Awaiting payment"], "{states:?}");
    b.screenshot(&artifacts.join("citizen-case-en.png")).await?;

    // Live: DPMPTSP records the payment; the open page shows it without a reload.
    b.eval("window.__mppNotReloaded = true").await?;
    w.pay_pbg().await?;
    w.caught_up().await?;
    let deadline = tokio::time::Instant::now() + CATCH_UP_DEADLINE;
    let states = loop {
        let states = agency_states(&mut b).await?;
        if states.get(1).map(String::as_str) == Some("dpmptsp=Paid") {
            break states;
        }
        ensure!(tokio::time::Instant::now() < deadline, "the open page never showed the payment: {states:?}");
        tokio::time::sleep(Duration::from_millis(mpp_tests::wait::POLL_INTERVAL_MS)).await;
    };
    ensure!(
        b.eval("window.__mppNotReloaded === true").await? == true,
        "the page reloaded instead of updating"
    );
    ensure!(states[0] == "dukcapil=Documents required", "{states:?}");

    // The receipt: the number and a QR code, never the PIN.
    b.goto(&w.page_url(&format!("/lacak/{}/tanda-terima", w.tn))).await?;
    ensure!(b.eval("!!document.querySelector('.qr svg')").await? == true, "the receipt has no QR code");
    ensure!(!b.text().await?.contains(&w.pin));
    b.screenshot(&artifacts.join("citizen-receipt.png")).await?;
    println!("screenshots in {}", artifacts.display());
    b.close().await?;
    w.dukcapil.terminate().await?;
    w.hub.terminate().await?;
    Ok(())
}

/// One request from a chosen loopback source address (each test client is
/// its own "client address" for the rate limits), `Connection: close`.
async fn request_from(source: Ipv4Addr, addr: SocketAddr, head: &str, body: &str) -> Result<HttpResponse> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).with_context(|| format!("bind {source}"))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await??;
    let req = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await??;
    parse_response(&raw)
}

/// `GET path` with the PIN header, from `source`.
async fn get_from(source: Ipv4Addr, addr: SocketAddr, path: &str, pin: &str) -> Result<HttpResponse> {
    request_from(source, addr, &format!("GET {path} HTTP/1.1\r\nX-MPP-PIN: {pin}"), "").await
}

/// `POST /lacak` (the page's form) from `source`.
async fn post_form_from(source: Ipv4Addr, addr: SocketAddr, body: &str) -> Result<HttpResponse> {
    let head = "POST /lacak HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded";
    request_from(source, addr, head, body).await
}

fn code(r: &HttpResponse) -> String {
    r.json()
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_lockout_and_identical_answers_behave_as_documented() -> Result<()> {
    let mut w = World::start(HubOptions { documented_rate_limits: true, ..HubOptions::default() }).await?;
    let addr = w.hub.http_addr();
    let case_path = format!("/api/v1/cases/{}", w.tn);
    let unknown = unknown_tracking_number()?;
    let unknown_path = format!("/api/v1/cases/{unknown}");

    // Unknown case and wrong PIN: the same status and the same bytes, over
    // JSON, the page and gRPC.
    let client = Ipv4Addr::new(127, 0, 0, 2);
    let wrong = get_from(client, addr, &case_path, &other_pin(&w.pin)).await?;
    let none = get_from(client, addr, &unknown_path, &w.pin).await?;
    ensure!(
        wrong.status == 404 && code(&wrong) == "CASE_NOT_FOUND",
        "wrong PIN: {} {}",
        wrong.status,
        wrong.text()
    );
    ensure!(
        (wrong.status, &wrong.body) == (none.status, &none.body),
        "JSON: {} vs {}",
        wrong.text(),
        none.text()
    );
    let form = |tn: &str, pin: &str| format!("nomor={tn}&pin={pin}");
    let page_wrong = post_form_from(client, addr, &form(&w.tn, &other_pin(&w.pin))).await?;
    let page_none = post_form_from(client, addr, &form(&unknown, &w.pin)).await?;
    ensure!(page_wrong.status == 404, "page, wrong PIN: {}", page_wrong.status);
    ensure!(
        (page_wrong.status, page_wrong.text().replace(&w.tn, "N"))
            == (page_none.status, page_none.text().replace(&unknown, "N")),
        "the pages for a wrong PIN and an unknown case differ beyond the number typed"
    );
    let mut grpc = CasesServiceClient::connect(w.hub.grpc_endpoint()).await?;
    let g_wrong = grpc
        .get_case(GetCaseRequest {
            tracking_number: w.tn.clone(),
            pin: other_pin(&w.pin),
            ..Default::default()
        })
        .await
        .expect_err("a wrong PIN must fail");
    let g_none = grpc
        .get_case(GetCaseRequest {
            tracking_number: unknown.clone(),
            pin: w.pin.clone(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown case must fail");
    ensure!(
        (g_wrong.code(), g_wrong.message()) == (g_none.code(), g_none.message()),
        "gRPC: {g_wrong:?} vs {g_none:?}"
    );

    // A success clears the case's wrong-PIN count (three so far, above).
    let ok = get_from(Ipv4Addr::new(127, 0, 0, 8), addr, &case_path, &w.pin).await?;
    ensure!(ok.status == 200, "the right PIN: {} {}", ok.status, ok.text());

    // Rate limit: 20 lookups in a burst per client address, then 429 with Retry-After.
    let burst_client = Ipv4Addr::new(127, 0, 0, 3);
    for i in 0..20 {
        let r = get_from(burst_client, addr, &case_path, &w.pin).await?;
        ensure!(r.status == 200, "lookup {i} of the burst: {} {}", r.status, r.text());
    }
    let limited = get_from(burst_client, addr, &case_path, &w.pin).await?;
    ensure!(
        limited.status == 429 && code(&limited) == "RATE_LIMITED",
        "{} {}",
        limited.status,
        limited.text()
    );
    let retry: u64 = limited.header("retry-after").context("no Retry-After")?.parse()?;
    ensure!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another client address is not affected.
    let other = get_from(Ipv4Addr::new(127, 0, 0, 4), addr, &case_path, &w.pin).await?;
    ensure!(other.status == 200, "another address: {}", other.status);

    // Lockout: 5 wrong PINs lock the number for 15 minutes, even for the
    // right PIN; an unknown number locks the same way, with the same answer.
    let fresh_unknown_path = format!("/api/v1/cases/{}", tracking_number(1771, 4_999_999_997)?);
    let mut locked = Vec::new();
    for (i, (path, source)) in
        [(&case_path, Ipv4Addr::new(127, 0, 0, 5)), (&fresh_unknown_path, Ipv4Addr::new(127, 0, 0, 6))]
            .into_iter()
            .enumerate()
    {
        for attempt in 0..5 {
            let r = get_from(source, addr, path, &other_pin(&w.pin)).await?;
            ensure!(r.status == 404, "target {i}, wrong PIN {attempt}: {} {}", r.status, r.text());
        }
        let r = get_from(source, addr, path, &w.pin).await?;
        ensure!(
            r.status == 429 && code(&r) == "LOOKUP_LOCKED",
            "target {i} after 5 wrong PINs: {}",
            r.text()
        );
        let retry: u64 = r.header("retry-after").context("no Retry-After")?.parse()?;
        ensure!((14 * 60..=15 * 60).contains(&retry), "lockout Retry-After {retry}");
        locked.push((r.status, r.body));
    }
    ensure!(locked[0] == locked[1], "a lockout must look the same for a known and an unknown number");
    // The lock is per number, not per client: a fresh address is locked out too.
    let r = get_from(Ipv4Addr::new(127, 0, 0, 7), addr, &case_path, &w.pin).await?;
    ensure!(r.status == 429 && code(&r) == "LOOKUP_LOCKED", "{}", r.text());
    w.dukcapil.terminate().await?;
    w.hub.terminate().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stream_receives_the_update_after_a_new_event() -> Result<()> {
    let mut w = World::start(HubOptions::default()).await?;
    let mut grpc = CasesServiceClient::connect(w.hub.grpc_endpoint()).await?;
    let refused =
        grpc.watch_case(WatchCaseRequest { tracking_number: w.tn.clone(), pin: other_pin(&w.pin) }).await;
    ensure!(
        matches!(&refused, Err(s) if s.code() == tonic::Code::NotFound),
        "a watch with a wrong PIN must be refused: {:?}",
        refused.as_ref().err()
    );
    let mut stream = grpc
        .watch_case(WatchCaseRequest { tracking_number: w.tn.clone(), pin: w.pin.clone() })
        .await
        .context("WatchCase")?
        .into_inner();
    let first = tokio::time::timeout(CATCH_UP_DEADLINE, stream.message()).await??.context("stream ended")?;
    ensure!(first.applications[0].state == ApplicationState::DocumentsRequired as i32, "{first:?}");

    // When: the citizen brings the documents and Dukcapil records it.
    let kk = w.kk.clone();
    let tn = w.tn.clone();
    w.client
        .terima_kelengkapan(dk::BerkasDilengkapi {
            langkah: Some(langkah(&tn, &kk)),
            dokumen: vec!["akta nikah".to_owned(), "surat keterangan pindah".to_owned()],
        })
        .await
        .context("TerimaKelengkapan")?;
    w.published += 1;

    // Then: the open watch delivers the new state.
    let next = tokio::time::timeout(CATCH_UP_DEADLINE, stream.message())
        .await
        .context("no update on the watch stream")??
        .context("the watch stream ended")?;
    ensure!(next.applications[0].state == ApplicationState::Submitted as i32, "after documents: {next:?}");
    ensure!(next.last_seq > first.last_seq, "{} then {}", first.last_seq, next.last_seq);
    w.caught_up().await?;
    drop(stream);
    w.dukcapil.terminate().await?;
    w.hub.terminate().await?;
    Ok(())
}
