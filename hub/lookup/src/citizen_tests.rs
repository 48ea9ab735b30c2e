//! In-process tests of the citizen surfaces (JSON API, tracking page, gRPC
//! lookups and watches) over a real sled store filled through the ledger:
//! PIN checks, the identical answer for unknown case and wrong PIN, rate
//! limits and lockouts on an injected clock, hostile input, escaping, access
//! events and live updates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use mpp_core::calendar::CalendarSet;
use mpp_core::pin::{pin_verifier, Pin, PinPepper};
use mpp_core::{EventBody, RegionCode, TrackingNumber, UncheckedEnvelope};
use mpp_proto::v1 as pb;
use mpp_proto::v1::cases_service_server::CasesService;
use mpp_store::SledStore;
use prost::Message as _;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::access::AccessLog;
use crate::grpc::Cases;
use crate::http::{router, AppState};
use crate::lookup::Lookups;
use crate::page::{Web, WebSettings};
use crate::proxy::ClientAddrPolicy;
use crate::ratelimit::LookupLimits;
use crate::watch::CaseChanges;
use mpp_ledger::ledger::{Ledger, RawMessage};
use mpp_wire as wire;

/// Time of record of the first message: 2025-06-16 (a Monday) 02:00 UTC.
const T0_MS: i64 = 1_750_039_200_000;
const PIN: &str = "042137";
const WRONG_PIN: &str = "042138";
const PEPPER: &[u8] = b"citizen-tests-pepper-0123456789";

fn tn(serial: u64) -> TrackingNumber {
    TrackingNumber::new(RegionCode::parse("1771").unwrap(), serial).unwrap()
}

fn event_id(n: u64) -> String {
    let ms = T0_MS as u64 + n;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7{:03x}-{:04x}-{:012x}", &hex[..8], &hex[8..], n & 0xfff, 0x8000 | (n & 0x3fff), n)
}

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger<SledStore>,
    next_seq: u64,
    app: Router,
    lookups: Lookups,
    changes: CaseChanges,
    mono: Arc<AtomicU64>,
    health: Arc<mpp_obs::health::Health>,
    _stop: watch::Sender<bool>,
}

impl Fixture {
    fn new(limits: LookupLimits) -> Self {
        Self::new_at(limits, T0_MS + 3_600_000)
    }

