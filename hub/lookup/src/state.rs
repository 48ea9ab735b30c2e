//! What every HTTP handler of the hub shares: the router's state and the
//! client's address (the TCP peer, or the last `X-Forwarded-For` hop when
//! the hub is told to trust its reverse proxy).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mpp_obs::health::Health;

use crate::lookup::Lookups;
use crate::web::Web;

/// Longest `X-Forwarded-For` header read, in bytes.
pub const FORWARDED_FOR_BYTES_MAX: usize = 1024;

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

/// The client's address: the TCP peer, or with `--trust-forwarded-for` the
/// last address of `X-Forwarded-For` (the one the hub's own reverse proxy
/// appended). Without a known peer (in-process tests), `0.0.0.0`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The last address of an `X-Forwarded-For` value, if it parses.
pub fn last_forwarded_for(value: &str) -> Option<IpAddr> {
    if value.len() > FORWARDED_FOR_BYTES_MAX {
        return None;
    }
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>().ok().or_else(|| last.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        if state.web.settings().trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(last_forwarded_for);
            if let Some(ip) = forwarded {
                return Ok(ClientAddr(ip));
            }
        }
        Ok(ClientAddr(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_forwarded_address_counts() {
        assert_eq!(last_forwarded_for("203.0.113.9"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_forwarded_for("1.1.1.1, 203.0.113.9"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_forwarded_for("1.1.1.1, 2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(last_forwarded_for("1.1.1.1, 203.0.113.9:4711"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_forwarded_for("203.0.113.9, garbage"), None);
        assert_eq!(last_forwarded_for(&"1".repeat(2000)), None);
    }
}
