//! The one mapping from reason codes to gRPC and HTTP answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mpp_core::{ReasonCode, Rejection};

pub use mpp_edge::meta::REASON_CODE_METADATA_KEY;

/// An error answered to a client: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Stable reason code.
    pub code: ReasonCode,
    /// A sentence for the caller; never personal data or secrets.
    pub message: String,
}

impl ApiError {
    /// An error with the given code and message.
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// Lookup of an unknown case, or of a known case with a wrong PIN: one
    /// answer for both, so lookups cannot tell which cases exist.
    pub fn case_not_found() -> Self {
        Self::new(ReasonCode::CaseNotFound, "no case with this tracking number and PIN")
    }

    /// A failure of the hub itself (store unreadable); details go to the log.
    pub fn internal() -> Self {
        Self::new(ReasonCode::Unavailable, "the hub cannot answer right now; try again later")
    }

    fn grpc_code(&self) -> tonic::Code {
        match self.code {
            ReasonCode::CaseNotFound | ReasonCode::NotFound => tonic::Code::NotFound,
            ReasonCode::Unauthenticated => tonic::Code::Unauthenticated,
            ReasonCode::NotRedrivable | ReasonCode::RedriveSuperseded => tonic::Code::FailedPrecondition,
            ReasonCode::MethodNotAllowed => tonic::Code::Unimplemented,
            ReasonCode::Unavailable
            | ReasonCode::PublishFailed
            | ReasonCode::RedriveDisabled
            | ReasonCode::LookupBudgetUnavailable => tonic::Code::Unavailable,
            ReasonCode::RateLimited
            | ReasonCode::LookupLocked
            | ReasonCode::ProofOfWorkRequired
            | ReasonCode::TooManyWatches
            | ReasonCode::TooManyFeeds => tonic::Code::ResourceExhausted,
            ReasonCode::PinReissueRequired | ReasonCode::NoFollowGrant => tonic::Code::PermissionDenied,
            _ => tonic::Code::InvalidArgument,
        }
    }

    fn http_status(&self) -> StatusCode {
        match self.code {
            ReasonCode::CaseNotFound | ReasonCode::NotFound => StatusCode::NOT_FOUND,
            ReasonCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ReasonCode::NotRedrivable | ReasonCode::RedriveSuperseded => StatusCode::CONFLICT,
            ReasonCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ReasonCode::Unavailable
            | ReasonCode::PublishFailed
            | ReasonCode::RedriveDisabled
            | ReasonCode::LookupBudgetUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::RateLimited
            | ReasonCode::LookupLocked
            | ReasonCode::ProofOfWorkRequired
            | ReasonCode::TooManyWatches
            | ReasonCode::TooManyFeeds => StatusCode::TOO_MANY_REQUESTS,
            ReasonCode::PinReissueRequired | ReasonCode::NoFollowGrant => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        Self { code: r.code, message: r.detail }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let mut status = tonic::Status::new(e.grpc_code(), e.message.clone());
        if let Ok(v) = e.code.as_str().parse() {
            status.metadata_mut().insert(REASON_CODE_METADATA_KEY, v);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code.as_str(), "message": self.message } });
        (self.http_status(), axum::Json(body)).into_response()
    }
}