    /// A fixture whose wall clock stands at `now_ms`.
    fn new_at(limits: LookupLimits, now_ms: i64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let ledger = Ledger::open(store.clone()).unwrap();
        let mono = Arc::new(AtomicU64::new(0));
        let m = mono.clone();
        // The wall clock moves with the monotonic one (the guessing
        // budgets, shared across replicas, run on the wall clock).
        let wall = mono.clone();
        let access = AccessLog::open(&dir.path().join("access")).unwrap();
        let health = Arc::new(mpp_ledger::observe::health(&ledger.head()));
        let lookups = Lookups::new(
            store,
            Arc::new(CalendarSet::new()),
            Arc::new(move || now_ms + wall.load(Ordering::SeqCst) as i64),
            PinPepper::from_bytes(PEPPER).unwrap(),
            limits,
        )
        .with_access_log(access)
        .with_metrics(health.metrics().clone())
        .with_mono_clock(Arc::new(move || m.load(Ordering::SeqCst)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let changes = CaseChanges::new(stop_rx);
        let web = Arc::new(Web::new(changes.clone(), WebSettings::default()).unwrap());
        let app = router(AppState { lookups: lookups.clone(), health: health.clone(), web });
        Self { _dir: dir, ledger, next_seq: 1, app, lookups, changes, mono, health, _stop: stop_tx }
    }

    /// Counts guesses under `budgets` (in memory) and asks proofs of work
    /// of `bits` with a `delay_ms` wait, from now on.
    fn set_budgets(&mut self, budgets: crate::guard::GuessBudgets, bits: u8, delay_ms: i64) {
        use crate::guard::{GuardSettings, SharedGuard};
        let guard = SharedGuard::in_memory(&self.lookups.guard_secret(), GuardSettings::in_memory(budgets));
        let sessions = Arc::new(crate::session::Sessions::with_key(&[3; 32]));
        let pow = Arc::new(crate::pow::ProofOfWork::new(sessions, bits, delay_ms));
        self.lookups = self.lookups.clone().with_guard(guard).with_pow(pow);
        self.set_web_settings(WebSettings::default());
    }

    /// Serves the page and API with `settings` from now on.
    fn set_web_settings(&mut self, settings: WebSettings) {
        let web = Arc::new(Web::new(self.changes.clone(), settings).unwrap());
        self.app = router(AppState { lookups: self.lookups.clone(), health: self.health.clone(), web });
    }

    fn advance_ms(&self, ms: u64) {
        self.mono.fetch_add(ms, Ordering::SeqCst);
    }

    /// Commits events (agency, service, case, application, body) and
    /// announces the touched cases, as ingest does.
    fn commit(&mut self, events: &[(&str, &str, Option<TrackingNumber>, &str, EventBody)]) {
        let mut raws = Vec::new();
        for (agency, service, case, app, body) in events {
            let seq = self.next_seq;
            self.next_seq += 1;
            let u = UncheckedEnvelope {
                schema_version: 1,
                event_id: event_id(seq),
                case_id: case.map(|c| c.to_string()).unwrap_or_default(),
                region_code: "1771".to_owned(),
                agency_id: (*agency).to_owned(),
                service_id: (*service).to_owned(),
                application_id: (*app).to_owned(),
                occurred_at_ms: T0_MS,
                officer: "petugas-7".to_owned(),
                body: Some(body.clone()),
            };
            raws.push(RawMessage {
                stream_seq: seq,
                stream_time_ns: (T0_MS + seq as i64 * 1000) * 1_000_000,
                subject: format!("mpp.events.{agency}.{service}"),
                payload: Bytes::from(wire::from_unchecked(&u).encode_to_vec()),
                redrive: None,
            });
        }
        let outcome = self.ledger.commit_batch(&raws).unwrap();
        assert_eq!(outcome.rejected, 0, "fixture events must be accepted: {outcome:?}");
        self.changes.publish(&outcome.touched_cases);
    }

    /// Standards of two agencies and one case with an application at each:
    /// Dukcapil waits on documents (one named with markup), DPMPTSP on a fee.
    fn with_multi_agency_case(limits: LookupLimits) -> (Self, TrackingNumber) {
        let mut f = Self::new(limits);
        let case = tn(4242);
        let verifier =
            pin_verifier(&PinPepper::from_bytes(PEPPER).unwrap(), &case, &Pin::parse(PIN).unwrap()).to_vec();
        let standard = |name_id: &str, name_en: &str| EventBody::ServiceStandardPublished {
            name_id: name_id.to_owned(),
            name_en: name_en.to_owned(),
            completion_working_days: 5,
            fee_idr: 0,
            requirements: vec![],
            fiktif_positif: false,
            version: 1,
            collection: None,
        };
        f.commit(&[
            ("dukcapil", "kk", None, "", standard("Kartu Keluarga", "Family card")),
            ("dpmptsp", "pbg", None, "", standard("Persetujuan Bangunan Gedung", "Building approval")),
            (
                "dukcapil",
                "kk",
                Some(case),
                "",
                EventBody::CaseOpened { pin_verifier: verifier, nik_keyed_hash: vec![0xAB; 32] },
            ),
            ("dukcapil", "kk", Some(case), "KK-1", EventBody::ApplicationFiled { documents: vec![] }),
            (
                "dukcapil",
                "kk",
                Some(case),
                "KK-1",
                EventBody::DocumentsRequested {
                    documents: vec!["akta nikah".to_owned(), "<script>alert(1)</script>".to_owned()],
                    counter: "Loket 3 Disdukcapil".to_owned(),
                    note: String::new(),
                },
            ),
            ("dpmptsp", "pbg", Some(case), "PBG-1", EventBody::ApplicationFiled { documents: vec![] }),
            ("dpmptsp", "pbg", Some(case), "PBG-1", EventBody::ReviewStarted),
            (
                "dpmptsp",
                "pbg",
                Some(case),
                "PBG-1",
                EventBody::FeeAssessed {
                    amount_idr: 1_250_000,
                    payment_channel: "Bank Bengkulu".to_owned(),
                    billing_code: "820001234567".to_owned(),
                    due_at_ms: 0,
                },
            ),
        ]);
        (f, case)
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        self.send_from(req, Ipv4Addr::new(198, 51, 100, 7)).await
    }

    async fn send_from(
        &self,
        mut req: Request<Body>,
        ip: Ipv4Addr,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(IpAddr::V4(ip), 40_000)));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn api(&self, tracking: &str, pin: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut b = Request::get(format!("/api/v1/cases/{tracking}"));
        if let Some(p) = pin {
            b = b.header("x-mpp-pin", p);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, body: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let req = Request::post("/lacak")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(req).await
    }
}

fn generous() -> LookupLimits {
    LookupLimits { per_minute: 1_000_000, burst: 1_000_000 }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn code(body: &str) -> String {
    json(body).pointer("/error/code").and_then(|c| c.as_str()).unwrap_or("").to_owned()
}

#[tokio::test]
async fn the_json_api_needs_the_right_pin_and_answers_unknown_and_wrong_alike() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let (status, _, body) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    assert_eq!(v["status"], "action_needed");
    assert_eq!(v["status_label"], "Perlu tindakan Anda");
    let states: Vec<_> = v["applications"].as_array().unwrap().iter().map(|a| a["state"].clone()).collect();
    assert_eq!(states, ["documents_required", "awaiting_payment"]);
    assert_eq!(v["applications"][1]["service_name_en"], "Building approval");
    assert_eq!(v["next_actions"][1]["amount_idr"], 1_250_000);
    assert!(
        !body.contains("abababab") && !body.contains("ABABABAB"),
        "the NIK hash must never be served: {body}"
    );
    assert!(!body.contains("pin_verifier") && !body.contains("nik_keyed_hash"), "{body}");

    let wrong = f.api(&case.to_string(), Some(WRONG_PIN)).await;
    let unknown = f.api(&tn(99_999).to_string(), Some(PIN)).await;
    assert_eq!(wrong.0, StatusCode::NOT_FOUND);
    assert_eq!((wrong.0, &wrong.2), (unknown.0, &unknown.2), "unknown case and wrong PIN must be identical");
    assert_eq!(wrong.1.get(header::CONTENT_LENGTH), unknown.1.get(header::CONTENT_LENGTH));
    assert_eq!(code(&wrong.2), "CASE_NOT_FOUND");

    for (tracking, pin, want_status, want_code) in [
        (case.to_string(), None, 400, "PIN_REQUIRED"),
        (case.to_string(), Some(""), 400, "PIN_REQUIRED"),
        (case.to_string(), Some("12ab56"), 400, "MALFORMED_PIN"),
        ("1771-0000012345-8".to_owned(), Some(PIN), 400, "BAD_CHECK_DIGIT"),
        ("1771-12".to_owned(), Some(PIN), 400, "MALFORMED_TRACKING_NUMBER"),
        ("9".repeat(100), Some(PIN), 400, "FIELD_TOO_LONG"),
        ("%E2%80%AE1771".to_owned(), Some(PIN), 400, "MALFORMED_TRACKING_NUMBER"),
        ("%FF%FE".to_owned(), Some(PIN), 400, "MALFORMED_TRACKING_NUMBER"),
    ] {
        let (status, _, body) = f.api(&tracking, pin).await;
        assert_eq!(
            (status.as_u16(), code(&body).as_str()),
            (want_status, want_code),
            "{tracking} {pin:?}: {body}"
        );
    }
}

#[tokio::test]
async fn lookups_are_rate_limited_per_client_with_retry_after() {
    let (f, case) = Fixture::with_multi_agency_case(LookupLimits::DEFAULT);
    for i in 0..20 {
        let (status, _, body) = f.api(&case.to_string(), Some(PIN)).await;
        assert_eq!(status, StatusCode::OK, "lookup {i}: {body}");
    }
    let (status, headers, body) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "RATE_LIMITED");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    // Another address is not limited; the first gets a token a second.
    let req =
        Request::get(format!("/api/v1/cases/{case}")).header("x-mpp-pin", PIN).body(Body::empty()).unwrap();
    assert_eq!(f.send_from(req, Ipv4Addr::new(203, 0, 113, 1)).await.0, StatusCode::OK);
    f.advance_ms(1_000);
    assert_eq!(f.api(&case.to_string(), Some(PIN)).await.0, StatusCode::OK);
    assert_eq!(f.api(&case.to_string(), Some(PIN)).await.0, StatusCode::TOO_MANY_REQUESTS);
}

/// One lookup a minute per client, so a second lookup tells whether two
/// requests counted as the same client.
fn one_per_client() -> LookupLimits {
    LookupLimits { per_minute: 1, burst: 1 }
}

fn trusted_xff(cidrs: &str) -> ClientAddrPolicy {
    ClientAddrPolicy::TrustedProxies {
        proxies: cidrs.parse().unwrap(),
        header: crate::proxy::ForwardedHeader::XForwardedFor,
    }
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies_over_http() {
    let (mut f, case) = Fixture::with_multi_agency_case(one_per_client());
    f.set_web_settings(WebSettings {
        client_addr: trusted_xff("10.0.0.0/8, fd00::/8"),
        ..WebSettings::default()
    });
    async fn forwarded(f: &Fixture, case: TrackingNumber, from: Ipv4Addr, xff: &str) -> StatusCode {
        let req = Request::get(format!("/api/v1/cases/{case}"))
            .header("x-mpp-pin", PIN)
            .header("x-forwarded-for", xff)
            .body(Body::empty())
            .unwrap();
        f.send_from(req, from).await.0
    }
    // An untrusted peer: its header is ignored, so a new "address" does not
    // buy it a new bucket.
    assert_eq!(forwarded(&f, case, Ipv4Addr::new(203, 0, 113, 1), "198.51.100.50").await, StatusCode::OK);
    assert_eq!(
        forwarded(&f, case, Ipv4Addr::new(203, 0, 113, 1), "198.51.100.51").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A trusted proxy names the client; what the client wrote left of it is ignored.
    let proxy = Ipv4Addr::new(10, 0, 0, 5);
    assert_eq!(forwarded(&f, case, proxy, "198.51.100.60").await, StatusCode::OK);
    assert_eq!(forwarded(&f, case, proxy, "6.6.6.6, 198.51.100.60").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        forwarded(&f, case, proxy, "198.51.100.61").await,
        StatusCode::OK,
        "another client behind the proxy"
    );
    // A chain of trusted proxies (an edge proxy, then an ingress).
    assert_eq!(forwarded(&f, case, proxy, "198.51.100.62, 10.9.9.9").await, StatusCode::OK);
    assert_eq!(
        forwarded(&f, case, Ipv4Addr::new(10, 0, 0, 6), "7.7.7.7, 198.51.100.62, 10.1.1.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // IPv6 clients behind the proxy (counted per /64).
    assert_eq!(forwarded(&f, case, proxy, "2001:db8:1:2::1, fd00::7").await, StatusCode::OK);
    assert_eq!(forwarded(&f, case, proxy, "[2001:db8:1:2::99]:4711").await, StatusCode::TOO_MANY_REQUESTS);
    // Without --trusted-proxies, the header is ignored even from 10.0.0.5.
    f.set_web_settings(WebSettings::default());
    assert_eq!(forwarded(&f, case, proxy, "198.51.100.70").await, StatusCode::OK);
    assert_eq!(forwarded(&f, case, proxy, "198.51.100.71").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn grpc_has_its_own_trusted_proxies() {
    let (f, case) = Fixture::with_multi_agency_case(one_per_client());
    let get = |cases: &Cases, from: &str, xff: &str| {
        let mut req = tonic::Request::new(pb::GetCaseRequest {
            tracking_number: case.to_string(),
            pin: PIN.to_owned(),
            ..Default::default()
        });
        req.extensions_mut().insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(SocketAddr::new(from.parse().unwrap(), 40_000)),
        });
        req.metadata_mut().insert("x-forwarded-for", xff.parse().unwrap());
        let cases = cases.clone();
        async move { cases.get_case(req).await.map(|_| ()).map_err(|e| e.code()) }
    };
    let limited = Err(tonic::Code::ResourceExhausted);
    // The gRPC list: an IPv6 load balancer. The HTTP settings do not apply here.
    let cases = Cases::new(f.lookups.clone(), f.changes.clone(), trusted_xff("fd00::/8"));
    assert_eq!(get(&cases, "fd00::5", "203.0.113.20").await, Ok(()));
    assert_eq!(get(&cases, "fd00::6", "1.2.3.4, 203.0.113.20").await, limited);
    assert_eq!(get(&cases, "fd00::5", "203.0.113.21").await, Ok(()));
    // Spoofed from outside the list (an IPv4 peer, or an IPv6 one elsewhere).
    assert_eq!(get(&cases, "10.0.0.5", "203.0.113.30").await, Ok(()));
    assert_eq!(get(&cases, "10.0.0.5", "203.0.113.31").await, limited);
    assert_eq!(get(&cases, "2001:db8:5::1", "203.0.113.32").await, Ok(()));
    assert_eq!(get(&cases, "2001:db8:5::2", "203.0.113.33").await, limited, "same /64");
    // Without a list, gRPC ignores the metadata.
    let plain = Cases::new(f.lookups.clone(), f.changes.clone(), ClientAddrPolicy::Peer);
    assert_eq!(get(&plain, "fd00::9", "203.0.113.40").await, Ok(()));
    assert_eq!(get(&plain, "fd00::9", "203.0.113.41").await, limited);
}

#[tokio::test]
async fn five_wrong_pins_lock_known_and_unknown_numbers_alike_for_fifteen_minutes() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let unknown = tn(99_999);
    let mut answers = Vec::new();
    for target in [case, unknown] {
        for i in 0..5 {
            let (status, _, body) = f.api(&target.to_string(), Some(WRONG_PIN)).await;
            assert_eq!((status, code(&body).as_str()), (StatusCode::NOT_FOUND, "CASE_NOT_FOUND"), "try {i}");
        }
        // Locked now, even with the right PIN.
        let (status, headers, body) = f.api(&target.to_string(), Some(PIN)).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "LOOKUP_LOCKED"),
            "{body}"
        );
        assert_eq!(headers.get("retry-after").unwrap(), "900");
        answers.push((status, body));
    }
    assert_eq!(answers[0], answers[1], "a lockout must not tell known from unknown numbers");
    f.advance_ms(15 * 60 * 1000);
    assert_eq!(f.api(&case.to_string(), Some(PIN)).await.0, StatusCode::OK, "the lock ends");
}

#[tokio::test]
async fn a_long_timeline_is_paged_newest_first_on_json_the_page_and_grpc() {
    let (mut f, case) = Fixture::with_multi_agency_case(generous());
    // KK-1 waits on documents: 60 more events, received and asked for again.
    let docs = || vec!["akta nikah".to_owned()];
    let events: Vec<_> = (0..60)
        .map(|i| {
            let body = if i % 2 == 0 {
                EventBody::DocumentsReceived { documents: docs() }
            } else {
                EventBody::DocumentsRequested {
                    documents: docs(),
                    counter: "Loket 3".to_owned(),
                    note: String::new(),
                }
            };
            ("dukcapil", "kk", Some(case), "KK-1", body)
        })
        .collect();
    f.commit(&events);
    let page_items = crate::lookup::TIMELINE_PAGE_ITEMS_MAX;
    let items = |v: &serde_json::Value| -> Vec<u64> {
        let mut seqs: Vec<u64> = v["applications"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| a["timeline"].as_array().unwrap().iter().map(|t| t["seq"].as_u64().unwrap()))
            .collect();
        seqs.sort_unstable();
        seqs
    };

    // JSON: the newest page, then the older one by its cursor.
    let (status, _, body) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = json(&body);
    let total = first["timeline_items_total"].as_u64().unwrap() as usize;
    assert_eq!(total, 5 + 60, "{body}");
    let newest = items(&first);
    assert_eq!(newest.len(), page_items);
    let cursor = first["timeline_next_before_seq"].as_u64().unwrap();
    assert_eq!(cursor, newest[0], "the next page starts below this page's oldest item");
    assert_eq!(first["status"], "action_needed", "the status reads the whole case");
    let req = Request::get(format!("/api/v1/cases/{case}?timeline_before_seq={cursor}"))
        .header("x-mpp-pin", PIN)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = json(&body);
    let older = items(&second);
    assert_eq!(older.len(), total - page_items);
    assert!(older.iter().all(|s| *s < cursor));
    assert!(second["timeline_next_before_seq"].is_null(), "{body}");
    let req = Request::get(format!("/api/v1/cases/{case}?timeline_before_seq=x"))
        .header("x-mpp-pin", PIN)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));

