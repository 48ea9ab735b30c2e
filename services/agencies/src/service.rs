//! The part of every agency's gRPC service that is the same but for the
//! agency's own protobuf types: `agency_service!` writes the service
//! struct, its RPCs (the filing, and steps that read the `Langkah`, check
//! the fields and publish one event), the inverse mapping `request` and the
//! `Call` enum, all from one declaration that names each RPC and the fields
//! it reads in the agency's vocabulary. What is the agency's own (the shape
//! of a passport number, a NIB) is a check function written beside it.
//!
//! Writing the handler and its inverse from the same line keeps them
//! inverse to each other; the round-trip test of every agency checks it.
//!
//! The macro is used inside an agency module and expects there: `pb` (the
//! agency's generated package, with its `Langkah` and `Diterima`), and
//! `Request`, `Response` and `Status` from tonic.

/// Writes, for one agency module:
///
/// - `AGENCY_ID` and `INFO`, the agency's [`crate::common::AgencyInfo`]:
///   the fields of the `info "<agency id>" { .. }` block, and those that
///   follow from the rest of the declaration (the binary `mpp-<id>`, the
///   built-in catalogue `deploy/catalogue/<id>.toml`, the gRPC service's
///   name, the service and application field names of the filing and
///   `langkah` lines, and `RPCS`);
/// - the service struct `$name` over a kit `Agency`, with `new`, `server`
///   (the tonic server), `langkah` (parses a `pb::Langkah` with the field
///   names of `TOP` or `NESTED`) and `publish` (publishes one step and
///   answers `pb::Diterima`);
/// - the mapping table `RPCS`, for [`INFO`](crate::common::AgencyInfo)'s
///   `rpcs`;
/// - the consts `FILING`, `TOP` and `NESTED`: the field names of the
///   filing request and of the `Langkah`, top-level or nested in a step
///   request as `langkah`, as the agency's proto spells them;
/// - the service trait's impl: the filing RPC and one step RPC per line of
///   `steps`;
/// - `request`, the inverse of the mapping table, and the `Call` enum it
///   answers (see [`crate::calls`]).
///
/// The filing line ends with, and each step line is followed by, the
/// field mapping of the RPC's row in the mapping table (Markdown, for
/// `docs/MAPPING.md`); the macro writes the table, `RPCS`, from the same
/// lines, so an RPC's row and its handler cannot disagree on the event.
///
/// A step line is `Rpc: method(pb::Request) => shape { fields } "mapping"`,
/// the shapes being:
///
/// | shape | request | publishes |
/// |---|---|---|
/// | `top { Variant }` | `pb::Langkah` | `Variant` (`ReviewStarted`, `Collected`, or `Withdrawn` without a reason) |
/// | `documents_requested { dokumen, counter, note }` | nested | `documents_requested` |
/// | `documents_received { dokumen }` | nested | `documents_received` |
/// | `appointment { Kind, at_ms, place }` | nested | `appointment_scheduled` of [`crate::common::AppointmentKind`]`::Kind` |
/// | `fee { amount <= MAX, channel, code: check, due }` | nested | `fee_assessed`, the billing code checked by `check(field, value)`, the due date by `input::fee_due_at_ms` |
/// | `fee { amount <= MAX, channel, due }` | nested | `fee_assessed` without a billing code (the event's is dropped by `request`) |
/// | `payment { amount <= MAX, reference: check }` | nested | `payment_received`, the reference checked by `check(field, value)` |
/// | `issued { number: check }` | nested | `issued`, the document number checked by `check(field, value)` |
/// | `issued_by_service { number: check }` | nested | `issued`, checked by `check(service, field, value)` for the application's service |
/// | `rejected { code, reason }` | nested | `rejected` |
/// | `withdrawn { reason }` | nested | `withdrawn` |
///
/// Every field is checked under its own name (`loket: …`): the `Langkah`
/// first, then the fields in the order of the line.
macro_rules! agency_service {
    (
        $(#[$meta:meta])*
        pub struct $name:ident: $service:ident, $server:ident, $client:ident;
        $(#[$info_meta:meta])*
        info $id:literal { $($info_field:ident: $info_value:expr,)* }
        langkah { $case:ident, $application:ident, $officer:ident }
        filing $Filing:ident: $filing:ident(pb::$FilingReq:ident) -> $filed:ident {
            $service_field:ident, $documents:ident
        } $filing_fields:expr,
        steps { $($Rpc:ident: $method:ident(pb::$Req:ident) => $shape:ident { $($spec:tt)* } $fields:expr,)* }
    ) => {
        /// The agency id on every event and subject.
        pub const AGENCY_ID: &str = $id;

        $(#[$info_meta])*
        pub static INFO: $crate::common::AgencyInfo = $crate::common::AgencyInfo {
            agency_id: AGENCY_ID,
            binary: concat!("mpp-", $id),
            grpc_service: <$server<$name> as tonic::server::NamedService>::NAME,
            service_field: stringify!($service_field),
            application_field: stringify!($application),
            catalogue: builtin_catalogue!($id),
            rpcs: RPCS,
            $($info_field: $info_value,)*
        };

        /// The mapping table ([`INFO`]'s `rpcs`): every RPC in the order of
        /// the proto, the common event it publishes and how its fields
        /// become the event's (for `docs/MAPPING.md`).
        const RPCS: &[$crate::common::RpcMapping] = &[
            $crate::common::RpcMapping {
                rpc: stringify!($Filing),
                event: mpp_core::EventKind::ApplicationFiled,
                fields: $filing_fields,
            },
            $($crate::common::RpcMapping {
                rpc: stringify!($Rpc),
                event: agency_service!(@kind $shape { $($spec)* }),
                fields: $fields,
            },)*
        ];

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
                    .max_decoding_message_size(mpp_agency_kit::server::GRPC_REQUEST_BYTES_MAX)
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
            async fn $filing(&self, request: Request<pb::$FilingReq>) -> Result<Response<pb::$filed>, Status> {
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
                async fn $method(&self, request: Request<pb::$Req>) -> Result<Response<pb::Diterima>, Status> {
                    agency_service!(@step self, request, $shape { $($spec)* })
                }
            )*
        }

        agency_calls! {
            server: $service,
            client: $client,
            filing: $Filing(pb::$FilingReq) => $filing { $case, $application },
            steps: { $($Rpc(pb::$Req) => $method,)* }
        }

        /// The inverse of [`INFO`]'s mapping table: the request that makes
        /// the agency publish `body` about `t`'s application (an
        /// `application_filed` files one into `t.case`, or into a new case
        /// when it is empty).
        pub fn request(
            t: &$crate::calls::Target<'_>,
            body: &mpp_core::EventBody,
        ) -> Result<Call, $crate::calls::Unmapped> {
            use mpp_core::EventBody as E;
            #[allow(unused_variables)]
            let top = || pb::Langkah {
                $case: t.case.to_owned(),
                $application: t.application.to_owned(),
                $officer: t.officer.to_owned(),
            };
            #[allow(unused_variables)]
            let langkah = || Some(top());
            if let E::ApplicationFiled { documents } = body {
                return Ok(Call::$Filing(pb::$FilingReq {
                    $case: t.case.to_owned(),
                    $service_field: INFO.service_value(t.service_id)?,
                    $documents: documents.clone(),
                    $officer: t.officer.to_owned(),
                }));
            }
            $(
                if let Some(request) = agency_service!(@inverse body, top, langkah, $Req, $shape { $($spec)* }) {
                    return Ok(Call::$Rpc(request));
                }
            )*
            Err(match body {
                E::AppointmentScheduled { kind, .. }
                    if INFO.rpcs.iter().any(|m| m.event == mpp_core::EventKind::AppointmentScheduled) =>
                {
                    $crate::calls::Unmapped::no_appointment(AGENCY_ID, kind)
                }
                other => $crate::calls::Unmapped::no_rpc(AGENCY_ID, other.kind()),
            })
        }
    };

    // The event kind a step RPC publishes.
    (@kind top { $variant:ident }) => { mpp_core::EventKind::$variant };
    (@kind documents_requested { $($spec:tt)* }) => { mpp_core::EventKind::DocumentsRequested };
    (@kind documents_received { $($spec:tt)* }) => { mpp_core::EventKind::DocumentsReceived };
    (@kind appointment { $($spec:tt)* }) => { mpp_core::EventKind::AppointmentScheduled };
    (@kind fee { $($spec:tt)* }) => { mpp_core::EventKind::FeeAssessed };
    (@kind payment { $($spec:tt)* }) => { mpp_core::EventKind::PaymentReceived };
    (@kind issued { $($spec:tt)* }) => { mpp_core::EventKind::Issued };
    (@kind issued_by_service { $($spec:tt)* }) => { mpp_core::EventKind::Issued };
    (@kind rejected { $($spec:tt)* }) => { mpp_core::EventKind::Rejected };
    (@kind withdrawn { $($spec:tt)* }) => { mpp_core::EventKind::Withdrawn };

    // The handler of a step RPC.
    (@step $self:ident, $request:ident, top { Withdrawn }) => {{
        let step = $self.langkah(Some($request.get_ref()), &TOP)?;
        $self.publish(step, mpp_core::EventBody::Withdrawn { reason: String::new() }).await
    }};
    (@step $self:ident, $request:ident, top { $variant:ident }) => {{
        let step = $self.langkah(Some($request.get_ref()), &TOP)?;
        $self.publish(step, mpp_core::EventBody::$variant).await
    }};
    (@step $self:ident, $request:ident, $shape:ident { $($spec:tt)* }) => {{
        let r = $request.into_inner();
        let step = $self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = agency_service!(@body $self, step, r, $shape { $($spec)* })?;
        $self.publish(step, body).await
    }};

    // The event of a step request `$r` whose `Langkah` is `$step`.
    (@body $self:ident, $step:ident, $r:ident, documents_requested { $documents:ident, $counter:ident, $note:ident }) => {
        $crate::common::documents_requested(
            (stringify!($documents), &$r.$documents),
            (stringify!($counter), &$r.$counter),
            (stringify!($note), &$r.$note),
        )
    };
    (@body $self:ident, $step:ident, $r:ident, documents_received { $documents:ident }) => {
        $crate::common::documents_received(stringify!($documents), &$r.$documents)
    };
    (@body $self:ident, $step:ident, $r:ident, appointment { $kind:ident, $at:ident, $place:ident }) => {
        $crate::common::appointment(
            &$self.agency,
            $crate::common::AppointmentKind::$kind,
            (stringify!($at), $r.$at),
            (stringify!($place), &$r.$place),
        )
    };
    (@body $self:ident, $step:ident, $r:ident, fee { $amount:ident <= $max:expr, $channel:ident, $code:ident: $check:expr, $due:ident }) => {
        $check(stringify!($code), &$r.$code).and_then(|code| {
            $crate::common::fee(
                &$self.agency,
                (stringify!($amount), $r.$amount),
                $max,
                (stringify!($channel), &$r.$channel),
                code,
                (stringify!($due), $r.$due),
            )
        })
    };
    (@body $self:ident, $step:ident, $r:ident, fee { $amount:ident <= $max:expr, $channel:ident, $due:ident }) => {
        $crate::common::fee(
            &$self.agency,
            (stringify!($amount), $r.$amount),
            $max,
            (stringify!($channel), &$r.$channel),
            String::new(),
            (stringify!($due), $r.$due),
        )
    };
    (@body $self:ident, $step:ident, $r:ident, payment { $amount:ident <= $max:expr, $reference:ident: $check:expr }) => {
        $check(stringify!($reference), &$r.$reference)
            .and_then(|reference| $crate::common::payment((stringify!($amount), $r.$amount), $max, reference))
    };
    (@body $self:ident, $step:ident, $r:ident, issued { $number:ident: $check:expr }) => {
        $check(stringify!($number), &$r.$number)
            .map(|document_number| mpp_core::EventBody::Issued { document_number })
    };
    (@body $self:ident, $step:ident, $r:ident, issued_by_service { $number:ident: $check:expr }) => {
        $check($step.info, stringify!($number), &$r.$number)
            .map(|document_number| mpp_core::EventBody::Issued { document_number })
    };
    (@body $self:ident, $step:ident, $r:ident, rejected { $code:ident, $reason:ident }) => {
        $crate::common::rejected((stringify!($code), &$r.$code), (stringify!($reason), &$r.$reason))
    };
    (@body $self:ident, $step:ident, $r:ident, withdrawn { $reason:ident }) => {
        $crate::common::withdrawn(stringify!($reason), &$r.$reason)
    };

    // The request of a step RPC that publishes `$body`, if it does.
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, top { Withdrawn }) => {
        // The request carries no reason: the event's is dropped (mapping v1).
        match $body {
            mpp_core::EventBody::Withdrawn { .. } => Some($top()),
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, top { $variant:ident }) => {
        match $body {
            mpp_core::EventBody::$variant => Some($top()),
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, documents_requested { $documents:ident, $counter:ident, $note:ident }) => {
        match $body {
            mpp_core::EventBody::DocumentsRequested { documents, counter, note } => Some(pb::$Req {
                langkah: $langkah(),
                $documents: documents.clone(),
                $counter: counter.clone(),
                $note: note.clone(),
            }),
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, documents_received { $documents:ident }) => {
        match $body {
            mpp_core::EventBody::DocumentsReceived { documents } => {
                Some(pb::$Req { langkah: $langkah(), $documents: documents.clone() })
            }
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, appointment { $kind:ident, $at:ident, $place:ident }) => {
        match $body {
            mpp_core::EventBody::AppointmentScheduled { kind, at_ms, place }
                if $crate::common::AppointmentKind::parse(kind) == Some($crate::common::AppointmentKind::$kind) =>
            {
                Some(pb::$Req { langkah: $langkah(), $at: *at_ms, $place: place.clone() })
            }
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, fee { $amount:ident <= $max:expr, $channel:ident, $code:ident: $check:expr, $due:ident }) => {
        match $body {
            mpp_core::EventBody::FeeAssessed { amount_idr, payment_channel, billing_code, due_at_ms } => Some(pb::$Req {
                langkah: $langkah(),
                $amount: *amount_idr,
                $channel: payment_channel.clone(),
                $code: billing_code.clone(),
                $due: *due_at_ms,
            }),
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, fee { $amount:ident <= $max:expr, $channel:ident, $due:ident }) => {
        // The request has no billing code: the event's is dropped (mapping v1).
        match $body {
            mpp_core::EventBody::FeeAssessed { amount_idr, payment_channel, due_at_ms, .. } => Some(pb::$Req {
                langkah: $langkah(),
                $amount: *amount_idr,
                $channel: payment_channel.clone(),
                $due: *due_at_ms,
            }),
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, payment { $amount:ident <= $max:expr, $reference:ident: $check:expr }) => {
        match $body {
            mpp_core::EventBody::PaymentReceived { amount_idr, payment_reference } => Some(pb::$Req {
                langkah: $langkah(),
                $amount: *amount_idr,
                $reference: payment_reference.clone(),
            }),
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, $issued:ident { $number:ident: $check:expr }) => {
        match $body {
            mpp_core::EventBody::Issued { document_number } => {
                Some(pb::$Req { langkah: $langkah(), $number: document_number.clone() })
            }
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, rejected { $code:ident, $reason:ident }) => {
        match $body {
            mpp_core::EventBody::Rejected { reason_code, reason } => {
                Some(pb::$Req { langkah: $langkah(), $code: reason_code.clone(), $reason: reason.clone() })
            }
            _ => None,
        }
    };
    (@inverse $body:ident, $top:ident, $langkah:ident, $Req:ident, withdrawn { $reason:ident }) => {
        match $body {
            mpp_core::EventBody::Withdrawn { reason } => Some(pb::$Req { langkah: $langkah(), $reason: reason.clone() }),
            _ => None,
        }
    };
}

/// The built-in catalogue of the agency `$id`: `deploy/catalogue/<id>.toml`
/// (which explains the agency's fees and completion times), compiled in.
/// `--catalogue-file` replaces it in the binary.
macro_rules! builtin_catalogue {
    ($id:literal) => {
        mpp_agency_kit::catalogue::BuiltinCatalogue {
            path: concat!("deploy/catalogue/", $id, ".toml"),
            text: include_str!(concat!("../../../deploy/catalogue/", $id, ".toml")),
        }
    };
}
