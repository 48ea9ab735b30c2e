//! The part of every agency's gRPC service that is the same but for the
//! agency's own protobuf types: [`agency_service!`] writes the service
//! struct, the filing RPC and the step RPCs of the common shapes (read the
//! `Langkah`, check the fields, publish one event) from a declaration that
//! names each RPC and the fields it reads, in the agency's vocabulary. The
//! RPCs with checks of their own are written by hand inside the same
//! declaration.
//!
//! The macro is used inside an agency module and expects there: `pb` (the
//! agency's generated package, with its `Langkah` and `Diterima`), `INFO`
//! (its [`crate::common::AgencyInfo`]) and `Request`, `Response` and
//! `Status` from tonic.

/// Writes, for one agency module:
///
/// - the service struct `$name` over a kit `Agency`, with `new`, `server`
///   (the tonic server), `langkah` (parses a `pb::Langkah` with the field
///   names of `TOP` or `NESTED`) and `publish` (publishes one step and
///   answers `pb::Diterima`);
/// - the consts `FILING`, `TOP` and `NESTED`: the field names of the
///   filing request and of the `Langkah`, top-level or nested in a step
///   request as `langkah`, as the agency's proto spells them;
/// - the service trait's impl: the filing RPC, one step RPC per line of
///   `steps` and the hand-written RPCs that follow.
///
/// A step line is `method(Request) => shape { fields }`, the shapes being:
///
/// | shape | request | publishes |
/// |---|---|---|
/// | `top { body }` | `pb::Langkah` | `body` |
/// | `documents_requested { dokumen, counter, note }` | nested | `documents_requested` |
/// | `documents_received { dokumen }` | nested | `documents_received` |
/// | `appointment { Kind, at_ms, place }` | nested | `appointment_scheduled` of [`crate::common::AppointmentKind`]`::Kind` |
/// | `fee { amount <= MAX, channel, code: check }` | nested | `fee_assessed`, the billing code checked by `check(field, value)` |
/// | `payment { amount <= MAX, reference: check }` | nested | `payment_received`, the reference checked by `check(field, value)` |
/// | `issued { number: check }` | nested | `issued`, the document number checked by `check(field, value)` |
/// | `rejected { code, reason }` | nested | `rejected` |
/// | `withdrawn { reason }` | nested | `withdrawn` |
///
/// Every field is checked with its own name (`loket: …`), the `Langkah`
/// first, then the fields in the order of the line.
macro_rules! agency_service {
    (
        $(#[$meta:meta])*
        pub struct $name:ident: $service:ident, $server:ident;
        langkah { $case:ident, $application:ident, $officer:ident }
        filing $filing:ident($filing_req:ty) -> $filed:ident { $service_field:ident, $documents:ident }
        steps { $($method:ident($req:ty) => $shape:ident { $($spec:tt)* },)* }
        $($hand_written:tt)*
    ) => {
        const FILING: $crate::common::FilingFields = $crate::common::FilingFields {
            case: stringify!($case),
            documents: stringify!($documents),
            officer: stringify!($officer),
        };

        // Unused by the agencies whose every step nests its `Langkah`.
        #[allow(dead_code)]
        const TOP: $crate::common::StepFields = $crate::common::StepFields {
            message: "langkah",
            case: stringify!($case),
            application: stringify!($application),
            officer: stringify!($officer),
        };

        const NESTED: $crate::common::StepFields = $crate::common::StepFields {
            message: "langkah",
            case: concat!("langkah.", stringify!($case)),
            application: concat!("langkah.", stringify!($application)),
            officer: concat!("langkah.", stringify!($officer)),
        };

        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            agency: mpp_agency_kit::Agency,
        }

        impl $name {
            /// The service over `agency`.
            pub fn new(agency: mpp_agency_kit::Agency) -> Self {
                Self { agency }
            }

            /// The tonic server of the service over `agency`.
            pub fn server(agency: mpp_agency_kit::Agency) -> $server<Self> {
                $server::new(Self::new(agency))
            }

            fn langkah(
                &self,
                l: Option<&pb::Langkah>,
                f: &$crate::common::StepFields,
            ) -> Result<$crate::common::Step, mpp_agency_kit::KitError> {
                let l = mpp_agency_kit::input::message(f.message, l)?;
                $crate::common::step(&self.agency, &INFO, f, &l.$case, &l.$application, &l.$officer)
            }

            async fn publish(
                &self,
                step: $crate::common::Step,
                body: mpp_core::EventBody,
            ) -> Result<Response<pb::Diterima>, Status> {
                let event_id = $crate::common::publish(&self.agency, step, body).await?;
                Ok(Response::new(pb::Diterima { event_id }))
            }
        }

        #[tonic::async_trait]
        impl $service for $name {
            async fn $filing(&self, request: Request<$filing_req>) -> Result<Response<pb::$filed>, Status> {
                let p = request.into_inner();
                let filed = $crate::common::file(
                    &self.agency,
                    &INFO,
                    &FILING,
                    p.$service_field,
                    &p.$case,
                    &p.$documents,
                    &p.$officer,
                )
                .await?;
                Ok(Response::new(pb::$filed {
                    $case: filed.tracking_number.to_string(),
                    $application: filed.application_id.to_string(),
                    event_ids: filed.accepted.into_iter().map(|a| a.event_id).collect(),
                    pin: filed.pin.map(|p| p.expose().to_owned()).unwrap_or_default(),
                }))
            }

            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<pb::Diterima>, Status> {
                    agency_service!(@step self, request, $shape { $($spec)* })
                }
            )*

            $($hand_written)*
        }
    };

    (@step $self:ident, $request:ident, top { $body:expr }) => {{
        let step = $self.langkah(Some($request.get_ref()), &TOP)?;
        $self.publish(step, $body).await
    }};
    (@step $self:ident, $request:ident, $shape:ident { $($spec:tt)* }) => {{
        let r = $request.into_inner();
        let step = $self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = agency_service!(@body $self, r, $shape { $($spec)* })?;
        $self.publish(step, body).await
    }};

    (@body $self:ident, $r:ident, documents_requested { $documents:ident, $counter:ident, $note:ident }) => {
        $crate::common::documents_requested(
            (stringify!($documents), &$r.$documents),
            (stringify!($counter), &$r.$counter),
            (stringify!($note), &$r.$note),
        )
    };
    (@body $self:ident, $r:ident, documents_received { $documents:ident }) => {
        $crate::common::documents_received(stringify!($documents), &$r.$documents)
    };
    (@body $self:ident, $r:ident, appointment { $kind:ident, $at:ident, $place:ident }) => {
        $crate::common::appointment(
            &$self.agency,
            $crate::common::AppointmentKind::$kind,
            (stringify!($at), $r.$at),
            (stringify!($place), &$r.$place),
        )
    };
    (@body $self:ident, $r:ident, fee { $amount:ident <= $max:expr, $channel:ident, $code:ident: $check:expr }) => {
        $check(stringify!($code), &$r.$code).and_then(|code| {
            $crate::common::fee((stringify!($amount), $r.$amount), $max, (stringify!($channel), &$r.$channel), code)
        })
    };
    (@body $self:ident, $r:ident, payment { $amount:ident <= $max:expr, $reference:ident: $check:expr }) => {
        $check(stringify!($reference), &$r.$reference)
            .and_then(|reference| $crate::common::payment((stringify!($amount), $r.$amount), $max, reference))
    };
    (@body $self:ident, $r:ident, issued { $number:ident: $check:expr }) => {
        $check(stringify!($number), &$r.$number)
            .map(|document_number| mpp_core::EventBody::Issued { document_number })
    };
    (@body $self:ident, $r:ident, rejected { $code:ident, $reason:ident }) => {
        $crate::common::rejected((stringify!($code), &$r.$code), (stringify!($reason), &$r.$reason))
    };
    (@body $self:ident, $r:ident, withdrawn { $reason:ident }) => {
        $crate::common::withdrawn(stringify!($reason), &$r.$reason)
    };
}