    // The page: the newest page with a note and a link to the older one.
    let (status, headers, page) = f.post_form(&format!("nomor={case}&pin={PIN}&lang=en")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&format!("Newest history shown: {page_items} of {total}")), "{page}");
    // As the template escapes it in the attribute.
    let older_href = format!("&#x2f;lacak&#x2f;{case}?lang=en&amp;timeline_before_seq={cursor}");
    assert!(page.contains(&older_href), "no link to {older_href}:\n{page}");
    let session =
        headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let req = Request::get(format!("/lacak/{case}?lang=en&timeline_before_seq={cursor}"))
        .header(header::COOKIE, &session)
        .body(Body::empty());
    let (status, _, older_page) = f.send(req.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(older_page.contains(&format!("Newest history shown: {} of {total}", total - page_items)));
    assert!(!older_page.contains("timeline_before_seq="), "the oldest page links no further");

    // gRPC: the same page and cursor.
    let cases = Cases::new(f.lookups.clone(), f.changes.clone(), ClientAddrPolicy::Peer);
    let get = |before: u64| pb::GetCaseRequest {
        tracking_number: case.to_string(),
        pin: PIN.to_owned(),
        timeline_before_seq: before,
    };
    let view = cases.get_case(tonic::Request::new(get(0))).await.unwrap().into_inner();
    let shown: usize = view.applications.iter().map(|a| a.timeline.len()).sum();
    assert_eq!(
        (shown, view.timeline_items_total as usize, view.timeline_next_before_seq),
        (page_items, total, cursor)
    );
    let view = cases.get_case(tonic::Request::new(get(cursor))).await.unwrap().into_inner();
    let shown: usize = view.applications.iter().map(|a| a.timeline.len()).sum();
    assert_eq!((shown, view.timeline_next_before_seq), (total - page_items, 0));
}

