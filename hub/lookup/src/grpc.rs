//! The hub's gRPC services.

use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use futures::Stream;
use mpp_proto::v1 as pb;
use mpp_proto::v1::cases_service_server::CasesService;
use mpp_proto::v1::{CaseView, GetCaseRequest, WatchCaseRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::access::AccessChannel;
use crate::error::ApiError;
use crate::json::access_event;
use crate::lookup::{Found, LookupRequest, Lookups, POW_PROOF_HEADER};
use crate::proxy::ClientAddrPolicy;
use crate::watch::{deliver, CaseChanges, WATCH_BUFFER_VIEWS_MAX};
use mpp_wire as wire;

/// Largest `GetCase` or `WatchCase` request the gRPC server decodes, in
/// bytes: a tracking number, a PIN and a timeline page cursor take under
/// 100.
pub const CASES_REQUEST_BYTES_MAX: usize = 1024;

/// Citizen-facing case lookups.
#[derive(Debug, Clone)]
pub struct Cases {
    lookups: Lookups,
    changes: CaseChanges,
    client_addr: ClientAddrPolicy,
}

impl Cases {
    /// A service answering from `lookups`, watching through `changes`. The
    /// client address for rate limits is found by `client_addr` from the
    /// TCP peer and the forwarding metadata (`--grpc-trusted-proxies`; gRPC
    /// has its own list, since a plain TCP load balancer in front of it
    /// passes whatever metadata a client sends). `lookups` (and every
    /// clone of it, e.g. the HTTP API's) follows the commits `changes`
    /// announces ([`Lookups::follow_commits`]).
    pub fn new(lookups: Lookups, changes: CaseChanges, client_addr: ClientAddrPolicy) -> Self {
        lookups.follow_commits(&changes);
        Self { lookups, changes, client_addr }
    }

    fn client<T>(&self, request: &Request<T>) -> IpAddr {
        let peer = request.remote_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        match self.client_addr.header() {
            None => peer,
            Some(name) => self
                .client_addr
                .client(peer, request.metadata().get_all(name).iter().map(|v| v.as_encoded_bytes())),
        }
    }

    /// Looks up the case `tracking_number` with `pin` for the caller of
    /// `request` (its client address and proof of work), with the timeline
    /// page before `timeline_before_seq` (0: the newest).
    async fn lookup<T>(
        &self,
        request: &Request<T>,
        tracking_number: &str,
        pin: &str,
        timeline_before_seq: u64,
    ) -> Result<Found, Status> {
        let req = LookupRequest {
            tracking_number,
            pin: Some(pin),
            proof: proof(request),
            client: self.client(request),
            channel: AccessChannel::Grpc,
            timeline_before_seq: Some(timeline_before_seq).filter(|s| *s != 0),
        };
        Ok(self.lookups.lookup(&req).await?)
    }
}

/// The proof of work a request carries (metadata `x-mpp-pow`).
fn proof<T>(request: &Request<T>) -> Option<&str> {
    request.metadata().get(POW_PROOF_HEADER).and_then(|v| v.to_str().ok())
}

/// The wire view of a lookup: the case, its service names and access history.
pub fn view(found: &Found) -> CaseView {
    let mut v = wire::case_view(&found.case, found.status, &found.slas);
    for (a, name) in v.applications.iter_mut().zip(&found.service_names) {
        a.service_name_id = name.id.clone();
        a.service_name_en = name.en.clone();
    }
    // The last day to collect needs the region's calendar, which the SLA
    // clocks were computed with.
    for n in &mut v.next_actions {
        let i = found.case.applications.iter().position(|a| a.id.as_str() == n.application_id);
        if let Some(d) = i.and_then(|i| found.slas.get(i)).and_then(|s| s.collect_by) {
            n.due_on = d.to_string();
        }
    }
    v.access_events = found
        .access
        .iter()
        .map(|e| {
            let j = access_event(e);
            pb::AccessEvent {
                at_ms: j.at_ms,
                accessor: j.accessor.to_owned(),
                agency_id: j.agency_id.unwrap_or_default(),
                channel: j.channel.to_owned(),
                client_id: j.client_id.unwrap_or_default(),
            }
        })
        .collect();
    v.timeline_items_total = u32::try_from(found.timeline.items_total).unwrap_or(u32::MAX);
    v.timeline_next_before_seq = found.timeline.next_before_seq.unwrap_or(0);
    if let Some(f) = &found.failed_attempts {
        v.failed_lookups_since_last_visit = f.count;
        v.last_failed_lookup_at_ms = f.last_at_ms.unwrap_or(0);
    }
    v
}

/// The stream type of `WatchCase`.
pub type CaseViewStream = Pin<Box<dyn Stream<Item = Result<CaseView, Status>> + Send>>;

#[tonic::async_trait]
impl CasesService for Cases {
    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<CaseView>, Status> {
        let r = request.get_ref();
        let found = self.lookup(&request, &r.tracking_number, &r.pin, r.timeline_before_seq).await?;
        Ok(Response::new(view(&found)))
    }

    type WatchCaseStream = CaseViewStream;

    async fn watch_case(
        &self,
        request: Request<WatchCaseRequest>,
    ) -> Result<Response<Self::WatchCaseStream>, Status> {
        let client = self.client(&request);
        let r = request.get_ref();
        let found = self.lookup(&request, &r.tracking_number, &r.pin, 0).await?;
        let tn = found.case.tracking_number;
        let mut sub = self.changes.subscribe(tn, client).map_err(|e| Status::from(ApiError::from(e)))?;
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER_VIEWS_MAX);
        let lookups = self.lookups.clone();
        tokio::spawn(async move {
            let mut last = view(&found);
            if !deliver(&tx, Ok(last.clone())).await {
                return;
            }
            loop {
                tokio::select! {
                    r = sub.changed() => if r.is_err() { return },
                    // The client went away: free the watch at once.
                    _ = tx.closed() => return,
                }
                match lookups.read(&tn) {
                    Ok(Some(found)) => {
                        let next = view(&found);
                        if next != last {
                            if !deliver(&tx, Ok(next.clone())).await {
                                return;
                            }
                            last = next;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        deliver(&tx, Err(Status::from(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
