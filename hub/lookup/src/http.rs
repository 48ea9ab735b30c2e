//! The hub's HTTP surface: the tracking page ([`crate::page`]), the JSON
//! API, health endpoints and `/metrics`. Every request body is capped at
//! [`REQUEST_BODY_BYTES_MAX`]; every answer to bad input is a clear message
//! (JSON for the API, a page for the tracking page), never an error trace.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mpp_core::ReasonCode;
use tower::limit::ConcurrencyLimitLayer;

use crate::access::{AccessChannel, AccessLog};
use crate::error::ApiError;
use crate::i18n::Lang;
use crate::json::case_json;
use crate::lookup::{LookupError, LookupRequest, POW_PROOF_HEADER};
use crate::page::{self, REQUEST_BODY_BYTES_MAX};
pub use crate::state::{AppState, ClientAddr, SharedState};
use mpp_obs::metrics::METRICS_CONTENT_TYPE;

/// Most HTTP requests served at once; further ones wait (back-pressure).
pub const HTTP_CONCURRENT_REQUESTS_MAX: usize = 1024;

/// The OpenAPI 3.1 contract of every HTTP endpoint of the hub (the
/// lookups', the operators' and `/checkpoint`), served at
/// `/api/v1/openapi.json`. A checked-in file rather than generated from the
/// handlers: it is the contract a province's integrator reads and reviews in
/// a diff, and the e2e `openapi` test holds the handlers to it (every route
/// documented, every real answer valid against it), while a unit test keeps
/// its reason-code enum equal to [`ReasonCode::ALL`].
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The request header carrying the PIN of `GET /api/v1/cases/{tn}`.
pub const PIN_HEADER: &str = "x-mpp-pin";

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/head", get(head))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/checkpoint", get(checkpoint_note))
        .route(
            "/api/v1/cases/{tracking_number}",
            get(get_case).layer(axum::middleware::map_response(no_store)),
        )
        .route("/lacak", get(page::form).post(page::submit))
        .route("/lacak/live.js", get(page::live_js))
        .route("/lacak/pow.js", get(page::pow_js))
        .route("/lacak/periksa.js", get(page::periksa_js))
        .route("/lacak/{tracking_number}", get(page::case))
        .route("/lacak/{tracking_number}/tanda-terima", get(page::receipt))
        .route("/lacak/{tracking_number}/events", get(page::events))
        .route("/lacak/{tracking_number}/bukti", get(page::receipt_proof_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(ConcurrencyLimitLayer::new(HTTP_CONCURRENT_REQUESTS_MAX))
        .with_state(std::sync::Arc::new(state))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "alive": true }))
}

async fn readyz(State(s): State<SharedState>) -> Response {
    let r = s.health.readiness();
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(r)).into_response()
}

async fn metrics(State(s): State<SharedState>) -> Response {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let scrape = s.health.scrape(
        Some(s.web.changes().watchers()),
        s.lookups.access_log().map(AccessLog::dropped),
        now_ms,
    );
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], s.health.metrics().render(&scrape)).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn head(State(s): State<SharedState>) -> Response {
    Json(s.health.readiness()).into_response()
}

/// The latest signed checkpoint as a C2SP signed note (tlog-checkpoint), for
/// witnesses and transparency-log tools (`mpp_core::note`; docs/AUDIT.md),
/// with the witnesses' cosignatures held for it ([`crate::cosigned`]).
async fn checkpoint_note(State(s): State<SharedState>) -> Response {
    match mpp_store::Store::latest_checkpoint(s.lookups.store()) {
        Ok(Some(cp)) => match s.lookups.transparency().map_or_else(|| cp.to_note(), |t| t.note_of(&cp)) {
            Some(note) => (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
                note,
            )
                .into_response(),
            None => ApiError::new(ReasonCode::NotFound, "the latest checkpoint was signed before notes were")
                .into_response(),
        },
        Ok(None) => ApiError::new(ReasonCode::NotFound, "no checkpoint has been signed yet").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Reading the latest checkpoint failed");
            ApiError::internal().into_response()
        }
    }
}

/// The query of `GET /api/v1/cases/{tn}`.
#[derive(Debug, serde::Deserialize)]
pub struct CaseQuery {
    /// The timeline page: items older than this log sequence.
    timeline_before_seq: Option<u64>,
}

async fn get_case(
    State(s): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<CaseQuery>, QueryRejection>,
) -> Response {
    let Ok(Path(tracking_number)) = path else {
        return ApiError::new(
            ReasonCode::MalformedTrackingNumber,
            "the path holds no readable tracking number",
        )
        .into_response();
    };
    let pin = match headers.get(PIN_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return LookupError::from(crate::lookup::malformed_pin()).into_response(),
    };
    let Ok(Query(query)) = query else {
        return ApiError::new(ReasonCode::BadRequest, "timeline_before_seq must be a log sequence number")
            .into_response();
    };
    let req = LookupRequest {
        tracking_number: &tracking_number,
        pin,
        proof: headers.get(POW_PROOF_HEADER).and_then(|v| v.to_str().ok()),
        client,
        channel: AccessChannel::Api,
        timeline_before_seq: query.timeline_before_seq.filter(|s| *s != 0),
    };
    match s.lookups.lookup(&req).await {
        Ok(found) => json_answer(&case_json(&found)),
        Err(e) => e.into_response(),
    }
}

/// The first buffer a case's JSON answer is written into, in bytes: a
/// typical case's answer fits, so it is written without growing the buffer
/// (axum's `Json` starts at 128 bytes); bigger ones grow it.
const CASE_JSON_BUFFER_BYTES: usize = 4096;

/// `value` as an `application/json` answer, written straight into one
/// buffer that becomes the body (the bytes and header axum's `Json` gives).
fn json_answer(value: &impl serde::Serialize) -> Response {
    let mut body = Vec::with_capacity(CASE_JSON_BUFFER_BYTES);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => ([(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"))], body)
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Writing a case's JSON failed");
            ApiError::internal().into_response()
        }
    }
}

/// Case data (and every answer about a case) is never kept by a browser or
/// a proxy: `Cache-Control: no-store`, as on the tracking page.
async fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    r
}

/// A known path asked with a method it does not take: the JSON error body
/// every API answer has (axum still adds the `Allow` header).
async fn method_not_allowed() -> Response {
    ApiError::new(ReasonCode::MethodNotAllowed, "this path does not take this method").into_response()
}

async fn not_found(State(s): State<SharedState>, uri: Uri) -> Response {
    if uri.path() == "/lacak" || uri.path().starts_with("/lacak/") {
        let lang =
            Lang::parse(uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang="))));
        return page::not_found_page(&s.web, lang);
    }
    ApiError::new(ReasonCode::NotFound, "no such path").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's `ReasonCode` schema lists every code, in
    /// documentation order, and nothing else.
    #[test]
    fn the_openapi_reason_code_enum_is_mpp_core_s() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let listed: Vec<&str> = doc["components"]["schemas"]["ReasonCode"]["enum"]
            .as_array()
            .expect("a ReasonCode enum")
            .iter()
            .map(|v| v.as_str().expect("codes are strings"))
            .collect();
        let want: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, want, "hub/lookup/src/openapi.json's ReasonCode enum");
    }
}