#[tokio::test]
async fn the_page_shows_a_multi_agency_case_in_both_languages() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let (status, headers, form) = f.send(Request::get("/lacak").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        form.contains("<html lang=\"id\">") && form.contains("<label for=\"nomor\">Nomor berkas</label>")
    );
    assert!(headers.get(header::CONTENT_SECURITY_POLICY).is_some());
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");

    let (status, headers, page) = f.post_form(&format!("nomor={case}&pin={PIN}&lang=id")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for want in [
        "Perlu tindakan Anda",
        "Perlu Kelengkapan",
        "Menunggu Pembayaran",
        "Kartu Keluarga (Disdukcapil)",
        "Persetujuan Bangunan Gedung (DPMPTSP)",
        "Loket 3 Disdukcapil",
        "Rp 1.250.000",
        "Bank Bengkulu",
        "Anda (warga)",
        "&lt;script&gt;alert(1)&lt;",
    ] {
        assert!(page.contains(want), "case page lacks {want:?}:\n{page}");
    }
    assert!(!page.contains("<script>alert"), "markup from events must be escaped");
    assert!(!page.contains(PIN), "the PIN must never be shown");
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    // The English switch keeps the session: no PIN again.
    let req =
        Request::get(format!("/lacak/{case}?lang=en")).header(header::COOKIE, &session).body(Body::empty());
    let (status, _, en) = f.send(req.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for want in [
        "<html lang=\"en\">",
        "Action needed from you",
        "Documents required",
        "Awaiting payment",
        "Family card",
    ] {
        assert!(en.contains(want), "English page lacks {want:?}:\n{en}");
    }
    // Without the session the same address asks for the PIN, tracking number filled in.
    let (status, _, ask) = f.send(Request::get(format!("/lacak/{case}")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ask.contains(&format!("value=\"{case}\"")) && ask.contains("Masukkan PIN"), "{ask}");
    assert!(!ask.contains("Menunggu Pembayaran"));
}

#[tokio::test]
async fn wrong_pin_and_unknown_case_get_the_same_page_and_bad_input_a_clear_message() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let wrong = f.post_form(&format!("nomor={case}&pin={WRONG_PIN}")).await;
    let unknown_tn = tn(99_999);
    // The unknown number typed exactly as long as the known one, so the echo matches byte for byte.
    let unknown = f.post_form(&format!("nomor={unknown_tn}&pin={WRONG_PIN}")).await;
    assert_eq!(wrong.0, StatusCode::NOT_FOUND);
    assert!(wrong.2.contains("Nomor berkas atau PIN tidak cocok"), "{}", wrong.2);
    assert_eq!(
        (wrong.0, wrong.2.replace(&case.to_string(), "N")),
        (unknown.0, unknown.2.replace(&unknown_tn.to_string(), "N")),
        "the pages differ only in the number typed"
    );
    let long = "1".repeat(5000);
    for (body, want) in [
        ("nomor=1771-0000012345-8&pin=042137".to_owned(), "angka terakhirnya tidak cocok"),
        ("nomor=1771-12&pin=042137".to_owned(), "terdiri dari 15 angka"),
        (format!("nomor={case}"), "Masukkan PIN yang tercetak"),
        (format!("nomor={case}&pin=12"), "PIN terdiri dari 9 huruf dan angka"),
        (format!("nomor={long}&pin=042137"), "Isian terlalu panjang"),
        ("nomor=%3Cb%3Ex%3C%2Fb%3E%00&pin=1".to_owned(), "terdiri dari 15 angka"),
        ("%%%&&&=&nomor".to_owned(), "terdiri dari 15 angka"),
        (format!("nomor={case}&pin={PIN}&lang=en&lang=id"), "Formulir tidak dapat dibaca"),
        (format!("nomor={}&pin=1", "x".repeat(20_000)), "Formulir tidak dapat dibaca"),
    ] {
        let (status, headers, page) = f.post_form(&body).await;
        assert!(status.is_client_error(), "{status} for {}", &body[..body.len().min(80)]);
        assert!(page.contains(want), "{}: page lacks {want:?}:\n{page}", &body[..body.len().min(80)]);
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/html; charset=utf-8");
        assert!(!page.contains("<b>x"), "typed markup must be escaped");
    }
    // Hostile query strings and paths: a page, never an error trace.
    for path in [
        "/lacak?lang=%ZZ&&&==",
        "/lacak/%FF%FE",
        "/lacak/%3Cscript%3E",
        "/lacak/x/y/z",
        "/lacak/1771-12/tanda-terima",
    ] {
        let (status, headers, page) = f.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert!(status.as_u16() < 500, "{path}: {status}");
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/html; charset=utf-8", "{path}");
        assert!(page.contains("<html lang="), "{path}: {page}");
        assert!(!page.contains("<script>"), "{path}");
    }
}

#[tokio::test]
async fn the_receipt_has_a_qr_code_of_the_case_page_and_no_pin() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let req = Request::get(format!("/lacak/{case}/tanda-terima")).header(header::HOST, "mpp.example:8080");
    let (status, _, page) = f.send(req.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<svg") && page.contains("role=\"img\""), "{page}");
    assert!(page.replace("&#x2f;", "/").contains(&format!("http://mpp.example:8080/lacak/{case}")), "{page}");
    assert!(!page.contains(PIN));
    // A receipt exists for any well-formed number: it tells nothing about cases.
    let (status, _, _) = f
        .send(Request::get(format!("/lacak/{}/tanda-terima", tn(99_999))).body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_receipt_s_proof_is_only_for_the_holder_of_the_case_s_session() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let get = |path: String| Request::get(path).body(Body::empty()).unwrap();
    // Without the session: no proof, and the receipt page offers none.
    let (status, headers, body) = f.send(get(format!("/lacak/{case}/bukti"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"]["code"], "PIN_REQUIRED", "{body}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let (_, _, page) = f.send(get(format!("/lacak/{case}/tanda-terima"))).await;
    assert!(!page.contains("id=\"periksa\"") && !page.contains("periksa.js"), "{page}");
    // A malformed number is answered with its reason code.
    let (status, _, body) = f.send(get("/lacak/1771-12/bukti".to_owned())).await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(json(&body)["error"]["code"], "MALFORMED_TRACKING_NUMBER", "{body}");
    // The script is served like the page's others.
    let (status, headers, script) = f.send(get("/lacak/periksa.js".to_owned())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/javascript; charset=utf-8");
    assert!(script.contains("crypto.subtle.verify({ name: \"Ed25519\" }"), "{script}");
}

#[tokio::test]
async fn successful_lookups_are_access_events_the_citizen_sees() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let _ = f.api(&case.to_string(), Some(WRONG_PIN)).await;
    let (_, _, first) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!(json(&first)["access_events"].as_array().unwrap().len(), 1, "failed lookups are not accesses");
    f.lookups.access_log().unwrap().settle().await;
    let (_, _, second) = f.api(&case.to_string(), Some(PIN)).await;
    let events = json(&second)["access_events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert_eq!(events[0]["accessor"], "citizen");
    assert_eq!(events[0]["channel"], "api");
}

#[tokio::test]
async fn grpc_lookups_need_the_pin_and_a_watch_sees_the_next_change() {
    let (mut f, case) = Fixture::with_multi_agency_case(generous());
    let cases = Cases::new(f.lookups.clone(), f.changes.clone(), ClientAddrPolicy::Peer);
    let get = |pin: &str| pb::GetCaseRequest {
        tracking_number: case.to_string(),
        pin: pin.to_owned(),
        ..Default::default()
    };
    let view = cases.get_case(tonic::Request::new(get(PIN))).await.unwrap().into_inner();
    assert_eq!(view.applications.len(), 2);
    assert_eq!(view.applications[0].service_name_id, "Kartu Keluarga");
    assert_eq!(view.access_events.first().map(|e| e.accessor.as_str()), Some("citizen"));
    let wrong = cases.get_case(tonic::Request::new(get(WRONG_PIN))).await.unwrap_err();
    let unknown = cases
        .get_case(tonic::Request::new(pb::GetCaseRequest {
            tracking_number: tn(99_999).to_string(),
            pin: PIN.to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!((wrong.code(), wrong.message()), (unknown.code(), unknown.message()));
    assert_eq!(wrong.code(), tonic::Code::NotFound);
    let missing = cases.get_case(tonic::Request::new(get(""))).await.unwrap_err();
    assert_eq!(missing.metadata().get("mpp-reason-code").unwrap(), "PIN_REQUIRED");

    let watch = pb::WatchCaseRequest { tracking_number: case.to_string(), pin: PIN.to_owned() };
    let mut stream = cases.watch_case(tonic::Request::new(watch)).await.unwrap().into_inner();
    use futures::StreamExt as _;
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.applications[1].state, pb::ApplicationState::AwaitingPayment as i32);
    f.commit(&[(
        "dpmptsp",
        "pbg",
        Some(case),
        "PBG-1",
        EventBody::PaymentReceived { amount_idr: 1_250_000, payment_reference: "NTPN-1".to_owned() },
    )]);
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the watch must see the change")
        .unwrap()
        .unwrap();
    assert_eq!(next.applications[1].state, pb::ApplicationState::Paid as i32);
    assert!(next.last_seq > first.last_seq);
    assert_eq!(f.changes.watchers(), 1);
    // A client that goes away frees its watch at once, not at the next change.
    drop(stream);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.changes.watchers() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the watch was not freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_overdue_case_says_terlambat_with_a_mark_in_both_languages() {
    // Thirty days after filing, a 5-working-day standard is long past.
    let mut f = Fixture::new_at(generous(), T0_MS + 30 * 86_400_000);
    let case = tn(777);
    let verifier =
        pin_verifier(&PinPepper::from_bytes(PEPPER).unwrap(), &case, &Pin::parse(PIN).unwrap()).to_vec();
    f.commit(&[
        (
            "pdam",
            "sambungan",
            None,
            "",
            EventBody::ServiceStandardPublished {
                name_id: "Sambungan baru".to_owned(),
                name_en: "New connection".to_owned(),
                completion_working_days: 5,
                fee_idr: 0,
                requirements: vec![],
                fiktif_positif: false,
                version: 1,
                collection: None,
            },
        ),
        (
            "pdam",
            "sambungan",
            Some(case),
            "",
            EventBody::CaseOpened { pin_verifier: verifier, nik_keyed_hash: vec![] },
        ),
        ("pdam", "sambungan", Some(case), "SB-1", EventBody::ApplicationFiled { documents: vec![] }),
        ("pdam", "sambungan", Some(case), "SB-1", EventBody::ReviewStarted),
    ]);
    let (_, _, body) = f.api(&case.to_string(), Some(PIN)).await;
    let v = json(&body);
    assert_eq!(v["status"], "overdue", "{body}");
    assert_eq!(v["applications"][0]["sla"]["overdue"], true);
    let (status, headers, page) = f.post_form(&format!("nomor={case}&pin={PIN}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Terlambat") && page.contains("TERLAMBAT") && page.contains("hari kerja terlambat"),
        "{page}"
    );
    let session =
        headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let req =
        Request::get(format!("/lacak/{case}?lang=en")).header(header::COOKIE, session).body(Body::empty());
    let (_, _, en) = f.send(req.unwrap()).await;
    assert!(en.contains("Overdue") && en.contains("OVERDUE") && en.contains("working days late"), "{en}");

    // The metrics count the lookups above by channel and outcome, and the
    // SLA scan finds the overdue application.
    let (_, _, _) = f.api(&case.to_string(), Some(WRONG_PIN)).await;
    let scan = crate::sla_gauge::scan_sla_overdue(
        f.lookups.store(),
        f.lookups.calendars(),
        f.lookups.now_ms(),
        crate::sla_gauge::SLA_SCAN_CASES_MAX,
    )
    .unwrap();
    assert_eq!((scan.overdue_applications, scan.cases, scan.truncated), (1, 1, false));
    let bounded =
        crate::sla_gauge::scan_sla_overdue(f.lookups.store(), f.lookups.calendars(), f.lookups.now_ms(), 0)
            .unwrap();
    assert!(bounded.truncated, "a store with more cases than the bound is not counted");
    let (status, headers, text) = f.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], mpp_obs::metrics::METRICS_CONTENT_TYPE);
    for line in [
        "mpp_hub_lookups_total{channel=\"http\",outcome=\"found\"} 1\n",
        "mpp_hub_lookups_total{channel=\"http\",outcome=\"not_found_or_pin\"} 1\n",
        "mpp_hub_lookups_total{channel=\"page\",outcome=\"found\"} 1\n",
        "mpp_hub_lookup_seconds_count 3\n",
        "mpp_hub_watchers 0\n",
        "mpp_hub_access_events_dropped_total 0\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
}

#[tokio::test]
async fn the_page_and_the_api_show_the_wrong_pins_tried_since_the_last_visit() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    let (_, _, first) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!(json(&first)["failed_lookups"]["count"], 0, "{first}");
    for _ in 0..3 {
        assert_eq!(f.api(&case.to_string(), Some(WRONG_PIN)).await.0, StatusCode::NOT_FOUND);
    }
    let (status, _, page) = f.post_form(&format!("nomor={case}&pin={PIN}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"pin-salah\" data-count=\"3\""), "{page}");
    assert!(page.contains("PIN salah dicoba sejak kunjungan terakhir Anda: <strong>3</strong>"), "{page}");
    // Seen once, then cleared.
    let (_, _, again) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!(json(&again)["failed_lookups"]["count"], 0, "{again}");
    assert!(json(&again)["failed_lookups"].get("last_at_ms").is_none());
}

#[tokio::test]
async fn past_the_global_budget_lookups_need_a_proof_of_work_or_the_wait() {
    let (mut f, case) = Fixture::with_multi_agency_case(generous());
    let budgets = crate::guard::GuessBudgets { global_max: 3, ..crate::guard::GuessBudgets::DEFAULT };
    f.set_budgets(budgets, 6, 15_000);
    let (_, _, form) = f.send(Request::get("/lacak").body(Body::empty()).unwrap()).await;
    assert!(!form.contains("data-challenge"), "no proof asked yet");
    for serial in 0..3 {
        assert_eq!(f.api(&tn(70_000 + serial).to_string(), Some(PIN)).await.0, StatusCode::NOT_FOUND);
    }
    // The API: 429 with the challenge; a solved one opens the case.
    let (status, headers, body) = f.api(&case.to_string(), Some(PIN)).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::TOO_MANY_REQUESTS, "PROOF_OF_WORK_REQUIRED"));
    let challenge = headers.get("x-mpp-pow-challenge").unwrap().to_str().unwrap().to_owned();
    assert_eq!(json(&body)["error"]["challenge"], challenge.as_str());
    assert_eq!(headers.get("x-mpp-pow-difficulty").unwrap(), "6");
    let proof = crate::pow::solve(&challenge, &case.digits(), 6, 1 << 20).unwrap();
    let req = Request::get(format!("/api/v1/cases/{case}"))
        .header("x-mpp-pin", PIN)
        .header("x-mpp-pow", proof.as_str())
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(req).await.0, StatusCode::OK);
    // The page: the form carries the challenge (for its script) and a delay
    // token, which is good only after the wait.
    let (_, _, form) = f.send(Request::get("/lacak").body(Body::empty()).unwrap()).await;
    assert!(form.contains("data-challenge=\"c1.") && form.contains("src=\"/lacak/pow.js\""), "{form}");
    let token = form.split("name=\"bukti\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(token.starts_with("d1."), "{token}");
    assert!(form.contains("id=\"bukti-tunggu\">15<"), "the wait is shown");
    let post = format!("nomor={case}&pin={PIN}&bukti={token}");
    let (status, _, early) = f.post_form(&post).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        early.contains("pemeriksaan keamanan") && early.contains(&token),
        "the same token comes back: {early}"
    );
    f.advance_ms(15_000);
    let (status, _, page) = f.post_form(&post).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, _, _) = f.post_form(&post).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a delay token is good once");
    let (status, headers, _) = f.send(Request::get("/lacak/pow.js").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/javascript; charset=utf-8");
}

#[tokio::test]
async fn case_answers_are_never_cached_and_a_wrong_method_gets_a_json_405() {
    let (f, case) = Fixture::with_multi_agency_case(generous());
    // The case, and an answer about a case (a wrong PIN), both no-store.
    for pin in [PIN, "K7MR2X9QH"] {
        let (_, headers, body) = f.api(&case.to_string(), Some(pin)).await;
        assert_eq!(
            headers.get(header::CACHE_CONTROL).map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{body}"
        );
    }
    let req = Request::delete(format!("/api/v1/cases/{case}")).body(Body::empty()).unwrap();
    let (status, headers, body) = f.send(req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&body), "METHOD_NOT_ALLOWED");
    assert!(headers.get(header::ALLOW).is_some_and(|a| a.to_str().unwrap().contains("GET")), "{headers:?}");
}

// ---------------------------------------------------------------------------
// A page that tells the truth (issue 18 item 4): each state a citizen can
// meet, rendered in both languages, with the text asserted.

/// A standard of `name` taking `days` working days.
fn standard_of(name_id: &str, name_en: &str, days: u32) -> EventBody {
    EventBody::ServiceStandardPublished {
        name_id: name_id.to_owned(),
        name_en: name_en.to_owned(),
        completion_working_days: days,
        fee_idr: 0,
        requirements: vec![],
        fiktif_positif: false,
        version: 1,
        collection: None,
    }
}

impl Fixture {
    /// Opens `case` at `agency` and files application `app` of `service`.
    fn open_and_file(&mut self, agency: &str, service: &str, case: TrackingNumber, app: &str) {
        let verifier =
            pin_verifier(&PinPepper::from_bytes(PEPPER).unwrap(), &case, &Pin::parse(PIN).unwrap()).to_vec();
        self.commit(&[
            (
                agency,
                service,
                Some(case),
                "",
                EventBody::CaseOpened { pin_verifier: verifier, nik_keyed_hash: vec![] },
            ),
            (agency, service, Some(case), app, EventBody::ApplicationFiled { documents: vec![] }),
        ]);
    }

    /// A fixture with DPMPTSP's building approval (PBG) standard of `days`
    /// working days and case `serial` with application PBG-1 filed.
    fn with_pbg_filed(serial: u64, days: u32) -> (Self, TrackingNumber) {
        let mut f = Self::new(generous());
        let case = tn(serial);
        let standard = standard_of("Persetujuan Bangunan Gedung", "Building approval", days);
        f.file_under(standard, "dpmptsp", "pbg", case, "PBG-1");
        (f, case)
    }

    /// The first next action of `case` in the JSON API (`null` if none).
    async fn first_action(&self, case: TrackingNumber) -> serde_json::Value {
        let (_, _, body) = self.api(&case.to_string(), Some(PIN)).await;
        json(&body)["next_actions"][0].clone()
    }

    /// Publishes `standard` for `agency`/`service`, then opens `case` and
    /// files application `app` under it.
    fn file_under(
        &mut self,
        standard: EventBody,
        agency: &str,
        service: &str,
        case: TrackingNumber,
        app: &str,
    ) {
        self.commit(&[(agency, service, None, "", standard)]);
        self.open_and_file(agency, service, case, app);
    }

    /// The case page in Bahasa Indonesia (after the PIN) and in English
    /// (through the session).
    async fn page_in_both_languages(&self, case: TrackingNumber) -> (String, String) {
        let (status, headers, id) = self.post_form(&format!("nomor={case}&pin={PIN}&lang=id")).await;
        assert_eq!(status, StatusCode::OK, "{id}");
        let session =
            headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
        let req = Request::get(format!("/lacak/{case}?lang=en"))
            .header(header::COOKIE, session)
            .body(Body::empty());
        let (status, _, en) = self.send(req.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{en}");
        (id, en)
    }
}

fn assert_has(page: &str, wants: &[&str], absent: &[&str]) {
    for want in wants {
        assert!(page.contains(want), "page lacks {want:?}:\n{page}");
    }
    for not in absent {
        assert!(!page.contains(not), "page must not say {not:?}:\n{page}");
    }
}

#[tokio::test]
async fn a_rejected_application_has_its_own_colour_and_its_reason_in_words_never_on_time() {
    let (mut f, case) = Fixture::with_pbg_filed(1801, 1);
    f.commit(&[
        ("dpmptsp", "pbg", Some(case), "PBG-1", EventBody::ReviewStarted),
        (
            "dpmptsp",
            "pbg",
            Some(case),
            "PBG-1",
            EventBody::Rejected {
                reason_code: "TATA_RUANG_TIDAK_SESUAI".to_owned(),
                reason: "Fungsi bangunan tidak sesuai rencana tata ruang".to_owned(),
            },
        ),
    ]);
    let (id, en) = f.page_in_both_languages(case).await;
    let refusals = [
        "tepat waktu",
        "on time",
        "data-status=\"done\"",
        ">Selesai<",
        ">Done<",
        "Ambil dokumen",
        "Collect your",
    ];
    assert_has(
        &id,
        &[
            "data-status=\"refused\"",
            "Tidak dikabulkan",
            "data-state=\"rejected\"",
            "Ditolak pada 16 Juni 2025",
            "Alasan:</strong> Rencana bangunan atau usaha tidak sesuai dengan rencana tata ruang (KKPR).",
            "Keterangan instansi: Fungsi bangunan tidak sesuai rencana tata ruang",
            "Standar layanan</dt><dd>1 hari kerja",
        ],
        &refusals,
    );
    assert_has(
        &en,
        &[
            "data-status=\"refused\"",
            "Not granted",
            "Rejected on 16 June 2025",
            "Reason:</strong> The planned building or business does not fit the spatial plan (KKPR).",
            "The agency&#x27;s note: Fungsi bangunan tidak sesuai rencana tata ruang",
            "Service standard</dt><dd>1 working day<",
        ],
        &refusals,
    );
    // The reason code itself is not what the citizen reads.
    assert!(!en.contains("TATA_RUANG_TIDAK_SESUAI") && !id.contains("TATA_RUANG_TIDAK_SESUAI"));
}

#[tokio::test]
async fn a_withdrawn_application_says_so_with_its_reason_and_an_unknown_code_shows_the_agency_s_words() {
    let mut f = Fixture::new(generous());
    let (withdrawn, unknown) = (tn(1802), tn(1803));
    f.file_under(standard_of("Sambungan baru", "New connection", 3), "pdam", "sambungan", withdrawn, "SB-1");
    f.commit(&[(
        "pdam",
        "sambungan",
        Some(withdrawn),
        "SB-1",
        EventBody::Withdrawn { reason: "Pemohon membatalkan permohonan".to_owned() },
    )]);
    let (id, en) = f.page_in_both_languages(withdrawn).await;
    let refusals = ["tepat waktu", "on time", "data-status=\"done\"", ">Selesai<", ">Done<"];
    assert_has(
        &id,
        &[
            "data-status=\"refused\"",
            "data-state=\"withdrawn\"",
            "Dibatalkan pada 16 Juni 2025",
            "Alasan: Pemohon membatalkan permohonan",
            "3 hari kerja",
        ],
        &refusals,
    );
    assert_has(
        &en,
        &[
            "Not granted",
            "Withdrawn on 16 June 2025",
            "Reason: Pemohon membatalkan permohonan",
            "3 working days",
        ],
        &refusals,
    );

    f.open_and_file("pdam", "sambungan", unknown, "SB-2");
    f.commit(&[(
        "pdam",
        "sambungan",
        Some(unknown),
        "SB-2",
        EventBody::Rejected { reason_code: "B1".to_owned(), reason: "Berkas tidak lengkap".to_owned() },
    )]);
    let (id, en) = f.page_in_both_languages(unknown).await;
    assert_has(&id, &["Ditolak pada", "Alasan: B1: Berkas tidak lengkap"], &refusals);
    assert_has(&en, &["Rejected on", "Reason: B1: Berkas tidak lengkap"], &refusals);
}

/// A standard whose issued document is collected at `place` within `days`
/// working days.
fn collecting_standard(name_id: &str, name_en: &str, place: &str, days: u32) -> EventBody {
    let mut standard = standard_of(name_id, name_en, 5);
    if let EventBody::ServiceStandardPublished { collection, .. } = &mut standard {
        *collection = Some(mpp_core::Collection { place: place.to_owned(), within_working_days: days });
    }
    standard
}

#[tokio::test]
async fn an_appointment_shows_when_and_where_it_is_not_when_it_was_recorded() {
    let mut f = Fixture::new(generous());
    let case = tn(1804);
    f.file_under(standard_of("Paspor", "Passport", 3), "imigrasi", "paspor", case, "PP-1");
    // 2025-06-18 09:30 WIB is 02:30 UTC.
    let at_ms = 1_750_213_800_000;
    f.commit(&[(
        "imigrasi",
        "paspor",
        Some(case),
        "PP-1",
        EventBody::AppointmentScheduled {
            kind: "interview".to_owned(),
            at_ms,
            place: "Loket Imigrasi, MPP Kota Bengkulu".to_owned(),
        },
    )]);
    let (id, en) = f.page_in_both_languages(case).await;
    assert_has(
        &id,
        &[
            "data-kind=\"attend_appointment\"",
            "Datang sesuai jadwal",
            "Wawancara — 18 Juni 2025 pukul 09.30 WIB",
            "Loket Imigrasi, MPP Kota Bengkulu",
        ],
        &[],
    );
    assert_has(
        &en,
        &[
            "Come to your appointment",
            "Interview — 18 June 2025 at 09:30 WIB",
            "Loket Imigrasi, MPP Kota Bengkulu",
        ],
        &[],
    );
}

#[tokio::test]
async fn a_fee_with_a_due_date_says_how_much_where_and_by_when() {
    let (mut f, case) = Fixture::with_pbg_filed(1805, 10);
    // 2025-06-23 23:59 WIB.
    let due_at_ms = 1_750_697_940_000;
    f.commit(&[
        ("dpmptsp", "pbg", Some(case), "PBG-1", EventBody::ReviewStarted),
        (
            "dpmptsp",
            "pbg",
            Some(case),
            "PBG-1",
            EventBody::FeeAssessed {
                amount_idr: 2_750_000,
                payment_channel: "Bank Bengkulu, kode billing".to_owned(),
                billing_code: "820001234567".to_owned(),
                due_at_ms,
            },
        ),
    ]);
    let (id, en) = f.page_in_both_languages(case).await;
    assert_has(
        &id,
        &[
            "data-kind=\"pay_fee\"",
            "Rp 2.750.000",
            "Bank Bengkulu, kode billing",
            "Bayar paling lambat</dt><dd class=\"deadline\">23 Juni 2025 pukul 23.59 WIB",
        ],
        &[],
    );
    assert_has(&en, &["Rp 2,750,000", "Pay by</dt><dd class=\"deadline\">23 June 2025 at 23:59 WIB"], &[]);
    let a = f.first_action(case).await;
    assert_eq!((&a["kind"], &a["due_at_ms"]), (&"pay_fee".into(), &due_at_ms.into()), "{a}");
}

#[tokio::test]
async fn collect_your_document_only_where_the_standard_says_with_where_and_by_when() {
    let mut f = Fixture::new(generous());
    let (kk, pdam) = (tn(1806), tn(1807));
    f.commit(&[
        (
            "dukcapil",
            "kk",
            None,
            "",
            collecting_standard("Kartu Keluarga", "Family card", "Loket Disdukcapil, MPP Kota Bengkulu", 10),
        ),
        ("pdam", "sambungan", None, "", standard_of("Sambungan baru", "New connection", 5)),
    ]);
    f.open_and_file("dukcapil", "kk", kk, "KK-1");
    f.open_and_file("pdam", "sambungan", pdam, "SB-1");
    let issue = |agency, service, case, app| {
        [
            (agency, service, Some(case), app, EventBody::ReviewStarted),
            (agency, service, Some(case), app, EventBody::Issued { document_number: "1771-X".to_owned() }),
        ]
    };
    f.commit(&issue("dukcapil", "kk", kk, "KK-1"));
    f.commit(&issue("pdam", "sambungan", pdam, "SB-1"));

    // Issued on Monday 16 June 2025: ten working days later is Monday 30 June.
    let (id, en) = f.page_in_both_languages(kk).await;
    assert_has(
        &id,
        &[
            "data-kind=\"collect_document\"",
            "Ambil dokumen Anda",
            "Loket Disdukcapil, MPP Kota Bengkulu",
            "Ambil paling lambat</dt><dd class=\"deadline\">30 Juni 2025",
            "Selesai tepat waktu",
        ],
        &[],
    );
    assert_has(&en, &["Collect your document", "Collect by</dt><dd class=\"deadline\">30 June 2025"], &[]);
    let a = f.first_action(kk).await;
    assert_eq!(a["kind"], "collect_document", "{a}");
    assert_eq!(
        (&a["place"], &a["due_on"]),
        (&"Loket Disdukcapil, MPP Kota Bengkulu".into(), &"2025-06-30".into())
    );

    // A water connection switched on: nothing to collect, so no such line.
    let (id, en) = f.page_in_both_languages(pdam).await;
    assert_has(
        &id,
        &["Terbit", "Tidak ada yang perlu Anda lakukan saat ini."],
        &["Ambil dokumen", "collect_document"],
    );
    assert_has(&en, &["Issued", "Nothing is needed from you right now."], &["Collect your document"]);
    let (_, _, body) = f.api(&pdam.to_string(), Some(PIN)).await;
    assert_eq!(json(&body)["next_actions"], serde_json::json!([]), "{body}");
}

#[tokio::test]
async fn the_mpp_s_name_hours_contact_and_complaint_channel_come_from_its_profile() {
    let (mut f, case) = Fixture::with_multi_agency_case(generous());
    let profiles = crate::profile::MppProfiles::parse(
        "profiles.toml",
        "[[mpp]]\nregion_code = \"1771\"\nname = \"Mal Pelayanan Publik Kota Bengkulu\"\n\
         address = \"Jl. Basuki Rahmat No. 1\"\nopening_hours_id = \"Senin–Jumat 08.00–15.00 WIB\"\n\
         opening_hours_en = \"Monday–Friday 08:00–15:00 WIB\"\nphone = \"(0736) 000000\"\n",
        |_| Err("no logo".to_owned()),
    )
    .unwrap();
    f.set_web_settings(WebSettings { profiles: Arc::new(profiles), ..WebSettings::default() });
    let (id, en) = f.page_in_both_languages(case).await;
    assert_has(
        &id,
        &[
            "<span class=\"mpp-name\" id=\"mpp-name\">Mal Pelayanan Publik Kota Bengkulu</span>",
            "Jl. Basuki Rahmat No. 1",
            "Jam layanan: Senin–Jumat 08.00–15.00 WIB",
            "Kontak: (0736) 000000",
            // Autoescaped: the browser reads https://www.lapor.go.id.
            "Pengaduan pelayanan publik: <a href=\"https:&#x2f;&#x2f;www.lapor.go.id\" rel=\"noopener\">SP4N-LAPOR!</a>",
        ],
        &[],
    );
    assert_has(
        &en,
        &["Opening hours: Monday–Friday 08:00–15:00 WIB", "Complaints about a public service"],
        &[],
    );
    // The form knows no region yet, and a region without a profile gets
    // the neutral header.
    let (_, _, form) = f.send(Request::get("/lacak").body(Body::empty()).unwrap()).await;
    assert_has(&form, &["Mal Pelayanan Publik — Lacak Berkas"], &["mpp-footer", "mpp-name"]);
    let other = TrackingNumber::new(RegionCode::parse("3171").unwrap(), 5).unwrap();
    let (_, _, receipt) =
        f.send(Request::get(format!("/lacak/{other}/tanda-terima")).body(Body::empty()).unwrap()).await;
    assert_has(&receipt, &["Mal Pelayanan Publik — Lacak Berkas"], &["mpp-footer"]);
    let (_, _, receipt) =
        f.send(Request::get(format!("/lacak/{case}/tanda-terima")).body(Body::empty()).unwrap()).await;
    assert_has(&receipt, &["id=\"mpp-footer\"", "SP4N-LAPOR!"], &[]);
}
