//! Test support for agency services (feature `testing`): an in-memory
//! [`Publisher`], an in-memory front office that opens walk-in cases
//! ([`MemoryFrontOffice`]), and a disk that loses power ([`power_cut`]). The throw-away `nats-server` and free ports are in
//! `mpp-test-support`, shared with every crate's tests.

use std::sync::Mutex;

pub mod power_cut;

use crate::event::OutgoingEvent;
use crate::publish::{Accepted, PubAckInfo, PublishError, PublishFuture, PublishOutcome, Publisher};
use crate::walk_in::{WalkInCase, WalkInError, WalkInFuture, WalkInOpener};

/// A [`Publisher`] that keeps events in memory, acknowledging each with the
/// next sequence number. It can be told to fail from the n-th event on.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    events: Mutex<Vec<OutgoingEvent>>,
    fail_from: Option<usize>,
}

impl MemoryPublisher {
    /// A publisher that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher that accepts `n` events and then fails with
    /// [`PublishOutcome::NotStored`].
    pub fn failing_after(n: usize) -> Self {
        Self { events: Mutex::new(Vec::new()), fail_from: Some(n) }
    }

    /// Every event accepted so far, in order.
    pub fn events(&self) -> Vec<OutgoingEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Publisher for MemoryPublisher {
    fn publish_all<'a>(&'a self, events: &'a [OutgoingEvent]) -> PublishFuture<'a> {
        Box::pin(async move {
            let mut stored = self.events.lock().unwrap_or_else(|e| e.into_inner());
            let mut accepted = Vec::new();
            for ev in events {
                if self.fail_from.is_some_and(|n| stored.len() >= n) {
                    return Err(PublishError {
                        reason: mpp_core::ReasonCode::PublishFailed,
                        event_id: ev.event_id().to_owned(),
                        outcome: PublishOutcome::NotStored,
                        attempts: 1,
                        last_error: "MemoryPublisher told to fail".to_owned(),
                        accepted_before: accepted.into_iter().map(|a: Accepted| a.event_id).collect(),
                    });
                }
                stored.push(ev.clone());
                accepted.push(Accepted {
                    event_id: ev.event_id().to_owned(),
                    ack: Some(PubAckInfo {
                        stream: crate::stream::STREAM_NAME.to_owned(),
                        stream_seq: stored.len() as u64,
                        duplicate: false,
                    }),
                    outbox_seq: None,
                });
            }
            Ok(accepted)
        })
    }
}

/// A [`WalkInOpener`] that opens cases in memory, as the front office
/// would: serials from 1 up, a fresh PIN each, a made-up event id. It can
/// be told to refuse every opening with a given error.
#[derive(Debug, Default)]
pub struct MemoryFrontOffice {
    opened: Mutex<Vec<(WalkInCase, String)>>,
    refuse: Option<WalkInError>,
}

impl MemoryFrontOffice {
    /// A front office that opens every case it is asked for.
    pub fn new() -> Self {
        Self::default()
    }

    /// A front office that answers every opening with `error`.
    pub fn refusing(error: WalkInError) -> Self {
        Self { opened: Mutex::new(Vec::new()), refuse: Some(error) }
    }

    /// The cases opened so far, each with the officer who asked, in order.
    pub fn opened(&self) -> Vec<(WalkInCase, String)> {
        self.opened.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl WalkInOpener for MemoryFrontOffice {
    fn open<'a>(
        &'a self,
        region: mpp_core::ids::RegionCode,
        officer: &'a mpp_core::ids::OfficerId,
    ) -> WalkInFuture<'a> {
        Box::pin(async move {
            if let Some(e) = &self.refuse {
                return Err(e.clone());
            }
            let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            let serial = opened.len() as u64 + 1;
            let tracking_number = mpp_core::ids::TrackingNumber::new(region, serial)
                .ok_or_else(|| WalkInError::BadAnswer(format!("serial {serial}")))?;
            let case = WalkInCase {
                tracking_number,
                pin: crate::ids::Pin::generate(),
                event_id: uuid::Uuid::now_v7().hyphenated().to_string(),
            };
            opened.push((case.clone(), officer.to_string()));
            Ok(case)
        })
    }
}

/// A plain-HTTP/2 gRPC channel to a service the test started on `addr`,
/// connected before it is returned (the test fails if it cannot be).
pub async fn grpc_channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|e| panic!("http://{addr}: {e}"));
    endpoint.connect().await.unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// A tracking number of `region` with a random serial, for tests that need
