//! The hub's gRPC services.

use mpp_proto::v1::cases_service_server::CasesService;
use mpp_proto::v1::{CaseView, GetCaseRequest};
use tonic::{Request, Response, Status};

use crate::lookup::Lookups;
use crate::wire;

/// Citizen-facing case lookups.
#[derive(Debug, Clone)]
pub struct Cases {
    lookups: Lookups,
}

impl Cases {
    /// A service answering from `lookups`.
    pub fn new(lookups: Lookups) -> Self {
        Self { lookups }
    }
}

#[tonic::async_trait]
impl CasesService for Cases {
    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<CaseView>, Status> {
        let found = self.lookups.get(&request.get_ref().tracking_number)?;
        Ok(Response::new(wire::case_view(&found.case, found.status, &found.slas)))
    }
}
