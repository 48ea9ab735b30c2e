//! The inverse of the mapping tables: a common event, as a client such as
//! `mpp-sim` wants it published, turned into the agency's own request.
//!
//! Each agency module has a `request(target, body) -> Result<Call, Unmapped>`
//! written with its RPC handlers from the same declaration (see
//! `agency_service!`), and a `Call` enum (one variant per RPC, generated
//! by [`agency_calls!`]) that can be sent to a gRPC client
//! (`Call::call`) or to the service's handler in process (`Call::serve`,
//! which the round-trip tests use). Nothing here checks the fields: the
//! service does that when it receives the request.

use mpp_core::EventKind;

/// Which application a request is about and whose step it is, in the
/// agency-neutral words of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The hub's service id, e.g. `pasang-baru`; it chooses the service
    /// enum value of a filing (steps name their service through the
    /// application id).
    pub service_id: &'a str,
    /// The case's tracking number; empty when a filing opens a new case.
    pub case: &'a str,
    /// The application id the agency returned when filing; empty for a filing.
    pub application: &'a str,
    /// The pseudonymous officer.
    pub officer: &'a str,
}

/// Why an event has no request at an agency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmapped {
    /// No RPC of the agency publishes this event (e.g. Dukcapil charges no
    /// fee), or not of this kind (e.g. PDAM schedules no interview).
    #[error("{agency} has no RPC publishing {event}{detail}")]
    NoRpc {
        /// The agency id.
        agency: &'static str,
        /// The event's type.
        event: &'static str,
        /// What narrowed it, e.g. ` of kind interview`; may be empty.
        detail: String,
    },
    /// The filing names a service the agency does not offer.
    #[error("{agency} has no service {service_id:?}")]
    UnknownService {
        /// The agency id.
        agency: &'static str,
        /// The service id asked for.
        service_id: String,
    },
}

impl Unmapped {
    /// No RPC of `agency` publishes an event of `kind`.
    pub(crate) fn no_rpc(agency: &'static str, kind: EventKind) -> Self {
        Unmapped::NoRpc { agency, event: kind.as_str(), detail: String::new() }
    }

    /// No RPC of `agency` schedules an appointment of `kind`.
    pub(crate) fn no_appointment(agency: &'static str, kind: &str) -> Self {
        Unmapped::NoRpc {
            agency,
            event: EventKind::AppointmentScheduled.as_str(),
            detail: format!(" of kind {kind}"),
        }
    }
}

/// What an agency answered to a [`Target`]ed request, in the hub's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The case (a filing's answer; empty for a step).
    pub case: String,
    /// The application id (a filing's answer; empty for a step).
    pub application: String,
    /// The events published, in order.
    pub event_ids: Vec<String>,
}

impl Answer {
    /// The answer to a filing.
    pub fn filed(case: String, application: String, event_ids: Vec<String>) -> Self {
        Self { case, application, event_ids }
    }

    /// The answer to a step: its one event.
    pub fn step(event_id: String) -> Self {
        Self { case: String::new(), application: String::new(), event_ids: vec![event_id] }
    }
}

/// The `Call` enum of an agency module: one variant per RPC, named as in
/// the proto, holding its request; with `rpc()` (the name), `serve()` (the
/// in-process handler) and `call()` (a gRPC client).
macro_rules! agency_calls {
    (
        server: $server:ident,
        client: $client:ident,
        filing: $frpc:ident($freq:path) => $fmethod:ident { $case:ident, $app:ident },
        steps: { $($rpc:ident($req:path) => $method:ident,)* }
    ) => {
        /// A request of this agency's service, one variant per RPC, as
        /// [`request`] builds it.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Call {
            /// The filing RPC.
            $frpc($freq),
            $(
                #[allow(missing_docs)]
                $rpc($req),
            )*
        }

        impl Call {
            /// The RPC's name in the proto (and in the mapping table).
            pub fn rpc(&self) -> &'static str {
                match self {
                    Call::$frpc(_) => stringify!($frpc),
                    $(Call::$rpc(_) => stringify!($rpc),)*
                }
            }

            /// Hands the request to `svc`'s handler in this process.
            pub async fn serve(
                self,
                svc: &impl $server,
            ) -> Result<$crate::calls::Answer, tonic::Status> {
                use tonic::Request;
                Ok(match self {
                    Call::$frpc(r) => {
                        let a = svc.$fmethod(Request::new(r)).await?.into_inner();
                        $crate::calls::Answer::filed(a.$case, a.$app, a.event_ids)
                    }
                    $(Call::$rpc(r) => {
                        $crate::calls::Answer::step(svc.$method(Request::new(r)).await?.into_inner().event_id)
                    })*
                })
            }

            /// Sends the request over `client`.
            pub async fn call<T>(self, client: &mut $client<T>) -> Result<$crate::calls::Answer, tonic::Status>
            where
                T: tonic::client::GrpcService<tonic::body::Body>,
                T::Error: Into<tonic::codegen::StdError>,
                T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
                <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
            {
                Ok(match self {
                    Call::$frpc(r) => {
                        let a = client.$fmethod(r).await?.into_inner();
                        $crate::calls::Answer::filed(a.$case, a.$app, a.event_ids)
                    }
                    $(Call::$rpc(r) => {
                        $crate::calls::Answer::step(client.$method(r).await?.into_inner().event_id)
                    })*
                })
            }
        }
    };
}