/// a case nobody opened.
pub fn random_tracking_number(region: mpp_core::ids::RegionCode) -> mpp_core::ids::TrackingNumber {
    let serial = u64::from_be_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([0; 8]))
        % (mpp_core::ids::TrackingNumber::SERIAL_MAX + 1);
    mpp_core::ids::TrackingNumber::new(region, serial).unwrap_or_else(|| panic!("serial {serial} in range"))
}

/// The kit's flags for a service under test: region 1771, a free port,
/// anonymous NATS at `nats_url`, data in `data_dir`, no tokens
/// (`--insecure-no-auth`), no metrics, no TLS. Tests override what they
/// check with struct-update syntax.
pub fn common_args(nats_url: String, data_dir: std::path::PathBuf) -> crate::CommonArgs {
    crate::CommonArgs {
        nats: mpp_edge::nats::NatsArgs::anonymous(nats_url),
        grpc_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        region_code: mpp_core::ids::RegionCode::parse("1771").expect("1771 is a region code"),
        log: mpp_edge::log::LogArgs { log_format: Some(crate::LogFormat::Pretty) },
        otlp: mpp_edge::otlp::OtlpArgs::default(),
        skip_stream_setup: false,
        data_dir: Some(data_dir),
        outbox_entries_max: 10_000,
        outbox_bytes_max: 10 * 1024 * 1024,
        outbox_drain_ms: 2_000,
        tokens_file: None,
        insecure_no_auth: true,
        metrics_addr: None,
        tls: Default::default(),
        catalogue_file: None,
        signing_key_file: None,
        hub_url: None,
        hub_token_file: None,
        hub_tls_ca_file: None,
        front_office: Default::default(),
    }
}

/// The events of one call: `n` steps (`review_started`) of one new
/// application of service `kk`, in a fresh walk-in case.
pub fn call_events(b: &crate::event::EventBuilder, n: usize) -> Vec<OutgoingEvent> {
    use mpp_core::event::Target;
    use mpp_core::ids::{OfficerId, ServiceId};
    let service = ServiceId::parse("kk").unwrap_or_else(|e| panic!("{e:?}"));
    let case = random_tracking_number(b.region());
    let app = crate::ids::new_application_id("DKC-KK").unwrap_or_else(|e| panic!("{e:?}"));
    let officer = OfficerId::parse("ptg-1").unwrap_or_else(|e| panic!("{e:?}"));
    (0..n)
        .map(|_| {
            b.build(
                &service,
                Target::Application(case, app.clone()),
                &officer,
                mpp_core::EventBody::ReviewStarted,
            )
            .unwrap_or_else(|e| panic!("{e:?}"))
        })
        .collect()
}

/// The family card's standard (`kk`, version 1: three working days, free,
/// the old card required) that the tests publish.
pub fn kk_standard() -> crate::catalogue::ServiceStandardSpec {
    crate::catalogue::ServiceStandardSpec {
        service: mpp_core::ids::ServiceId::parse("kk").expect("kk is a valid service id"),
        name_id: "Kartu Keluarga".into(),
        name_en: "Family card".into(),
        completion_working_days: 3,
        fee_idr: 0,
        requirements: vec!["KK lama".into()],
        fiktif_positif: false,
        version: 1,
        collection: None,
    }
}
