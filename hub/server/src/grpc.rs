//! The hub's gRPC services.

use mpp_core::TrackingNumber;
use mpp_proto::v1::cases_service_server::CasesService;
use mpp_proto::v1::{CaseView, GetCaseRequest};
use mpp_store::{SledStore, Store};
use tonic::{Request, Response, Status};
use tracing::error;

use crate::error::ApiError;
use crate::wire;

/// Citizen-facing case lookups, read straight from the store.
#[derive(Debug, Clone)]
pub struct Cases {
    store: SledStore,
}

impl Cases {
    /// A service reading `store`.
    pub fn new(store: SledStore) -> Self {
        Self { store }
    }
}

/// Looks a case up by its tracking number text (shared by gRPC and HTTP).
pub fn lookup(store: &impl Store, tracking_number: &str) -> Result<mpp_core::Case, ApiError> {
    let id = TrackingNumber::parse(tracking_number.trim())?;
    match store.case(&id) {
        Ok(Some(case)) => Ok(case),
        Ok(None) => Err(ApiError::case_not_found()),
        Err(e) => {
            error!(error = %e, "Case lookup failed in the store");
            Err(ApiError::internal())
        }
    }
}

#[tonic::async_trait]
impl CasesService for Cases {
    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<CaseView>, Status> {
        let case = lookup(&self.store, &request.get_ref().tracking_number)?;
        Ok(Response::new(wire::case_view(&case)))
    }
}
