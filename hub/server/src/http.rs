//! The hub's HTTP surface: JSON API and health endpoints.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mpp_core::ReasonCode;
use tower::limit::ConcurrencyLimitLayer;

use crate::error::ApiError;
use crate::health::Health;
use crate::json::case_json;
use crate::lookup::Lookups;

/// Most HTTP requests served at once; further ones wait (back-pressure).
pub const HTTP_CONCURRENT_REQUESTS_MAX: usize = 1024;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Case lookups.
    pub lookups: Lookups,
    /// Health.
    pub health: Arc<Health>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/head", get(head))
        .route("/api/v1/cases/{tracking_number}", get(get_case))
        .fallback(not_found)
        .layer(ConcurrencyLimitLayer::new(HTTP_CONCURRENT_REQUESTS_MAX))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "alive": true }))
}

async fn readyz(State(s): State<AppState>) -> Response {
    let r = s.health.readiness();
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(r)).into_response()
}

async fn head(State(s): State<AppState>) -> Response {
    Json(s.health.readiness()).into_response()
}

async fn get_case(State(s): State<AppState>, path: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(tracking_number)) = path else {
        return ApiError::new(
            ReasonCode::MalformedTrackingNumber,
            "the path holds no readable tracking number",
        )
        .into_response();
    };
    match s.lookups.get(&tracking_number) {
        Ok(found) => Json(case_json(&found)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> Response {
    let body = serde_json::json!({ "error": { "code": "NOT_FOUND", "message": "no such path" } });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
