//! The witness's HTTP surface (plaintext; put it behind a TLS proxy to
//! publish it: everything it serves is public and signed):
//!
//! | path | answers |
//! |---|---|
//! | `GET /cosigned?origin=O` | the last checkpoint cosigned for hub `O`: the hub's note with the hub's signature and this witness's cosignature (text/plain); 404 before the first |
//! | `GET /evidence` | every evidence file kept, as a JSON array (each one checkable with `mpp-witness verify-evidence`) |
//! | `GET /metrics` | Prometheus text (below) |
//! | `GET /healthz` | `{"alive":true}` |
//!
//! Metrics, one series per followed hub (the configured origins: a closed
//! set): `mpp_witness_cosigned_tree_size`, `mpp_witness_cosignatures_total`,
//! `mpp_witness_refused_total{kind}`, `mpp_witness_poll_errors_total`; and
//! `mpp_witness_evidence_files`, the evidence kept (alert on > 0).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::evidence::EvidenceKind;
use crate::follow::Shared;

/// Most HTTP requests served at once; further ones wait (back-pressure).
pub const HTTP_CONCURRENT_REQUESTS_MAX: usize = 256;

/// The content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "alive": true })) }))
        .route("/cosigned", get(cosigned))
        .route("/evidence", get(evidence))
        .route("/metrics", get(metrics))
        .layer(tower::limit::ConcurrencyLimitLayer::new(HTTP_CONCURRENT_REQUESTS_MAX))
        .with_state(shared)
}

async fn cosigned(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(origin) = q.get("origin") else {
        return (StatusCode::BAD_REQUEST, "ask with ?origin=<the hub's origin>\n").into_response();
    };
    match s.cosigned.read().unwrap_or_else(|e| e.into_inner()).get(origin) {
        Some(c) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], c.note.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no checkpoint of that origin cosigned\n").into_response(),
    }
}

async fn evidence(State(s): State<Arc<Shared>>) -> Response {
    Json(s.evidence.read().unwrap_or_else(|e| e.into_inner()).clone()).into_response()
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The `/metrics` text.
pub fn render_metrics(s: &Shared) -> String {
    let cosigned = s.cosigned.read().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let per_hub = |f: &dyn Fn(&str) -> u64| {
        s.counters.keys().map(|o| (format!("{{origin=\"{}\"}}", label(o)), f(o))).collect::<Vec<_>>()
    };
    family(
        "mpp_witness_cosigned_tree_size",
        "gauge",
        "Tree size of the last checkpoint cosigned, per hub (0 before the first).",
        &mut per_hub(&|o| cosigned.get(o).map_or(0, |c| c.size)).into_iter(),
    );
    family(
        "mpp_witness_cosignatures_total",
        "counter",
        "Cosignatures released since the witness started, per hub.",
        &mut per_hub(&|o| s.counters[o].cosignatures.load(Ordering::Relaxed)).into_iter(),
    );
    let kinds = [EvidenceKind::SplitView, EvidenceKind::Rollback, EvidenceKind::Inconsistent];
    let refused: Vec<(String, u64)> = s
        .counters
        .iter()
        .flat_map(|(o, c)| {
            kinds.iter().enumerate().map(move |(i, k)| {
                (
                    format!("{{origin=\"{}\",kind=\"{}\"}}", label(o), k.as_str()),
                    c.refused[i].load(Ordering::Relaxed),
                )
            })
        })
        .collect();
    family(
        "mpp_witness_refused_total",
        "counter",
        "Checkpoints refused since the witness started, per hub and kind (split-view, rollback, inconsistent).",
        &mut refused.into_iter(),
    );
    family(
        "mpp_witness_poll_errors_total",
        "counter",
        "Polls of a hub that failed (unreachable, bad signature, ...), per hub.",
        &mut per_hub(&|o| s.counters[o].poll_errors.load(Ordering::Relaxed)).into_iter(),
    );
    let files = s.evidence.read().unwrap_or_else(|e| e.into_inner()).len() as u64;
    family(
        "mpp_witness_evidence_files",
        "gauge",
        "Evidence files kept: hub misbehaviour seen (operator action needed when above 0).",
        &mut std::iter::once((String::new(), files)),
    );
    out
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], render_metrics(&s)).into_response()
}
