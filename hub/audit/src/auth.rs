//! Authentication of auditors, for the audit gRPC service, and of
//! participants, for the verdict service ([`crate::verdicts`]).
//!
//! Each auditor (an Inspektorat, Ombudsman or BPK team, or a tool of
//! theirs) has a bearer token. The hub keeps only the SHA-256 of each token,
//! in the file given with `--auditor-tokens-file`, in the one token-table
//! format of every server ([`mpp_edge::auth::TokenTable`]):
//!
//! ```text
//! # client_id:sha256-hex-of-token, one per line; '#' starts a comment.
//! bpk-tim-3:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! Auditors send `authorization: Bearer <token>` with every call. Auditor
//! access is read-only: the audit service has no call that changes anything.
//!
//! [`AuditorAuth`] (a tonic interceptor on the audit service only; cases,
//! health and reflection are separate services) refuses a missing or wrong
//! token with `UNAUTHENTICATED` (reason `UNAUTHENTICATED` in the
//! `mpp-reason-code` metadata), logged with the peer address and why, never
//! the token. On success the [`AuditorId`] is put into the request's
//! extensions. Without a tokens file every audit call is refused.
//!
//! Participants (the front office and each agency service) authenticate the
//! same way with their own tokens, from `--participant-tokens-file`: there
//! each client id is the participant's id as it stands in its subjects
//! (`mpp.events.<participant>.…`), and it may read only its own verdicts.

use std::sync::Arc;

use mpp_edge::auth::{bearer_client, unauthenticated, ClientId, TokenTable};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The authenticated auditor, in the request's extensions.
pub type AuditorId = ClientId;

/// The tonic interceptor of the audit service and of the verdict service
/// (see the module docs).
#[derive(Debug, Clone)]
pub struct AuditorAuth {
    table: Option<Arc<TokenTable>>,
    role: Role,
}

/// Who a token table admits.
#[derive(Debug, Clone, Copy)]
enum Role {
    Auditor,
    Participant,
}

impl Role {
    fn none_configured(self) -> &'static str {
        match self {
            Role::Auditor => "this hub has no auditor tokens configured",
            Role::Participant => "this hub has no participant tokens configured",
        }
    }

    fn wanted(self) -> &'static str {
        match self {
            Role::Auditor => "an auditor token",
            Role::Participant => "a participant token",
        }
    }
}

impl AuditorAuth {
    /// Admits the auditors of `table`; `None` refuses every call (no
    /// `--auditor-tokens-file`).
    pub fn new(table: Option<Arc<TokenTable>>) -> Self {
        Self { table, role: Role::Auditor }
    }

    /// Admits the participants of `table` (`--participant-tokens-file`);
    /// `None` refuses every call.
    pub fn participants(table: Option<Arc<TokenTable>>) -> Self {
        Self { table, role: Role::Participant }
    }

    fn check(&self, req: &Request<()>) -> Result<AuditorId, &'static str> {
        let table = self.table.as_ref().ok_or(self.role.none_configured())?;
        bearer_client(table, req)
    }
}

impl Interceptor for AuditorAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&req) {
            Ok(auditor) => {
                req.extensions_mut().insert(auditor);
                Ok(req)
            }
            Err(reason) => {
                let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".to_owned());
                tracing::warn!(peer = %peer, reason, wanted = self.role.wanted(), "Unauthenticated call refused");
                Err(unauthenticated(reason, self.role.wanted()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mpp_edge::meta::REASON_CODE_METADATA_KEY;

    use super::*;

    const TEST_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn interceptor_refuses_and_admits() {
        let table = Arc::new(TokenTable::parse(&format!("bpk-3:{TEST_HASH}")).unwrap());
        let mut auth = AuditorAuth::new(Some(table));
        for bad in [None, Some("Bearer nope"), Some("Basic dGVzdA=="), Some("Bearer ")] {
            let status = auth.call(request(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert_eq!(status.metadata().get(REASON_CODE_METADATA_KEY).unwrap(), "UNAUTHENTICATED");
            assert!(!status.message().contains("nope"));
        }
        let ok = auth.call(request(Some("bearer test"))).unwrap();
        assert_eq!(ok.extensions().get::<AuditorId>().map(AuditorId::as_str), Some("bpk-3"));
        // No tokens file: everything is refused.
        let mut closed = AuditorAuth::new(None);
        assert_eq!(
            closed.call(request(Some("Bearer test"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
