//! What every HTTP handler of the hub shares: the router's state and the
//! client's address (the TCP peer, or the client its trusted reverse proxies
//! name, [`crate::proxy`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mpp_obs::health::Health;

use crate::lookup::Lookups;
pub use crate::proxy::FORWARDED_FOR_BYTES_MAX;
use crate::web::Web;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Case lookups.
    pub lookups: Lookups,
    /// Health.
    pub health: Arc<Health>,
    /// The tracking page.
    pub web: Arc<Web>,
}

/// The router's state as the handlers hold it: axum clones the state for
/// every request (the handler's and each `State` extractor's copy), and one
/// reference count is much cheaper to copy than [`AppState`]'s dozen, whose
/// counters both worker threads would otherwise bounce between them.
pub type SharedState = Arc<AppState>;

/// The client's address, found by the page's [`crate::proxy::ClientAddrPolicy`]:
/// the TCP peer, or behind `--trusted-proxies` the client they name (with
/// the deprecated `--trust-forwarded-for`, the last address of
/// `X-Forwarded-For` from any peer). Without a known peer (in-process
/// tests), `0.0.0.0`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<SharedState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let policy = &state.web.settings().client_addr;
        Ok(ClientAddr(match policy.header() {
            None => peer,
            Some(name) => policy.client(peer, parts.headers.get_all(name).iter().map(|v| v.as_bytes())),
        }))
    }
}
